//! `yandex.cloud.compute.v1.ImageService`, `DiskService` and `SnapshotService` over gRPC.

use tonic::{Request, Response};
use yc_api_runtime::answers::EncodedAnswers;
use yc_proto_types::encoded::{Form, WithEncoded};
use yc_proto_types::google::rpc::Status;
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
use crate::sources::ComputeSources;
use yc_proto_types::yandex::cloud::compute::v1::disk_service_server::{
    DiskService, DiskServiceServer,
};
use yc_proto_types::yandex::cloud::compute::v1::snapshot_service_server::{
    SnapshotService, SnapshotServiceServer,
};
use yc_proto_types::yandex::cloud::compute::v1::{
    Disk, GetDiskRequest, GetSnapshotRequest, ListDisksRequest, ListDisksResponse,
    ListSnapshotsRequest, ListSnapshotsResponse, Snapshot, disk_service_rpc, snapshot_service_rpc,
};

/// The gRPC ImageService over the compute image service.
#[derive(Clone)]
pub struct ComputeImageGrpc {
    images: ComputeImages,
}

impl ComputeImageGrpc {
    /// The service, ready to add to a tonic server: Get and List answered from the images'
    /// stored bytes ([`ComputeImages::get_encoded`], [`ComputeImages::list_encoded`]), the
    /// rest by the generated server.
    pub fn server(images: ComputeImages) -> WithEncoded<ImageServiceServer<Self>> {
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
    pub fn rest(images: ComputeImages) -> yc_proto_types::rpc::RestService {
        let answers = EncodedAnswers::new(images.clone());
        let mut rest = image_service_rpc::rest(std::sync::Arc::new(Self { images }));
        answers.rest(&mut rest, image_service_rpc::GET, get_encoded);
        answers.rest(&mut rest, image_service_rpc::LIST, list_encoded);
        rest
    }
}

async fn get_encoded(
    images: std::sync::Arc<ComputeImages>,
    request: GetImageRequest,
    caller: Caller,
    form: Form,
) -> Result<Vec<u8>, Status> {
    images.get_encoded(&request, &caller, form).await
}

async fn list_encoded(
    images: std::sync::Arc<ComputeImages>,
    request: ListImagesRequest,
    caller: Caller,
    form: Form,
) -> Result<Vec<u8>, Status> {
    images.list_encoded(&request, &caller, form).await
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

/// The gRPC DiskService and SnapshotService (Get and List) over the disk and snapshot store.
#[derive(Clone)]
pub struct ComputeSourcesGrpc {
    sources: ComputeSources,
}

impl ComputeSourcesGrpc {
    /// The DiskService, ready to add to a tonic server.
    pub fn disks(sources: ComputeSources) -> DiskServiceServer<Self> {
        DiskServiceServer::new(Self { sources })
    }

    /// The SnapshotService, ready to add to a tonic server.
    pub fn snapshots(sources: ComputeSources) -> SnapshotServiceServer<Self> {
        SnapshotServiceServer::new(Self { sources })
    }

    /// Both services' REST methods, for the REST transcoder.
    pub fn rest(sources: ComputeSources) -> [yc_proto_types::rpc::RestService; 2] {
        let service = std::sync::Arc::new(Self { sources });
        [
            disk_service_rpc::rest(service.clone()),
            snapshot_service_rpc::rest(service),
        ]
    }
}

#[tonic::async_trait]
impl DiskService for ComputeSourcesGrpc {
    async fn get(&self, request: Request<GetDiskRequest>) -> Answer<Disk> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.sources.get_disk(request.get_ref(), &caller).await?,
        ))
    }

    async fn list(&self, request: Request<ListDisksRequest>) -> Answer<ListDisksResponse> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.sources.list_disks(request.get_ref(), &caller).await?,
        ))
    }
}

#[tonic::async_trait]
impl SnapshotService for ComputeSourcesGrpc {
    async fn get(&self, request: Request<GetSnapshotRequest>) -> Answer<Snapshot> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.sources
                .get_snapshot(request.get_ref(), &caller)
                .await?,
        ))
    }

    async fn list(&self, request: Request<ListSnapshotsRequest>) -> Answer<ListSnapshotsResponse> {
        let caller = Caller::from_grpc(&request)?;
        Ok(Response::new(
            self.sources
                .list_snapshots(request.get_ref(), &caller)
                .await?,
        ))
    }
}
