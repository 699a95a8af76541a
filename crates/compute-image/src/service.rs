//! The Compute ImageService, transport aside: all seven RPCs, with every mutation run as an
//! operation through `yc-operations`.

use std::sync::Arc;

use yc_operations::query::{FilterExpr, FilterSpec, OrderBy, QueryKey, page_size, token_too_old};
use yc_operations::{
    OperationCursor, OperationRunner, Resumers, Role, StartOperation, store_unavailable,
};
use yc_proto_types::google::protobuf::{Any, Empty, Timestamp};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::compute::v1::create_image_request::Source;
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageMetadata, CreateImageRequest, DeleteImageMetadata, DeleteImageRequest,
    GetImageLatestByFamilyRequest, GetImageRequest, Image, ListImageOperationsRequest,
    ListImageOperationsResponse, ListImagesRequest, ListImagesResponse, UpdateImageMetadata,
    UpdateImageRequest, image,
};
use yc_proto_types::yandex::cloud::operation::Operation;

use crate::domain::os_or_default;
use crate::source::{FetchPolicy, check_uri, fetch};
use crate::store::{ComputeImageStore, ComputeQuery, ComputeStoreError};

const SERVICE: &str = "yandex.cloud.compute.v1.ImageService";
/// The fields List can filter on.
pub const FILTER_FIELDS: &[&str] = &["name", "family", "status", "id"];
/// The fields List can sort by.
pub const ORDER_FIELDS: &[&str] = &["id", "name", "family", "status", "created_at"];
/// The fields an update mask can name.
pub const UPDATE_FIELDS: &[&str] = &["name", "description", "min_disk_size", "labels"];
/// The smallest disk there is: 4 MiB.
const MIN_DISK: i64 = 4 << 20;

pub use yc_operations::Caller;

/// Compute images over a [`ComputeImageStore`].
#[derive(Clone)]
pub struct ComputeImages {
    store: Arc<dyn ComputeImageStore>,
    runner: OperationRunner,
    fetch: FetchPolicy,
}

fn store_status(error: ComputeStoreError) -> Status {
    match error {
        ComputeStoreError::NameTaken(name) => Status::new(
            tonic::Code::AlreadyExists,
            format!("An image named {name:?} already exists in the folder"),
        ),
        ComputeStoreError::CursorGone(_) => token_too_old(),
        ComputeStoreError::Unavailable(why) => store_unavailable("image store", &why),
    }
}

fn not_found(id: &str) -> Status {
    Status::new(tonic::Code::NotFound, format!("Image {id} not found"))
}

fn invalid(message: String) -> Status {
    Status::new(tonic::Code::InvalidArgument, message)
}

/// The smallest disk an image of `size` bytes fits: its size, at least 4 MiB.
pub fn needed_disk(size: i64) -> i64 {
    size.max(MIN_DISK)
}

impl ComputeImages {
    /// The service over `store`, running operations through `runner`, fetching URIs under
    /// `fetch`.
    pub fn new(
        store: Arc<dyn ComputeImageStore>,
        runner: OperationRunner,
        fetch: FetchPolicy,
    ) -> Self {
        Self {
            store,
            runner,
            fetch,
        }
    }

    /// Stores an image as given, for seeding a server with known data: an image whose id is
    /// already stored is left as it is (so seeding is idempotent). A missing id is made, a
    /// missing creation time is now, an unspecified status is READY, the OS defaults to
    /// LINUX, and the sizes fit each other. Returns whether the image was new.
    pub async fn seed(&self, mut image: Image) -> Result<bool, Status> {
        if image.folder_id.is_empty() {
            return Err(invalid("a seeded image needs its folderId".into()));
        }
        if image.id.is_empty() {
            image.id = yc_operations::ids::new_id("fd8");
        } else if self
            .store
            .get(&image.id)
            .await
            .map_err(store_status)?
            .is_some()
        {
            return Ok(false);
        }
        image.created_at = image.created_at.or_else(|| Some(Timestamp::now()));
        if image.status == image::Status::Unspecified as i32 {
            image.status = image::Status::Ready as i32;
        }
        image.os = Some(os_or_default(image.os.take()));
        image.min_disk_size = image.min_disk_size.max(needed_disk(image.size));
        self.store.insert(&image).await.map_err(store_status)?;
        Ok(true)
    }

    /// The runner.
    pub fn runner(&self) -> &OperationRunner {
        &self.runner
    }

    /// The image `id`, if the caller holds `role` in its folder.
    async fn image(&self, id: &str, caller: &Caller, role: Role) -> Result<Image, Status> {
        let image = self
            .store
            .get(id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(id))?;
        caller.require(&image.folder_id, role)?;
        Ok(image)
    }

