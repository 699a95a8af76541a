//! A typed client of the Compute ImageService over the shared [`ApiClient`] (gRPC or REST):
//! every RPC, List and ListAccessBindings as streams over pages, and Create, Update, Delete and
//! the binding changes that wait for their operations.
//!
//! ```no_run
//! use yc_compute_image::{ApiClient, ComputeImageClient};
//! use yc_proto_types::yandex::cloud::compute::v1::{CreateImageRequest, create_image_request::Source};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let api = ApiClient::rest("http://127.0.0.1:50051")?; // or ApiClient::connect_grpc(…).await?
//! let client = ComputeImageClient::new(api);
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
use yc_operations::client::ApiClient;
use yc_operations::{WaitError, paged};
use yc_proto_types::google::protobuf::Empty;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::access::{
    AccessBinding, AccessBindingDelta, AccessBindingsOperationResult, ListAccessBindingsRequest,
    ListAccessBindingsResponse, SetAccessBindingsRequest, UpdateAccessBindingsRequest,
};
use yc_proto_types::yandex::cloud::compute::v1::disk_service_rpc as disk_rpc;
use yc_proto_types::yandex::cloud::compute::v1::image_service_rpc as rpc;
use yc_proto_types::yandex::cloud::compute::v1::snapshot_service_rpc as snapshot_rpc;
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageLatestByFamilyRequest, GetImageRequest, Image,
    ListImageOperationsRequest, ListImageOperationsResponse, ListImagesRequest, ListImagesResponse,
    UpdateImageRequest,
};
use yc_proto_types::yandex::cloud::compute::v1::{
    Disk, GetDiskRequest, GetSnapshotRequest, ListDisksRequest, ListDisksResponse,
    ListSnapshotsRequest, ListSnapshotsResponse, Snapshot,
};
use yc_proto_types::yandex::cloud::operation::Operation;

/// The Compute ImageService, over gRPC or REST as its [`ApiClient`] is.
#[derive(Debug, Clone)]
pub struct ComputeImageClient {
    api: ApiClient,
}

impl From<ApiClient> for ComputeImageClient {
    fn from(api: ApiClient) -> Self {
        Self { api }
    }
}

impl ComputeImageClient {
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

    /// `GetLatestByFamily`.
    pub async fn latest_by_family(&self, folder_id: &str, family: &str) -> Result<Image, Status> {
        let request = GetImageLatestByFamilyRequest {
            folder_id: folder_id.to_owned(),
            family: family.to_owned(),
        };
        self.api.call(rpc::GET_LATEST_BY_FAMILY, request).await
    }

    /// One page of `List`.
    pub async fn list(&self, request: &ListImagesRequest) -> Result<ListImagesResponse, Status> {
        self.api.call(rpc::LIST, request.clone()).await
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
        self.api.call(rpc::LIST_OPERATIONS, request.clone()).await
    }

    /// `Create`: the operation as it starts.
    pub async fn create(&self, request: &CreateImageRequest) -> Result<Operation, Status> {
        self.api.call(rpc::CREATE, request.clone()).await
    }

    /// `Update`: the operation as it starts.
    pub async fn update(&self, request: &UpdateImageRequest) -> Result<Operation, Status> {
        self.api.call(rpc::UPDATE, request.clone()).await
    }

    /// `Delete`: the operation as it starts.
    pub async fn delete(&self, image_id: &str) -> Result<Operation, Status> {
        let request = DeleteImageRequest {
            image_id: image_id.to_owned(),
        };
        self.api.call(rpc::DELETE, request).await
    }

    /// `Create`, then the image once it is READY (or the error that stopped it).
    pub async fn create_and_wait(&self, request: &CreateImageRequest) -> Result<Image, WaitError> {
        self.api.call_and_wait(rpc::CREATE, request.clone()).await
    }

    /// `Update`, then the updated image.
    pub async fn update_and_wait(&self, request: &UpdateImageRequest) -> Result<Image, WaitError> {
        self.api.call_and_wait(rpc::UPDATE, request.clone()).await
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

    /// One page of `ListAccessBindings`.
    pub async fn list_access_bindings(
        &self,
        request: &ListAccessBindingsRequest,
    ) -> Result<ListAccessBindingsResponse, Status> {
        self.api
            .call(rpc::LIST_ACCESS_BINDINGS, request.clone())
            .await
    }

    /// Every access binding of an image, page after page.
    pub fn list_all_access_bindings(
        &self,
        image_id: &str,
    ) -> impl Stream<Item = Result<AccessBinding, Status>> + '_ {
        let first = ListAccessBindingsRequest {
            resource_id: image_id.to_owned(),
            ..Default::default()
        };
        paged(first, move |request| async move {
            let page = self.list_access_bindings(&request).await?;
            let next = (!page.next_page_token.is_empty()).then(|| ListAccessBindingsRequest {
                page_token: page.next_page_token.clone(),
                ..request
            });
            Ok((page.access_bindings, next))
        })
    }

