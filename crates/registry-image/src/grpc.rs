//! `yandex.cloud.containerregistry.v1.ImageService` over gRPC.

use tonic::{Request, Response};
use yc_proto_types::yandex::cloud::containerregistry::v1::image_service_server::{
    ImageService, ImageServiceServer,
};
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    DeleteImageRequest, GetImageRequest, Image, ListImagesRequest, ListImagesResponse,
    image_service_rpc,
};
use yc_proto_types::yandex::cloud::operation::Operation;

use crate::service::{Caller, RegistryImages};

/// The gRPC ImageService over the registry image service.
#[derive(Clone)]
pub struct RegistryImageGrpc {
    images: RegistryImages,
}

impl RegistryImageGrpc {
    /// The service, ready to add to a tonic server.
    pub fn server(images: RegistryImages) -> ImageServiceServer<Self> {
        ImageServiceServer::new(Self { images })
    }

    /// The service's REST methods, for the REST transcoder.
    pub fn rest(images: RegistryImages) -> yc_proto_types::rpc::RestService {
        image_service_rpc::rest(std::sync::Arc::new(Self { images }))
    }
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
