//! A typed client of the Compute ImageService, one interface over gRPC and REST: every RPC,
//! List as a stream over pages, and Create, Update and Delete that wait for their operations.
//!
//! ```no_run
//! use yc_compute_image::client::ComputeImageClient;
//! use yc_proto_types::yandex::cloud::compute::v1::{CreateImageRequest, create_image_request::Source};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ComputeImageClient::rest("http://127.0.0.1:50051")?;
//! let request = CreateImageRequest {
//!     folder_id: "b1gfolder".into(),
//!     name: "ubuntu".into(),
//!     source: Some(Source::Uri("http://127.0.0.1:8080/ubuntu.qcow2".into())),
//!     ..Default::default()
//! };
//! let image = client.create_and_wait(&request).await?;
//! println!("{} is {} bytes", image.id, image.size);
//! # Ok(()) }
//! ```

use futures_util::Stream;
use prost::Name;
use reqwest::Method;
use serde::Serialize;
use tonic::transport::Channel;
use yc_operations::client::{AuthChannel, BearerToken};
use yc_operations::{Operations, RestApi, RestOperationSource, WaitError, WaitPolicy, paged};
use yc_proto_types::google::protobuf::Empty;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::compute::v1::image_service_client::ImageServiceClient;
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageLatestByFamilyRequest, GetImageRequest, Image,
    ListImageOperationsRequest, ListImageOperationsResponse, ListImagesRequest, ListImagesResponse,
    UpdateImageRequest,
};
use yc_proto_types::yandex::cloud::operation::Operation;
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;

#[derive(Debug, Clone)]
enum Transport {
    Grpc(ImageServiceClient<AuthChannel>),
    Rest(RestApi),
}

/// The Compute ImageService over gRPC or REST.
#[derive(Debug, Clone)]
pub struct ComputeImageClient {
    transport: Transport,
    operations: Operations,
    wait: WaitPolicy,
}

/// Calls one RPC over whichever transport the client has: `$grpc` is the tonic method, and
/// the REST call is the verb, the path segments, the query and the body.
macro_rules! call {
    ($self:ident, $grpc:ident($request:expr), $method:expr, $path:expr, $query:expr, $body:expr) => {
        match &$self.transport {
            Transport::Grpc(images) => images
                .clone()
                .$grpc($request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(Status::from),
            Transport::Rest(api) => api.call($method, $path, $query, $body).await,
        }
    };
}

fn json<T: Serialize>(value: &T) -> Result<Option<Vec<u8>>, Status> {
    serde_json::to_vec(value)
        .map(Some)
        .map_err(|e| Status::new(tonic::Code::InvalidArgument, e.to_string()))
}

impl ComputeImageClient {
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

    /// A client of the REST API at `base_url`.
    pub fn rest(base_url: &str) -> Result<Self, Status> {
        Ok(Self::rest_api(RestApi::new(base_url)?))
    }

    /// A client of the REST API behind `api`.
    pub fn rest_api(api: RestApi) -> Self {
        Self {
            operations: Operations::Rest(RestOperationSource::from_api(api.clone())),
            transport: Transport::Rest(api),
            wait: WaitPolicy::default(),
        }
    }

    /// How the `…_and_wait` calls poll.
    pub fn with_wait_policy(mut self, policy: WaitPolicy) -> Self {
        self.wait = policy;
        self
    }

    /// `Get`.
    pub async fn get(&self, image_id: &str) -> Result<Image, Status> {
        let request = GetImageRequest {
            image_id: image_id.to_owned(),
        };
        call!(
            self,
            get(request),
            Method::GET,
            &["compute", "v1", "images", image_id],
            &[],
            None
        )
    }

    /// `GetLatestByFamily`.
    pub async fn latest_by_family(&self, folder_id: &str, family: &str) -> Result<Image, Status> {
        let request = GetImageLatestByFamilyRequest {
            folder_id: folder_id.to_owned(),
            family: family.to_owned(),
        };
        let query = [("folderId", folder_id), ("family", family)];
        call!(
            self,
            get_latest_by_family(request),
            Method::GET,
            &["compute", "v1", "images:latestByFamily"],
            &query,
            None
        )
    }

    /// One page of `List`.
    pub async fn list(&self, request: &ListImagesRequest) -> Result<ListImagesResponse, Status> {
        let page_size = if request.page_size == 0 {
            String::new()
        } else {
            request.page_size.to_string()
        };
        let query = [
            ("folderId", request.folder_id.as_str()),
            ("pageSize", &page_size),
            ("pageToken", &request.page_token),
            ("filter", &request.filter),
            ("orderBy", &request.order_by),
        ];
        call!(
            self,
            list(request.clone()),
            Method::GET,
            &["compute", "v1", "images"],
            &query,
            None
        )
    }

    /// Every image of a List, page after page.
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

    /// One page of `ListOperations`.
    pub async fn list_operations(
        &self,
        request: &ListImageOperationsRequest,
    ) -> Result<ListImageOperationsResponse, Status> {
        let page_size = if request.page_size == 0 {
            String::new()
        } else {
            request.page_size.to_string()
        };
        let query = [
            ("pageSize", page_size.as_str()),
            ("pageToken", &request.page_token),
        ];
        call!(
            self,
            list_operations(request.clone()),
            Method::GET,
            &["compute", "v1", "images", &request.image_id, "operations"],
            &query,
            None
        )
    }

    /// `Create`: the operation as it starts.
    pub async fn create(&self, request: &CreateImageRequest) -> Result<Operation, Status> {
        call!(
            self,
            create(request.clone()),
            Method::POST,
            &["compute", "v1", "images"],
            &[],
            json(request)?
        )
    }

    /// `Update`: the operation as it starts.
    pub async fn update(&self, request: &UpdateImageRequest) -> Result<Operation, Status> {
        call!(
            self,
            update(request.clone()),
            Method::PATCH,
            &["compute", "v1", "images", &request.image_id],
            &[],
            json(request)?
        )
    }

    /// `Delete`: the operation as it starts.
    pub async fn delete(&self, image_id: &str) -> Result<Operation, Status> {
        let request = DeleteImageRequest {
            image_id: image_id.to_owned(),
        };
        call!(
            self,
            delete(request),
            Method::DELETE,
            &["compute", "v1", "images", image_id],
            &[],
            None
        )
    }

    /// `Create`, then the image once it is READY (or the error that stopped it).
    pub async fn create_and_wait(&self, request: &CreateImageRequest) -> Result<Image, WaitError> {
        let op = self.create(request).await.map_err(WaitError::Poll)?;
        self.wait_for(op).await
    }

    /// `Update`, then the updated image.
    pub async fn update_and_wait(&self, request: &UpdateImageRequest) -> Result<Image, WaitError> {
        let op = self.update(request).await.map_err(WaitError::Poll)?;
        self.wait_for(op).await
    }

    /// `Delete`, then waits until the image is gone.
    pub async fn delete_and_wait(&self, image_id: &str) -> Result<(), WaitError> {
        let op = self.delete(image_id).await.map_err(WaitError::Poll)?;
        self.wait_for::<Empty>(op).await.map(drop)
    }

    async fn wait_for<R: Name + Default>(&self, op: Operation) -> Result<R, WaitError> {
        self.operations.wait::<R>(&self.wait, op).await
    }
}