    /// `SetAccessBindings`: the operation as it starts.
    pub async fn set_access_bindings(
        &self,
        image_id: &str,
        bindings: Vec<AccessBinding>,
    ) -> Result<Operation, Status> {
        let request = SetAccessBindingsRequest {
            resource_id: image_id.to_owned(),
            access_bindings: bindings,
        };
        self.api.call(rpc::SET_ACCESS_BINDINGS, request).await
    }

    /// `UpdateAccessBindings`: the operation as it starts.
    pub async fn update_access_bindings(
        &self,
        image_id: &str,
        deltas: Vec<AccessBindingDelta>,
    ) -> Result<Operation, Status> {
        let request = UpdateAccessBindingsRequest {
            resource_id: image_id.to_owned(),
            access_binding_deltas: deltas,
        };
        self.api.call(rpc::UPDATE_ACCESS_BINDINGS, request).await
    }

    /// `SetAccessBindings`: the image's bindings become `bindings`; what changed, once done.
    pub async fn set_access_bindings_and_wait(
        &self,
        image_id: &str,
        bindings: Vec<AccessBinding>,
    ) -> Result<AccessBindingsOperationResult, WaitError> {
        let request = SetAccessBindingsRequest {
            resource_id: image_id.to_owned(),
            access_bindings: bindings,
        };
        self.api
            .call_and_wait(rpc::SET_ACCESS_BINDINGS, request)
            .await
    }

    /// `UpdateAccessBindings`: adds and removes bindings; what changed, once done.
    pub async fn update_access_bindings_and_wait(
        &self,
        image_id: &str,
        deltas: Vec<AccessBindingDelta>,
    ) -> Result<AccessBindingsOperationResult, WaitError> {
        let request = UpdateAccessBindingsRequest {
            resource_id: image_id.to_owned(),
            access_binding_deltas: deltas,
        };
        self.api
            .call_and_wait(rpc::UPDATE_ACCESS_BINDINGS, request)
            .await
    }
}

/// The DiskService and SnapshotService (Get and List), over gRPC or REST as its [`ApiClient`]
/// is: the disks and snapshots images are made from.
#[derive(Debug, Clone)]
pub struct ComputeSourcesClient {
    api: ApiClient,
}

impl From<ApiClient> for ComputeSourcesClient {
    fn from(api: ApiClient) -> Self {
        Self { api }
    }
}

impl ComputeSourcesClient {
    /// The services through `api`.
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }

    /// `DiskService.Get`.
    pub async fn get_disk(&self, disk_id: &str) -> Result<Disk, Status> {
        let request = GetDiskRequest {
            disk_id: disk_id.to_owned(),
        };
        self.api.call(disk_rpc::GET, request).await
    }

    /// One page of `DiskService.List`.
    pub async fn list_disks(
        &self,
        request: &ListDisksRequest,
    ) -> Result<ListDisksResponse, Status> {
        self.api.call(disk_rpc::LIST, request.clone()).await
    }

    /// Every disk of a `DiskService.List`, page after page.
    pub fn list_all_disks(
        &self,
        request: ListDisksRequest,
    ) -> impl Stream<Item = Result<Disk, Status>> + '_ {
        paged(request, move |request| async move {
            let page = self.list_disks(&request).await?;
            let next = (!page.next_page_token.is_empty()).then(|| ListDisksRequest {
                page_token: page.next_page_token.clone(),
                ..request
            });
            Ok((page.disks, next))
        })
    }

    /// `SnapshotService.Get`.
    pub async fn get_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, Status> {
        let request = GetSnapshotRequest {
            snapshot_id: snapshot_id.to_owned(),
        };
        self.api.call(snapshot_rpc::GET, request).await
    }

    /// One page of `SnapshotService.List`.
    pub async fn list_snapshots(
        &self,
        request: &ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse, Status> {
        self.api.call(snapshot_rpc::LIST, request.clone()).await
    }

    /// Every snapshot of a `SnapshotService.List`, page after page.
    pub fn list_all_snapshots(
        &self,
        request: ListSnapshotsRequest,
    ) -> impl Stream<Item = Result<Snapshot, Status>> + '_ {
        paged(request, move |request| async move {
            let page = self.list_snapshots(&request).await?;
            let next = (!page.next_page_token.is_empty()).then(|| ListSnapshotsRequest {
                page_token: page.next_page_token.clone(),
                ..request
            });
            Ok((page.snapshots, next))
        })
    }
}
