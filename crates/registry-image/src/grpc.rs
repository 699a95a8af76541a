//! `yandex.cloud.containerregistry.v1.ImageService`, `RegistryService` and
//! `RepositoryService` over gRPC.

use tonic::{Request, Response};
use yc_api_runtime::answers::EncodedAnswers;
use yc_proto_types::encoded::{Form, WithEncoded};
use yc_proto_types::yandex::cloud::containerregistry::v1::image_service_server::{
    ImageService, ImageServiceServer,
};
use yc_proto_types::yandex::cloud::containerregistry::v1::registry_service_server::{
    RegistryService, RegistryServiceServer,
};
use yc_proto_types::yandex::cloud::containerregistry::v1::repository_service_server::{
    RepositoryService, RepositoryServiceServer,
};
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    CreateRegistryRequest, DeleteImageRequest, DeleteRegistryRequest, GetImageRequest,
    GetRegistryRequest, Image, ListImagesRequest, ListImagesResponse, ListRegistriesRequest,
    ListRegistriesResponse, Registry, UpdateRegistryRequest, image_service_rpc,
    registry_service_rpc,
};
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    GetRepositoryByNameRequest, GetRepositoryRequest, ListRepositoriesRequest,
    ListRepositoriesResponse, Repository, repository_service_rpc,
};
use yc_proto_types::yandex::cloud::operation::Operation;

use crate::registries::Registries;
use crate::repositories::Repositories;
use crate::service::{Caller, RegistryImages};

/// The gRPC ImageService over the registry image service.
#[derive(Clone)]
pub struct RegistryImageGrpc {
    images: RegistryImages,
}

impl RegistryImageGrpc {
    /// The service, ready to add to a tonic server: Get and List answered from the images'
    /// stored bytes ([`RegistryImages::get_encoded`], [`RegistryImages::list_encoded`]), the
    /// rest by the generated server.
    pub fn server(images: RegistryImages) -> WithEncoded<ImageServiceServer<Self>> {
        let answers = EncodedAnswers::new(images.clone());
        let server = WithEncoded::new(
            ImageServiceServer::new(Self { images }),
            ImageServiceServer::max_decoding_message_size,
        );
        let server = answers.grpc(server, image_service_rpc::GET, get_encoded);
        answers.grpc(server, image_service_rpc::LIST, list_encoded)
    }

    /// The service's REST methods, for the REST transcoder: Get and List written from the
    /// images' stored JSON.
    pub fn rest(images: RegistryImages) -> yc_proto_types::rpc::RestService {
        let answers = EncodedAnswers::new(images.clone());
        let mut rest = image_service_rpc::rest(std::sync::Arc::new(Self { images }));
        answers.rest(&mut rest, image_service_rpc::GET, get_encoded);
        answers.rest(&mut rest, image_service_rpc::LIST, list_encoded);
        rest
    }
}

async fn get_encoded(
    images: std::sync::Arc<RegistryImages>,
    request: GetImageRequest,
    caller: Caller,
    form: Form,
) -> Result<Vec<u8>, yc_proto_types::google::rpc::Status> {
    images.get_encoded(&request, &caller, form).await
}

async fn list_encoded(
    images: std::sync::Arc<RegistryImages>,
    request: ListImagesRequest,
    caller: Caller,
    form: Form,
) -> Result<Vec<u8>, yc_proto_types::google::rpc::Status> {
    images.list_encoded(&request, &caller, form).await
}

#[tonic::async_trait]
impl ImageService for RegistryImageGrpc {
    async fn list(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, tonic::Status> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images.list(request.get_ref(), &caller).await?,
        ))
    }

    async fn get(
        &self,
        request: Request<GetImageRequest>,
    ) -> Result<Response<Image>, tonic::Status> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images.get(request.get_ref(), &caller).await?,
        ))
    }

    async fn delete(
        &self,
        request: Request<DeleteImageRequest>,
    ) -> Result<Response<Operation>, tonic::Status> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images.delete(request.get_ref(), &caller).await?,
        ))
    }
}

/// The gRPC RegistryService over [`Registries`].
#[derive(Clone)]
pub struct RegistryGrpc {
    registries: Registries,
}

impl RegistryGrpc {
    /// The service, ready to add to a tonic server.
    pub fn server(registries: Registries) -> RegistryServiceServer<Self> {
        RegistryServiceServer::new(Self { registries })
    }

    /// The service's REST methods, for the REST transcoder.
    pub fn rest(registries: Registries) -> yc_proto_types::rpc::RestService {
        registry_service_rpc::rest(std::sync::Arc::new(Self { registries }))
    }
}

type Answer<T> = Result<Response<T>, tonic::Status>;

#[tonic::async_trait]
impl RegistryService for RegistryGrpc {
    async fn get(&self, request: Request<GetRegistryRequest>) -> Answer<Registry> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.registries.get(request.get_ref(), &caller).await?,
        ))
    }

    async fn list(
        &self,
        request: Request<ListRegistriesRequest>,
    ) -> Answer<ListRegistriesResponse> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.registries.list(request.get_ref(), &caller).await?,
        ))
    }

    async fn create(&self, request: Request<CreateRegistryRequest>) -> Answer<Operation> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.registries.create(request.get_ref(), &caller).await?,
        ))
    }

    async fn update(&self, request: Request<UpdateRegistryRequest>) -> Answer<Operation> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.registries.update(request.get_ref(), &caller).await?,
        ))
    }

    async fn delete(&self, request: Request<DeleteRegistryRequest>) -> Answer<Operation> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.registries.delete(request.get_ref(), &caller).await?,
        ))
    }
}

/// The gRPC RepositoryService over [`Repositories`].
#[derive(Clone)]
pub struct RepositoryGrpc {
    repositories: Repositories,
}

impl RepositoryGrpc {
    /// The service, ready to add to a tonic server.
    pub fn server(repositories: Repositories) -> RepositoryServiceServer<Self> {
        RepositoryServiceServer::new(Self { repositories })
    }

    /// The service's REST methods, for the REST transcoder.
    pub fn rest(repositories: Repositories) -> yc_proto_types::rpc::RestService {
        repository_service_rpc::rest(std::sync::Arc::new(Self { repositories }))
    }
}

#[tonic::async_trait]
impl RepositoryService for RepositoryGrpc {
    async fn get(&self, request: Request<GetRepositoryRequest>) -> Answer<Repository> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.repositories.get(request.get_ref(), &caller).await?,
        ))
    }

    async fn get_by_name(
        &self,
        request: Request<GetRepositoryByNameRequest>,
    ) -> Answer<Repository> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.repositories
                .get_by_name(request.get_ref(), &caller)
                .await?,
        ))
    }

    async fn list(
        &self,
        request: Request<ListRepositoriesRequest>,
    ) -> Answer<ListRepositoriesResponse> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.repositories.list(request.get_ref(), &caller).await?,
        ))
    }
}
