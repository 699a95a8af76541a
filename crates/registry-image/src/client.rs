//! Typed clients of the Container Registry ImageService ([`RegistryImageClient`]),
//! RegistryService ([`RegistryClient`]) and RepositoryService ([`RepositoryClient`]) over the
//! shared [`ApiClient`] (gRPC or REST).
//!
//! ```no_run
//! use futures_util::TryStreamExt;
//! use yc_registry_image::{ApiClient, RegistryImageClient};
//! use yc_proto_types::yandex::cloud::containerregistry::v1::ListImagesRequest;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let api = ApiClient::connect_grpc("http://127.0.0.1:50051").await?;
//! // or: ApiClient::rest("http://127.0.0.1:50051")?
//! let client = RegistryImageClient::new(api);
//! let request = ListImagesRequest { registry_id: "crp1".into(), ..Default::default() };
//! let images: Vec<_> = client.list_all(request).try_collect().await?;
//! for image in &images {
//!     client.delete_and_wait(&image.id).await?;
//! }
//! # Ok(()) }
//! ```

use futures_util::Stream;
use yc_operations::client::ApiClient;
use yc_operations::{WaitError, paged};
use yc_proto_types::google::protobuf::Empty;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::containerregistry::v1::image_service_rpc as rpc;
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    CreateRegistryRequest, DeleteImageRequest, DeleteRegistryRequest, GetImageRequest,
    GetRegistryRequest, Image, ListImagesRequest, ListImagesResponse, ListRegistriesRequest,
    ListRegistriesResponse, Registry, UpdateRegistryRequest,
};
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    GetRepositoryByNameRequest, GetRepositoryRequest, ListRepositoriesRequest,
    ListRepositoriesResponse, Repository, registry_service_rpc, repository_service_rpc,
};
use yc_proto_types::yandex::cloud::operation::Operation;

/// The Container Registry ImageService, over gRPC or REST as its [`ApiClient`] is.
#[derive(Debug, Clone)]
pub struct RegistryImageClient {
    api: ApiClient,
}

impl From<ApiClient> for RegistryImageClient {
    fn from(api: ApiClient) -> Self {
        Self { api }
    }
}

impl RegistryImageClient {
    /// The service through `api`.
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }

    /// The connection underneath.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// `Get`.
    pub async fn get(&self, image_id: &str) -> Result<Image, Status> {
        let request = GetImageRequest {
            image_id: image_id.to_owned(),
        };
        self.api.call(rpc::GET, request).await
    }

    /// One page of `List`.
    pub async fn list(&self, request: &ListImagesRequest) -> Result<ListImagesResponse, Status> {
        self.api.call(rpc::LIST, request.clone()).await
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
        let request = DeleteImageRequest {
            image_id: image_id.to_owned(),
        };
        self.api.call(rpc::DELETE, request).await
    }

    /// `Delete`, then waits until the image is gone.
    pub async fn delete_and_wait(&self, image_id: &str) -> Result<(), WaitError> {
        let request = DeleteImageRequest {
            image_id: image_id.to_owned(),
        };
        self.api
            .call_and_wait::<_, Empty>(rpc::DELETE, request)
            .await
            .map(drop)
    }
}

/// The Container Registry RegistryService, over gRPC or REST as its [`ApiClient`] is.
///
/// ```no_run
/// use yc_registry_image::{ApiClient, RegistryClient};
/// use yc_proto_types::yandex::cloud::containerregistry::v1::CreateRegistryRequest;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let registries = RegistryClient::new(ApiClient::connect_grpc("http://127.0.0.1:50051").await?);
/// let request = CreateRegistryRequest {
///     folder_id: "b1gfolder".into(),
///     name: "main".into(),
///     ..Default::default()
/// };
/// let registry = registries.create_and_wait(request).await?;
/// println!("push to 127.0.0.1:50051/{}/app:v1", registry.id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegistryClient {
    api: ApiClient,
}

impl From<ApiClient> for RegistryClient {
    fn from(api: ApiClient) -> Self {
        Self { api }
    }
}

