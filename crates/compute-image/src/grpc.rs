//! `yandex.cloud.compute.v1.ImageService` over gRPC.

use tonic::{Request, Response};
use yc_proto_types::yandex::cloud::access::{
    ListAccessBindingsRequest, ListAccessBindingsResponse, SetAccessBindingsRequest,
    UpdateAccessBindingsRequest,
};
use yc_proto_types::yandex::cloud::compute::v1::image_service_server::{
    ImageService, ImageServiceServer,
};
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageLatestByFamilyRequest, GetImageRequest, Image,
    ListImageOperationsRequest, ListImageOperationsResponse, ListImagesRequest, ListImagesResponse,
    UpdateImageRequest, image_service_rpc,
};
use yc_proto_types::yandex::cloud::operation::Operation;

use crate::service::{Caller, ComputeImages};

/// The gRPC ImageService over the compute image service.
#[derive(Clone)]
pub struct ComputeImageGrpc {
    images: ComputeImages,
}

impl ComputeImageGrpc {
    /// The service, ready to add to a tonic server.
    pub fn server(images: ComputeImages) -> ImageServiceServer<Self> {
        ImageServiceServer::new(Self { images })
    }

    /// The service's REST methods, for the REST transcoder.
    pub fn rest(images: ComputeImages) -> yc_proto_types::rpc::RestService {
        image_service_rpc::rest(std::sync::Arc::new(Self { images }))
    }
}

type Answer<T> = Result<Response<T>, tonic::Status>;

#[tonic::async_trait]
impl ImageService for ComputeImageGrpc {
    async fn get(&self, request: Request<GetImageRequest>) -> Answer<Image> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images.get(request.get_ref(), &caller).await?,
        ))
    }

    async fn get_latest_by_family(
        &self,
        request: Request<GetImageLatestByFamilyRequest>,
    ) -> Answer<Image> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images
                .latest_by_family(request.get_ref(), &caller)
                .await?,
        ))
    }

    async fn list(&self, request: Request<ListImagesRequest>) -> Answer<ListImagesResponse> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images.list(request.get_ref(), &caller).await?,
        ))
    }

    async fn create(&self, request: Request<CreateImageRequest>) -> Answer<Operation> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images.create(request.get_ref(), &caller).await?,
        ))
    }

    async fn update(&self, request: Request<UpdateImageRequest>) -> Answer<Operation> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images.update(request.get_ref(), &caller).await?,
        ))
    }

    async fn delete(&self, request: Request<DeleteImageRequest>) -> Answer<Operation> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images.delete(request.get_ref(), &caller).await?,
        ))
    }

    async fn list_operations(
        &self,
        request: Request<ListImageOperationsRequest>,
    ) -> Answer<ListImageOperationsResponse> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images
                .list_operations(request.get_ref(), &caller)
                .await?,
        ))
    }

    async fn list_access_bindings(
        &self,
        request: Request<ListAccessBindingsRequest>,
    ) -> Answer<ListAccessBindingsResponse> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images
                .list_access_bindings(request.get_ref(), &caller)
                .await?,
        ))
    }

    async fn set_access_bindings(
        &self,
        request: Request<SetAccessBindingsRequest>,
    ) -> Answer<Operation> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images
                .set_access_bindings(request.get_ref(), &caller)
                .await?,
        ))
    }

    async fn update_access_bindings(
        &self,
        request: Request<UpdateAccessBindingsRequest>,
    ) -> Answer<Operation> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.images
                .update_access_bindings(request.get_ref(), &caller)
                .await?,
        ))
    }
}