    /// `Get`.
    pub async fn get(&self, request: &GetImageRequest, caller: &Caller) -> Result<Image, Status> {
        validate(request)?;
        self.image(&request.image_id, caller, Role::Viewer).await
    }

    /// `GetLatestByFamily`: the newest READY image of the family in the folder.
    pub async fn latest_by_family(
        &self,
        request: &GetImageLatestByFamilyRequest,
        caller: &Caller,
    ) -> Result<Image, Status> {
        validate(request)?;
        caller.require(&request.folder_id, Role::Viewer)?;
        self.store
            .latest_by_family(&request.folder_id, &request.family)
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::new(
                    tonic::Code::NotFound,
                    format!(
                        "No READY image of family {:?} in folder {}",
                        request.family, request.folder_id
                    ),
                )
            })
    }

    /// `List`.
    pub async fn list(
        &self,
        request: &ListImagesRequest,
        caller: &Caller,
    ) -> Result<ListImagesResponse, Status> {
        validate(request)?;
        caller.require(&request.folder_id, Role::Viewer)?;
        let filter = FilterExpr::parse(
            &request.filter,
            FilterSpec {
                fields: FILTER_FIELDS,
                max_value_length: 256,
            },
        )?;
        let order = OrderBy::parse(&request.order_by, ORDER_FIELDS)?.or(&[("id", false)]);
        let key = QueryKey::new(
            &format!("{SERVICE}.List"),
            &[&request.folder_id, &request.filter, &request.order_by],
        );
        let limit = page_size(request.page_size);
        let query = ComputeQuery {
            folder_id: request.folder_id.clone(),
            filter,
            order: order.items,
            after: key.resume_after(&request.page_token)?,
            limit: limit + 1,
        };
        let mut images = self.store.list(&query).await.map_err(store_status)?;
        let next_page_token = key.finish_page(&mut images, limit, |i| &i.id);
        Ok(ListImagesResponse {
            images,
            next_page_token,
        })
    }

    /// `ListOperations`: the image's operations, newest first.
    pub async fn list_operations(
        &self,
        request: &ListImageOperationsRequest,
        caller: &Caller,
    ) -> Result<ListImageOperationsResponse, Status> {
        validate(request)?;
        self.image(&request.image_id, caller, Role::Viewer).await?;
        let key = QueryKey::new(&format!("{SERVICE}.ListOperations"), &[&request.image_id]);
        let cursor = match key.resume_after(&request.page_token)? {
            None => None,
            Some(id) => Some(OperationCursor::after(
                &self.runner.get(&id).await.map_err(|_| {
                    invalid(
                        "Request validation error: page_token: the listing it continues is too old"
                            .into(),
                    )
                })?,
            )),
        };
        let limit = page_size(request.page_size);
        let mut operations = self
            .runner
            .list_for_resource(&request.image_id, limit + 1, cursor.as_ref())
            .await?;
        let next_page_token = key.finish_page(&mut operations, limit, |o| &o.id);
        Ok(ListImageOperationsResponse {
            operations,
            next_page_token,
        })
    }

    /// `Create`: the image appears at once as CREATING; the operation finishes with it READY,
    /// or with the error that left it ERROR.
    pub async fn create(
        &self,
        request: &CreateImageRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        caller.require(&request.folder_id, Role::Editor)?;
        // What the source is, checked before anything is stored.
        let copy_of = match &request.source {
            Some(Source::ImageId(id)) => {
                let source = self.image(id, caller, Role::Viewer).await?;
                if source.status != image::Status::Ready as i32 {
                    return Err(Status::new(tonic::Code::FailedPrecondition, format!("Image {id} is not READY")));
                }
                check_min_disk(request.min_disk_size, source.size.max(source.min_disk_size))?;
                Some(source)
            }
            Some(Source::DiskId(id)) => {
                return Err(Status::new(tonic::Code::NotFound, format!("Disk {id} not found")));
            }
            Some(Source::SnapshotId(id)) => {
                return Err(Status::new(tonic::Code::NotFound, format!("Snapshot {id} not found")));
            }
            Some(Source::Uri(uri)) => {
                check_uri(uri, &self.fetch)?;
                None
            }
            None => return Err(invalid("Request validation error: source: exactly one of image_id, disk_id, snapshot_id, uri must be set".into())),
        };

        let id = yc_operations::ids::new_id("fd8");
        let now = Timestamp::now();
        let image = Image {
            id: id.clone(),
            folder_id: request.folder_id.clone(),
            created_at: Some(now),
            name: request.name.clone(),
            description: request.description.clone(),
            labels: request.labels.clone(),
            family: request.family.clone(),
            min_disk_size: request.min_disk_size,
            product_ids: request.product_ids.clone(),
            status: image::Status::Creating as i32,
            os: Some(os_or_default(request.os.clone())),
            pooled: request.pooled,
            hardware_generation: request.hardware_generation,
            ..Default::default()
        };
        let start = StartOperation::new(
            "fd8",
            format!("{SERVICE}.Create"),
            "Create image",
            &id,
            &CreateImageMetadata {
                image_id: id.clone(),
            },
            request,
        )
        .caller(caller);
        // The image is stored before the operation starts, so that it is visible at once; a
        // repeat with the same idempotency key gets the first operation and stores nothing.
        if let Some(first) = self.runner.find_repeat(&start).await? {
            return Ok(first);
        }
        self.store.insert(&image).await.map_err(store_status)?;
        let service = self.clone();
        let uri = match &request.source {
            Some(Source::Uri(uri)) => Some(uri.clone()),
            _ => None,
        };
        let started = self
            .runner
            .start(start, move |_ctx| async move {
                service.finish_create(image, copy_of, uri).await
            })
            .await;
        let created_here = started.as_ref().is_ok_and(|op| {
            op.metadata
                .as_ref()
                .and_then(|m| m.to_msg::<CreateImageMetadata>().ok())
                .is_some_and(|m| m.image_id == id)
        });
        if !created_here {
            // The operation was not started here (a reused idempotency key, raced): the image
            // stored for it goes again.
            let _ = self.store.delete(&id, Timestamp::now()).await;
        }
        started
    }

    /// The background part of Create: the image becomes READY, or ERROR with the error.
    async fn finish_create(
        &self,
        mut image: Image,
        copy_of: Option<Image>,
        uri: Option<String>,
    ) -> Result<Any, Status> {
        match self.fill_from_source(&mut image, copy_of, uri).await {
            Ok(()) => {
                image.status = image::Status::Ready as i32;
                self.store.update(&image).await.map_err(store_status)?;
                Ok(Any::from_msg(&image))
            }
            Err(error) => {
                image.status = image::Status::Error as i32;
                if let Err(e) = self.store.update(&image).await {
                    tracing::error!(image = %image.id, error = %e, "cannot mark the image ERROR");
                }
                Err(error)
            }
        }
    }

    /// Sizes (and, from an image, OS and licenses) from the source.
    async fn fill_from_source(
        &self,
        image: &mut Image,
        copy_of: Option<Image>,
        uri: Option<String>,
    ) -> Result<(), Status> {
        if let Some(source) = copy_of {
            image.size = source.size;
            image.storage_size = source.storage_size;
            image.min_disk_size = image
                .min_disk_size
                .max(source.min_disk_size)
                .max(needed_disk(source.size));
            if image.product_ids.is_empty() {
                image.product_ids = source.product_ids;
            }
            if source.os.is_some() {
                image.os = source.os;
            }
            return Ok(());
        }
        if let Some(uri) = uri {
            let url = check_uri(&uri, &self.fetch)?;
            let inspected = fetch(&url, &self.fetch).await?;
            let need = needed_disk(inspected.size);
            check_min_disk(image.min_disk_size, need)?;
            image.size = inspected.size;
            image.storage_size = inspected.storage_size;
            if image.min_disk_size == 0 {
                image.min_disk_size = need;
            }
        }
        Ok(())
    }

    /// `Update`: the fields the mask names (or, without a mask, the fields set) change.
    pub async fn update(
        &self,
        request: &UpdateImageRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        let image = self.updated(request, caller).await?;
        let id = image.id.clone();
        let start = StartOperation::new(
            "fd8",
            format!("{SERVICE}.Update"),
            "Update image",
            &id,
            &UpdateImageMetadata {
                image_id: id.clone(),
            },
            request,
        )
        .caller(caller);
        let store = self.store.clone();
        self.runner
            .start(start, move |_ctx| async move {
                if !store.update(&image).await.map_err(store_status)? {
                    return Err(not_found(&image.id));
                }
                Ok(Any::from_msg(&image))
            })
            .await
    }

    /// The image as `request` would leave it: the fields its mask names (or, without a mask,
    /// the fields it sets) changed.
    async fn updated(
        &self,
        request: &UpdateImageRequest,
        caller: &Caller,
    ) -> Result<Image, Status> {
        let paths: Vec<String> = match &request.update_mask {
            Some(mask) => mask.paths.clone(),
            None => [
                ("name", !request.name.is_empty()),
                ("description", !request.description.is_empty()),
                ("min_disk_size", request.min_disk_size != 0),
                ("labels", !request.labels.is_empty()),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(path, _)| path.to_owned())
            .collect(),
        };
        if let Some(unknown) = paths.iter().find(|p| !UPDATE_FIELDS.contains(&p.as_str())) {
            return Err(invalid(format!(
                "Request validation error: update_mask: {unknown:?} is not a field that can be updated; the fields are {}",
                UPDATE_FIELDS.join(", ")
            )));
        }
        let mut image = self.image(&request.image_id, caller, Role::Editor).await?;
        for path in &paths {
            match path.as_str() {
                "name" => image.name = request.name.clone(),
                "description" => image.description = request.description.clone(),
                "labels" => image.labels = request.labels.clone(),
                _ => {
                    check_min_disk(request.min_disk_size, needed_disk(image.size))?;
                    image.min_disk_size = if request.min_disk_size == 0 {
                        needed_disk(image.size)
                    } else {
                        request.min_disk_size
                    };
                }
            }
        }
        Ok(image)
    }

    /// How interrupted Creates, Updates and Deletes continue after a restart: each is done
    /// again from its stored request (a Create fetches its source again).
    pub fn resumers(&self, resumers: Resumers) -> Resumers {
        let (create, update, delete) = (self.clone(), self.clone(), self.clone());
        // The caller's access was checked when the operation started; the rest of its work is
        // the server's.
        let server = Caller::default;
        resumers
            .add(format!("{SERVICE}.Create"), false, move |record, _ctx| {
                let service = create.clone();
                async move {
                    let request: CreateImageRequest = decode_request(&record.request)?;
                    let id = record
                        .operation
                        .metadata
                        .as_ref()
                        .and_then(|m| m.to_msg::<CreateImageMetadata>().ok())
                        .map(|m| m.image_id)
                        .unwrap_or_default();
                    let image = service.image(&id, &server(), Role::Editor).await?;
                    let (copy_of, uri) = match &request.source {
                        Some(Source::ImageId(source)) => (
                            Some(service.image(source, &server(), Role::Viewer).await?),
                            None,
                        ),
                        Some(Source::Uri(uri)) => (None, Some(uri.clone())),
                        _ => (None, None),
                    };
                    service.finish_create(image, copy_of, uri).await
                }
            })
            .add(format!("{SERVICE}.Update"), false, move |record, _ctx| {
                let service = update.clone();
                async move {
                    let request: UpdateImageRequest = decode_request(&record.request)?;
                    let image = service.updated(&request, &server()).await?;
                    if !service.store.update(&image).await.map_err(store_status)? {
                        return Err(not_found(&image.id));
                    }
                    Ok(Any::from_msg(&image))
                }
            })
            .add(format!("{SERVICE}.Delete"), false, move |record, _ctx| {
                let service = delete.clone();
                async move {
                    let request: DeleteImageRequest = decode_request(&record.request)?;
                    service
                        .store
                        .delete(&request.image_id, Timestamp::now())
                        .await
                        .map_err(store_status)?;
                    Ok(Any::from_msg(&Empty {}))
                }
            })
    }

    /// `Delete`: the image is DELETING while the operation runs, then gone.
    pub async fn delete(
        &self,
        request: &DeleteImageRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        let mut image = self.image(&request.image_id, caller, Role::Editor).await?;
        let id = image.id.clone();
        let start = StartOperation::new(
            "fd8",
            format!("{SERVICE}.Delete"),
            "Delete image",
            &id,
            &DeleteImageMetadata {
                image_id: id.clone(),
            },
            request,
        )
        .caller(caller);
        // A repeat with its idempotency key changes nothing; it gets the first operation.
        if let Some(first) = self.runner.find_repeat(&start).await? {
            return Ok(first);
        }
        let before = image.status;
        image.status = image::Status::Deleting as i32;
        self.store.update(&image).await.map_err(store_status)?;
        let store = self.store.clone();
        let started = self
            .runner
            .start(start, move |_ctx| async move {
                if store
                    .delete(&id, Timestamp::now())
                    .await
                    .map_err(store_status)?
                {
                    Ok(Any::from_msg(&Empty {}))
                } else {
                    Err(not_found(&id))
                }
            })
            .await;
        if started.is_err() {
            // No operation will delete it: the image is as it was.
            image.status = before;
            let _ = self.store.update(&image).await;
        }
        started
    }
}

fn decode_request<Q: prost::Message + Default>(bytes: &[u8]) -> Result<Q, Status> {
    Q::decode(bytes).map_err(|e| {
        Status::new(
            tonic::Code::Internal,
            format!("a stored request does not decode: {e}"),
        )
    })
}

fn check_min_disk(requested: i64, needed: i64) -> Result<(), Status> {
    if requested != 0 && requested < needed {
        return Err(invalid(format!(
            "Request validation error: min_disk_size: must be at least {needed}, the size the source needs"
        )));
    }
    Ok(())
}
