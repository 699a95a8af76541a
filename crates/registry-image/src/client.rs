//! A typed client of the Container Registry ImageService, one interface over gRPC and REST.
//!
//! ```no_run
//! use futures_util::TryStreamExt;
//! use yc_registry_image::client::RegistryImageClient;
//! use yc_proto_types::yandex::cloud::containerregistry::v1::ListImagesRequest;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = RegistryImageClient::connect_grpc("http://127.0.0.1:50051").await?;
//! // or: RegistryImageClient::rest("http://127.0.0.1:50051")?
//! let request = ListImagesRequest { registry_id: "crp1".into(), ..Default::default() };
//! let images: Vec<_> = client.list_all(request).try_collect().await?;
//! for image in &images {
//!     client.delete_and_wait(&image.id).await?;
//! }
//! # Ok(()) }
//! ```

use futures_util::Stream;
use reqwest::Method;
use tonic::transport::Channel;
use yc_operations::client::{AuthChannel, BearerToken};
use yc_operations::{Operations, RestApi, RestOperationSource, WaitError, WaitPolicy, paged};
use yc_proto_types::google::protobuf::Empty;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::containerregistry::v1::image_service_client::ImageServiceClient;
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    DeleteImageRequest, GetImageRequest, Image, ListImagesRequest, ListImagesResponse,
};
use yc_proto_types::yandex::cloud::operation::Operation;
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;

#[derive(Debug, Clone)]
enum Transport {
    Grpc(ImageServiceClient<AuthChannel>),
    Rest(RestApi),
}

/// The Container Registry ImageService over gRPC or REST.
#[derive(Debug, Clone)]
pub struct RegistryImageClient {
    transport: Transport,
    operations: Operations,
    wait: WaitPolicy,
}

fn transport_error(e: impl std::fmt::Display) -> Status {
    Status::new(tonic::Code::Unavailable, e.to_string())
}

impl RegistryImageClient {
    /// A client over a gRPC channel.
    pub fn grpc(channel: Channel) -> Self {
        Self::grpc_with_token(channel, BearerToken::none())
    }

    /// A client over a gRPC channel whose calls carry `token`.
    pub fn grpc_with_token(channel: Channel, token: BearerToken) -> Self {
        let channel = token.channel(channel);
        Self {
            transport: Transport::Grpc(ImageServiceClient::new(channel.clone())),
            operations: Operations::Grpc(OperationServiceClient::new(channel)),
            wait: WaitPolicy::default(),
        }
    }

    /// Connects over gRPC to `endpoint`, e.g. `http://127.0.0.1:50051`.
    pub async fn connect_grpc(endpoint: &str) -> Result<Self, Status> {
        let channel = Channel::from_shared(endpoint.to_owned())
            .map_err(|e| Status::new(tonic::Code::InvalidArgument, e.to_string()))?
            .connect()
            .await
            .map_err(transport_error)?;
        Ok(Self::grpc(channel))
    }

    /// A client of the REST API at `base_url`, e.g. `http://127.0.0.1:50051`.
    pub fn rest(base_url: &str) -> Result<Self, Status> {
        Ok(Self::rest_api(RestApi::new(base_url)?))
    }

    /// A client of the REST API behind `api` (with its token, HTTP client, …).
    pub fn rest_api(api: RestApi) -> Self {
        Self {
            operations: Operations::Rest(RestOperationSource::from_api(api.clone())),
            transport: Transport::Rest(api),
            wait: WaitPolicy::default(),
        }
    }

    /// How [`delete_and_wait`](Self::delete_and_wait) polls.
    pub fn with_wait_policy(mut self, policy: WaitPolicy) -> Self {
        self.wait = policy;
        self
    }

    /// `Get`.
    pub async fn get(&self, image_id: &str) -> Result<Image, Status> {
        match &self.transport {
            Transport::Grpc(images) => {
                let request = GetImageRequest {
                    image_id: image_id.to_owned(),
                };
                Ok(images
                    .clone()
                    .get(request)
                    .await
                    .map_err(Status::from)?
                    .into_inner())
            }
            Transport::Rest(api) => {
                api.call(
                    Method::GET,
                    &["container-registry", "v1", "images", image_id],
                    &[],
                    None,
                )
                .await
            }
        }
    }

    /// One page of `List`.
    pub async fn list(&self, request: &ListImagesRequest) -> Result<ListImagesResponse, Status> {
        match &self.transport {
            Transport::Grpc(images) => Ok(images
                .clone()
                .list(request.clone())
                .await
                .map_err(Status::from)?
                .into_inner()),
            Transport::Rest(api) => {
                let page_size = if request.page_size == 0 {
                    String::new()
                } else {
                    request.page_size.to_string()
                };
                let query = [
                    ("registryId", request.registry_id.as_str()),
                    ("repositoryName", &request.repository_name),
                    ("folderId", &request.folder_id),
                    ("pageSize", &page_size),
                    ("pageToken", &request.page_token),
                    ("filter", &request.filter),
                    ("orderBy", &request.order_by),
                ];
                api.call(
                    Method::GET,
                    &["container-registry", "v1", "images"],
                    &query,
                    None,
                )
                .await
            }
        }
    }

    /// Every image of a List, page after page, as a stream.
    pub fn list_all(
        &self,
        request: ListImagesRequest,
    ) -> impl Stream<Item = Result<Image, Status>> + '_ {
        paged(request, move |request| async move {
            let page = self.list(&request).await?;
            let next = (!page.next_page_token.is_empty()).then(|| ListImagesRequest {
                page_token: page.next_page_token.clone(),
                ..request
            });
            Ok((page.images, next))
        })
    }

    /// `Delete`: the operation as it starts.
    pub async fn delete(&self, image_id: &str) -> Result<Operation, Status> {
        match &self.transport {
            Transport::Grpc(images) => {
                let request = DeleteImageRequest {
                    image_id: image_id.to_owned(),
                };
                Ok(images
                    .clone()
                    .delete(request)
                    .await
                    .map_err(Status::from)?
                    .into_inner())
            }
            Transport::Rest(api) => {
                api.call(
                    Method::DELETE,
                    &["container-registry", "v1", "images", image_id],
                    &[],
                    None,
                )
                .await
            }
        }
    }

    /// `Delete`, then waits until the image is gone.
    pub async fn delete_and_wait(&self, image_id: &str) -> Result<(), WaitError> {
        let op = self.delete(image_id).await.map_err(WaitError::Poll)?;
        self.operations
            .wait::<Empty>(&self.wait, op)
            .await
            .map(drop)
    }
}