impl RegistryClient {
    /// The service through `api`.
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }

    /// `Get`.
    pub async fn get(&self, registry_id: &str) -> Result<Registry, Status> {
        let request = GetRegistryRequest {
            registry_id: registry_id.to_owned(),
        };
        self.api.call(registry_service_rpc::GET, request).await
    }

    /// One page of `List`.
    pub async fn list(
        &self,
        request: &ListRegistriesRequest,
    ) -> Result<ListRegistriesResponse, Status> {
        self.api
            .call(registry_service_rpc::LIST, request.clone())
            .await
    }

    /// Every registry of a List, page after page, as a stream.
    pub fn list_all(
        &self,
        request: ListRegistriesRequest,
    ) -> impl Stream<Item = Result<Registry, Status>> + '_ {
        paged(request, move |request| async move {
            let page = self.list(&request).await?;
            let next = (!page.next_page_token.is_empty()).then(|| ListRegistriesRequest {
                page_token: page.next_page_token.clone(),
                ..request
            });
            Ok((page.registries, next))
        })
    }

    /// `Create`: the operation as it starts.
    pub async fn create(&self, request: CreateRegistryRequest) -> Result<Operation, Status> {
        self.api.call(registry_service_rpc::CREATE, request).await
    }

    /// `Create`, then waits for the registry to be ACTIVE.
    pub async fn create_and_wait(
        &self,
        request: CreateRegistryRequest,
    ) -> Result<Registry, WaitError> {
        self.api
            .call_and_wait(registry_service_rpc::CREATE, request)
            .await
    }

    /// `Update`: the operation as it starts.
    pub async fn update(&self, request: UpdateRegistryRequest) -> Result<Operation, Status> {
        self.api.call(registry_service_rpc::UPDATE, request).await
    }

    /// `Update`, then waits for the registry as it ends up.
    pub async fn update_and_wait(
        &self,
        request: UpdateRegistryRequest,
    ) -> Result<Registry, WaitError> {
        self.api
            .call_and_wait(registry_service_rpc::UPDATE, request)
            .await
    }

    /// `Delete`: the operation as it starts.
    pub async fn delete(&self, registry_id: &str) -> Result<Operation, Status> {
        let request = DeleteRegistryRequest {
            registry_id: registry_id.to_owned(),
        };
        self.api.call(registry_service_rpc::DELETE, request).await
    }

    /// `Delete`, then waits until the registry is gone.
    pub async fn delete_and_wait(&self, registry_id: &str) -> Result<(), WaitError> {
        let request = DeleteRegistryRequest {
            registry_id: registry_id.to_owned(),
        };
        self.api
            .call_and_wait::<_, Empty>(registry_service_rpc::DELETE, request)
            .await
            .map(drop)
    }
}

/// The Container Registry RepositoryService, over gRPC or REST as its [`ApiClient`] is.
#[derive(Debug, Clone)]
pub struct RepositoryClient {
    api: ApiClient,
}

impl From<ApiClient> for RepositoryClient {
    fn from(api: ApiClient) -> Self {
        Self { api }
    }
}

impl RepositoryClient {
    /// The service through `api`.
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }

    /// `Get`.
    pub async fn get(&self, repository_id: &str) -> Result<Repository, Status> {
        let request = GetRepositoryRequest {
            repository_id: repository_id.to_owned(),
        };
        self.api.call(repository_service_rpc::GET, request).await
    }

    /// `GetByName`: `<registry_id>/<name>`.
    pub async fn get_by_name(&self, repository_name: &str) -> Result<Repository, Status> {
        let request = GetRepositoryByNameRequest {
            repository_name: repository_name.to_owned(),
        };
        self.api
            .call(repository_service_rpc::GET_BY_NAME, request)
            .await
    }

    /// One page of `List`.
    pub async fn list(
        &self,
        request: &ListRepositoriesRequest,
    ) -> Result<ListRepositoriesResponse, Status> {
        self.api
            .call(repository_service_rpc::LIST, request.clone())
            .await
    }

    /// Every repository of a List, page after page, as a stream.
    pub fn list_all(
        &self,
        request: ListRepositoriesRequest,
    ) -> impl Stream<Item = Result<Repository, Status>> + '_ {
        paged(request, move |request| async move {
            let page = self.list(&request).await?;
            let next = (!page.next_page_token.is_empty()).then(|| ListRepositoriesRequest {
                page_token: page.next_page_token.clone(),
                ..request
            });
            Ok((page.repositories, next))
        })
    }
}
