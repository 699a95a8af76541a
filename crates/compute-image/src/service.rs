//! The Compute ImageService, transport aside: all ten RPCs, with every mutation run as an
//! operation through `yc-operations`.

use std::sync::Arc;

use yc_api_runtime::list::{ListSpec, Page, QueryKey, decode_page, page_size, token_too_old};
use yc_api_runtime::stored::Stored;
use yc_api_runtime::{Role, bindings, permission_denied, store_unavailable};
use yc_operations::{
    CancelMode, OperationContext, OperationCursor, OperationRunner, Resumers, StartOperation,
};
use yc_proto_types::encoded::Form;
use yc_proto_types::google::protobuf::{Any, Empty, Timestamp};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::access::{
    AccessBinding, AccessBindingsOperationResult, ListAccessBindingsRequest,
    ListAccessBindingsResponse, SetAccessBindingsMetadata, SetAccessBindingsRequest,
    UpdateAccessBindingsMetadata, UpdateAccessBindingsRequest,
};
use yc_proto_types::yandex::cloud::compute::v1::create_image_request::Source;
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageMetadata, CreateImageRequest, DeleteImageMetadata, DeleteImageRequest, Disk,
    GetImageLatestByFamilyRequest, GetImageRequest, Image, ListImageOperationsRequest,
    ListImageOperationsResponse, ListImagesRequest, ListImagesResponse, Snapshot,
    UpdateImageMetadata, UpdateImageRequest, image,
};
use yc_proto_types::yandex::cloud::operation::Operation;

use crate::domain::os_or_default;
use crate::source::{FetchPolicy, Inspected, check_uri, fetch};
use crate::sources::{ComputeSources, SourceKind};
use crate::store::{
    BindingsChange, BindingsChanged, ComputeImageStore, ComputeQuery, ComputeStoreError,
    ImageChange, Modified,
};

const SERVICE: &str = "yandex.cloud.compute.v1.ImageService";
const CREATE_METHOD: &str = "yandex.cloud.compute.v1.ImageService.Create";
const UPDATE_METHOD: &str = "yandex.cloud.compute.v1.ImageService.Update";
const DELETE_METHOD: &str = "yandex.cloud.compute.v1.ImageService.Delete";
const SET_BINDINGS_METHOD: &str = "yandex.cloud.compute.v1.ImageService.SetAccessBindings";
const UPDATE_BINDINGS_METHOD: &str = "yandex.cloud.compute.v1.ImageService.UpdateAccessBindings";
/// The fields List can filter on.
pub const FILTER_FIELDS: &[&str] = &["name", "family", "status", "id"];
/// The fields List can sort by.
pub const ORDER_FIELDS: &[&str] = &["id", "name", "family", "status", "created_at"];

/// What List accepts.
const LIST: ListSpec<'static> = ListSpec {
    method: "yandex.cloud.compute.v1.ImageService.List",
    filter_fields: FILTER_FIELDS,
    order_fields: ORDER_FIELDS,
    default_order: &[("id", false)],
};
/// The fields an update mask can name.
pub const UPDATE_FIELDS: &[&str] = &["name", "description", "min_disk_size", "labels"];
/// The smallest disk there is: 4 MiB.
const MIN_DISK: i64 = 4 << 20;

pub use yc_api_runtime::Caller;

/// Compute images over a [`ComputeImageStore`].
#[derive(Clone)]
pub struct ComputeImages {
    store: Arc<dyn ComputeImageStore>,
    runner: OperationRunner,
    fetch: FetchPolicy,
    sources: Option<ComputeSources>,
}

fn store_status(error: ComputeStoreError) -> Status {
    match error {
        ComputeStoreError::NameTaken(name) => Status::new(
            tonic::Code::AlreadyExists,
            format!(
                "An image named {} already exists in the folder",
                yc_proto_types::quote(&name)
            ),
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
            sources: None,
        }
    }

    /// The same service, making images from the disks and snapshots of `sources` (without
    /// them, no disk or snapshot is found).
    pub fn with_sources(mut self, sources: ComputeSources) -> Self {
        self.sources = Some(sources);
        self
    }

    /// The source `id` of kind `K` (a disk or snapshot), READY, if the caller may read it.
    async fn ready_source<K: SourceKind>(&self, id: &str, caller: &Caller) -> Result<K, Status> {
        let Some(sources) = &self.sources else {
            return Err(Status::new(
                tonic::Code::NotFound,
                format!("{} {id} not found", K::NOUN),
            ));
        };
        let source: K = sources.readable(id, caller).await?;
        if !source.is_ready() {
            return Err(Status::new(
                tonic::Code::FailedPrecondition,
                format!("{} {id} is not READY", K::NOUN),
            ));
        }
        Ok(source)
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
            image.id = yc_api_runtime::ids::new_id("fd8");
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
        // A disk holds the whole image: its size, or its storage size when that is all the
        // seed gives.
        image.min_disk_size = image
            .min_disk_size
            .max(needed_disk(image.size.max(image.storage_size)));
        self.store.insert(&image).await.map_err(store_status)?;
        Ok(true)
    }

    /// The runner.
    pub fn runner(&self) -> &OperationRunner {
        &self.runner
    }

    /// The image `id`, if the caller holds `role` in its folder or an access binding on the
    /// image grants it.
    async fn image(&self, id: &str, caller: &Caller, role: Role) -> Result<Image, Status> {
        Ok(self
            .image_granted(id, caller, role, role)
            .await?
            .0
            .message()
            .clone())
    }

    /// The image `id`, if the caller holds `in_folder` in its folder, or an access binding on
    /// the image grants `on_image`; with the image's bindings when they were read (only when
    /// the folder's roles do not do).
    async fn image_granted(
        &self,
        id: &str,
        caller: &Caller,
        in_folder: Role,
        on_image: Role,
    ) -> Result<(Arc<Stored<Image>>, Option<Vec<AccessBinding>>), Status> {
        let image = self
            .store
            .get(id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(id))?;
        if caller.access.allows(&image.message().folder_id, in_folder) {
            return Ok((image, None));
        }
        let held = self.bindings_of(id).await?;
        if bindings::granted(&held, caller) >= Some(on_image) {
            Ok((image, Some(held)))
        } else {
            Err(permission_denied())
        }
    }

    /// The access bindings of the image `id`.
    async fn bindings_of(&self, id: &str) -> Result<Vec<AccessBinding>, Status> {
        self.store
            .access_bindings(id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(id))
    }

    /// The image whose bindings the caller changes: for an editor of its folder, or an admin
    /// of the image.
    async fn image_to_bind(&self, id: &str, caller: &Caller) -> Result<Image, Status> {
        Ok(self
            .image_granted(id, caller, Role::Editor, Role::Admin)
            .await?
            .0
            .message()
            .clone())
    }

    /// `ListAccessBindings`: for a caller who may read the image.
    pub async fn list_access_bindings(
        &self,
        request: &ListAccessBindingsRequest,
        caller: &Caller,
    ) -> Result<ListAccessBindingsResponse, Status> {
        validate(request)?;
        let id = &request.resource_id;
        // The bindings the access check read, or else read now: once either way.
        let held = match self
            .image_granted(id, caller, Role::Viewer, Role::Viewer)
            .await?
        {
            (_, Some(held)) => held,
            (_, None) => self.bindings_of(id).await?,
        };
        let key = QueryKey::new(
            self.runner.token_keys(),
            &format!("{SERVICE}.ListAccessBindings"),
            &[id],
        );
        bindings::page(held, &key, &request.page_token, request.page_size)
    }

    /// `SetAccessBindings`: the image's bindings become the request's, for an editor of its
    /// folder or an admin of the image. The operation's result lists what changed.
    pub async fn set_access_bindings(
        &self,
        request: &SetAccessBindingsRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        bindings::check(&request.access_bindings, |i| {
            format!("access_bindings[{i}]")
        })?;
        let metadata = SetAccessBindingsMetadata {
            resource_id: request.resource_id.clone(),
        };
        self.start_binding(
            caller,
            (SET_BINDINGS_METHOD, "Set image access bindings"),
            &metadata,
            BindingsRequest::Set(request.clone()),
        )
        .await
    }

    /// `UpdateAccessBindings`: adds and removes bindings of the image, for an editor of its
    /// folder or an admin of the image. The operation's result lists what changed.
    pub async fn update_access_bindings(
        &self,
        request: &UpdateAccessBindingsRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        bindings::check(
            request
                .access_binding_deltas
                .iter()
                .filter_map(|d| d.access_binding.as_ref()),
            |i| format!("access_binding_deltas[{i}].access_binding"),
        )?;
        let metadata = UpdateAccessBindingsMetadata {
            resource_id: request.resource_id.clone(),
        };
        self.start_binding(
            caller,
            (UPDATE_BINDINGS_METHOD, "Update image access bindings"),
            &metadata,
            BindingsRequest::Update(request.clone()),
        )
        .await
    }

    /// Starts the operation of a Set or Update of the image's bindings (`(method,
    /// description)`), once the caller may change them.
    async fn start_binding<M: prost::Name>(
        &self,
        caller: &Caller,
        (method, description): (&'static str, &str),
        metadata: &M,
        request: BindingsRequest,
    ) -> Result<Operation, Status> {
        let id = self.image_to_bind(request.resource_id(), caller).await?.id;
        let start = match &request {
            BindingsRequest::Set(r) => {
                StartOperation::new("fd8", method, description, &id, metadata, r)
            }
            BindingsRequest::Update(r) => {
                StartOperation::new("fd8", method, description, &id, metadata, r)
            }
        }
        .caller(caller);
        let service = self.clone();
        self.runner
            .start(start, move |_ctx| async move {
                service.apply_bindings(&request).await
            })
            .await
    }

    /// The work of a Set or Update of the image's bindings, done again as it is after a
    /// restart.
    async fn apply_bindings(&self, request: &BindingsRequest) -> Result<Any, Status> {
        self.change_bindings(request.resource_id(), &|held| match request {
            BindingsRequest::Set(r) => Ok(bindings::set(held, r.access_bindings.clone())),
            BindingsRequest::Update(r) => bindings::update(held, &r.access_binding_deltas),
        })
        .await
    }

    /// Changes the image's bindings in one transaction; the operation's result.
    async fn change_bindings(&self, id: &str, change: &BindingsChange<'_>) -> Result<Any, Status> {
        match self
            .store
            .change_access_bindings(id, change)
            .await
            .map_err(store_status)?
        {
            BindingsChanged::Changed(effective_deltas) => {
                Ok(Any::from_msg(&AccessBindingsOperationResult {
                    effective_deltas,
                }))
            }
            BindingsChanged::Refused(status) => Err(status),
            BindingsChanged::Missing => Err(not_found(id)),
        }
    }

    /// `Get`.
    pub async fn get(&self, request: &GetImageRequest, caller: &Caller) -> Result<Image, Status> {
        validate(request)?;
        self.image(&request.image_id, caller, Role::Viewer).await
    }

    /// `Get`, answered with the image's stored bytes in `form` (the same bytes as encoding
    /// [`get`](Self::get)'s image).
    pub async fn get_encoded(
        &self,
        request: &GetImageRequest,
        caller: &Caller,
        form: Form,
    ) -> Result<Vec<u8>, Status> {
        validate(request)?;
        let (image, _) = self
            .image_granted(&request.image_id, caller, Role::Viewer, Role::Viewer)
            .await?;
        Ok(image.bytes(form).to_vec())
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
        decode_page(&self.list_encoded(request, caller, Form::Protobuf).await?)
    }

    /// `List`, its response written from the images' stored bytes in `form` without
    /// decoding them (the same bytes as encoding [`list`](Self::list)'s response).
    pub async fn list_encoded(
        &self,
        request: &ListImagesRequest,
        caller: &Caller,
        form: Form,
    ) -> Result<Vec<u8>, Status> {
        validate(request)?;
        caller.require(&request.folder_id, Role::Viewer)?;
        let page = Page::read(
            self.runner.token_keys(),
            &LIST,
            &[&request.folder_id],
            &request.filter,
            &request.order_by,
            request.page_size,
            &request.page_token,
        )?;
        let query = ComputeQuery {
            folder_id: request.folder_id.clone(),
            filter: page.filter.clone(),
            order: page.order.clone(),
            after: page.after.clone(),
            limit: page.fetch_limit(),
        };
        let mut rows = page.rows::<ListImagesResponse>(form)?;
        self.store
            .list(&query, &mut rows)
            .await
            .map_err(store_status)?;
        Ok(page.answer(rows))
    }

    /// `ListOperations`: the image's operations, newest first.
    pub async fn list_operations(
        &self,
        request: &ListImageOperationsRequest,
        caller: &Caller,
    ) -> Result<ListImageOperationsResponse, Status> {
        validate(request)?;
        self.image(&request.image_id, caller, Role::Viewer).await?;
        let key = QueryKey::new(
            self.runner.token_keys(),
            &format!("{SERVICE}.ListOperations"),
            &[&request.image_id],
        );
        let cursor = match key.resume_after(&request.page_token)? {
            None => None,
            Some(id) => Some(OperationCursor::after(
                &self
                    .runner
                    .get(&id)
                    .await
                    .map_err(|_| yc_api_runtime::list::token_too_old())?,
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
    /// or with the error that left it ERROR. The image is stored by the operation's work (the
    /// call returns once it is), so that a restart at any moment resumes a Create whose image
    /// is stored or not. Cancel stops the fetch and leaves the image ERROR.
    pub async fn create(
        &self,
        request: &CreateImageRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        caller.require(&request.folder_id, Role::Editor)?;
        // What the source is, checked before anything is stored.
        let source = match &request.source {
            Some(Source::ImageId(id)) => {
                let source = self.image(id, caller, Role::Viewer).await?;
                if source.status != image::Status::Ready as i32 {
                    return Err(Status::new(
                        tonic::Code::FailedPrecondition,
                        format!("Image {id} is not READY"),
                    ));
                }
                check_min_disk(request.min_disk_size, source.size.max(source.min_disk_size))?;
                Sourced::Image(Box::new(source))
            }
            Some(Source::DiskId(id)) => {
                let disk: Disk = self.ready_source(id, caller).await?;
                check_min_disk(request.min_disk_size, needed_disk(disk.size))?;
                Sourced::Disk(Box::new(disk))
            }
            Some(Source::SnapshotId(id)) => {
                let snapshot: Snapshot = self.ready_source(id, caller).await?;
                check_min_disk(request.min_disk_size, needed_disk(snapshot.disk_size))?;
                Sourced::Snapshot(Box::new(snapshot))
            }
            Some(Source::Uri(uri)) => Sourced::Uri(check_uri(uri, &self.fetch)?),
            // `validate` refused a request without one (the proto's `exactly_one`).
            None => {
                return Err(Status::new(
                    tonic::Code::Internal,
                    "A request without a source passed validation",
                ));
            }
        };

        let id = yc_api_runtime::ids::new_id("fd8");
        let mut image = new_image(request, &id, Timestamp::now());
        // The source's OS and hardware generation, unless the request gives its own (the
        // request's fields override the source's); a disk or snapshot has no OS to give.
        let inherited = match &source {
            Sourced::Image(source) => {
                if request.os.is_none() {
                    image.os = Some(os_or_default(source.os.clone()));
                }
                source.hardware_generation
            }
            Sourced::Disk(disk) => disk.hardware_generation,
            Sourced::Snapshot(snapshot) => snapshot.hardware_generation,
            Sourced::Uri(_) => None,
        };
        if request.hardware_generation.is_none() {
            image.hardware_generation = inherited;
        }
        let start = StartOperation::new(
            "fd8",
            CREATE_METHOD,
            "Create image",
            &id,
            &CreateImageMetadata {
                image_id: id.clone(),
            },
            request,
        )
        .caller(caller)
        .cancel_mode(CancelMode::Notify);
        let service = self.clone();
        self.runner
            .start_accepted(start, move |ctx| async move {
                service.store.insert(&image).await.map_err(store_status)?;
                ctx.accept();
                service.finish_create(&ctx, &image.id, source).await
            })
            .await
    }

    /// The background part of Create, from a stored CREATING image: READY with what the source
    /// gives, or ERROR with the error (a cancelled Create too).
    async fn finish_create(
        &self,
        ctx: &OperationContext,
        id: &str,
        source: Sourced,
    ) -> Result<Any, Status> {
        let filled = tokio::select! {
            filled = self.inspect(source) => filled,
            () = ctx.cancelled() => Err(Status::new(
                tonic::Code::Cancelled,
                format!("Operation {} was cancelled; image {id} is left in ERROR", ctx.operation_id()),
            )),
        };
        let finished = match &filled {
            Ok(filled) => {
                self.modify_retrying(id, &|image| {
                    creating(image)?;
                    filled.apply(image)?;
                    image.status = image::Status::Ready as i32;
                    Ok(())
                })
                .await
            }
            Err(error) => Err(error.clone()),
        };
        let Err(error) = finished else {
            return finished.map(|image| Any::from_msg(&image));
        };
        let failed = self
            .modify_retrying(id, &|image| {
                creating(image)?;
                image.status = image::Status::Error as i32;
                Ok(())
            })
            .await;
        match failed {
            // The store stayed unavailable: that is the operation's error, and the image
            // stays CREATING only if the operation cannot be finished either (the same
            // store), when the restart rule resumes it.
            Err(e) if e.grpc_code() == tonic::Code::Unavailable => Err(e),
            _ => Err(error),
        }
    }

    /// [`modify`](Self::modify), tried again for a few seconds while the store is
    /// unavailable: for the last step of an operation, which must not leave an image in a
    /// transitional status because the store failed once.
    async fn modify_retrying(&self, id: &str, change: &ImageChange<'_>) -> Result<Image, Status> {
        let mut delay = std::time::Duration::from_millis(50);
        for _ in 0..6 {
            match self.modify(id, change).await {
                Err(e) if e.grpc_code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                done => return done,
            }
        }
        self.modify(id, change).await
    }

    /// What the source gives the new image: a source image as it is, a URI fetched and
    /// inspected.
    async fn inspect(&self, source: Sourced) -> Result<Filled, Status> {
        match source {
            Sourced::Image(source) => Ok(Filled::Image(source)),
            Sourced::Disk(disk) => Ok(Filled::Copied {
                size: disk.size,
                storage_size: disk.size,
                product_ids: disk.product_ids,
            }),
            Sourced::Snapshot(snapshot) => Ok(Filled::Copied {
                size: snapshot.disk_size,
                storage_size: snapshot.storage_size,
                product_ids: snapshot.product_ids,
            }),
            Sourced::Uri(url) => Ok(Filled::Fetched(fetch(&url, &self.fetch).await?)),
        }
    }

    /// Changes the stored image `id` in one transaction (see [`ComputeImageStore::modify`]):
    /// the image as it then is, or the refusal; `NOT_FOUND` when there is none.
    async fn modify(&self, id: &str, change: &ImageChange<'_>) -> Result<Image, Status> {
        match self.store.modify(id, change).await.map_err(store_status)? {
            Modified::Changed(image) => Ok(*image),
            Modified::Refused(status) => Err(status),
            Modified::Missing => Err(not_found(id)),
        }
    }

    /// `Update`: the fields the mask names (or, without a mask, the fields set) change, applied
    /// to the image as it is when the operation applies them. An image being created or
    /// deleted is refused with `FAILED_PRECONDITION`.
    pub async fn update(
        &self,
        request: &UpdateImageRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        let paths = update_paths(request)?;
        let now = self.image(&request.image_id, caller, Role::Editor).await?;
        settled(&now, "updated")?;
        let id = now.id.clone();
        let start = StartOperation::new(
            "fd8",
            UPDATE_METHOD,
            "Update image",
            &id,
            &UpdateImageMetadata {
                image_id: id.clone(),
            },
            request,
        )
        .caller(caller);
        let service = self.clone();
        let request = request.clone();
        self.runner
            .start(start, move |_ctx| async move {
                service.apply_update(&request, &paths).await
            })
            .await
    }

    /// The work of an Update, done again as it is after a restart.
    async fn apply_update(
        &self,
        request: &UpdateImageRequest,
        paths: &[String],
    ) -> Result<Any, Status> {
        let image = self
            .modify(&request.image_id, &|image| {
                settled(image, "updated")?;
                apply_mask(image, request, paths)
            })
            .await?;
        Ok(Any::from_msg(&image))
    }

    /// How interrupted Creates, Updates, Deletes and binding changes continue after a restart:
    /// each is done again from its stored request (a Create stores its image if it had not, and fetches
    /// its source again).
    pub fn resumers(&self, resumers: Resumers) -> Resumers {
        let (create, update, delete) = (self.clone(), self.clone(), self.clone());
        // The caller's access was checked when the operation started; the rest of its work is
        // the server's.
        let server = Caller::system;
        resumers
            .add(CREATE_METHOD, CancelMode::Notify, move |record, ctx| {
                let service = create.clone();
                async move {
                    let request: CreateImageRequest = record.request()?;
                    let id = record
                        .metadata::<CreateImageMetadata>()
                        .map(|m| m.image_id)
                        .unwrap_or_default();
                    let stored = service.store.get(&id).await.map_err(store_status)?;
                    match stored
                        .as_ref()
                        .and_then(|i| image::Status::try_from(i.message().status).ok())
                    {
                        // Finished before the operation was: its outcome again.
                        Some(image::Status::Ready) => {
                            let image = stored.map(|i| i.message().clone()).unwrap_or_default();
                            return Ok(Any::from_msg(&image));
                        }
                        Some(image::Status::Error) => {
                            return Err(Status::new(
                                tonic::Code::Aborted,
                                format!("Image {id} could not be created; it is in ERROR"),
                            ));
                        }
                        Some(_) => {}
                        None => {
                            let at = record.operation.created_at.unwrap_or_else(Timestamp::now);
                            service
                                .store
                                .insert(&new_image(&request, &id, at))
                                .await
                                .map_err(store_status)?;
                        }
                    }
                    let source = match &request.source {
                        Some(Source::ImageId(source)) => Sourced::Image(Box::new(
                            service.image(source, &server(), Role::Viewer).await?,
                        )),
                        Some(Source::DiskId(source)) => {
                            Sourced::Disk(Box::new(service.ready_source(source, &server()).await?))
                        }
                        Some(Source::SnapshotId(source)) => Sourced::Snapshot(Box::new(
                            service.ready_source(source, &server()).await?,
                        )),
                        Some(Source::Uri(uri)) => Sourced::Uri(check_uri(uri, &service.fetch)?),
                        _ => return Err(invalid("a stored Create has no source".into())),
                    };
                    service.finish_create(&ctx, &id, source).await
                }
            })
            .add(UPDATE_METHOD, false, move |record, _ctx| {
                let service = update.clone();
                async move {
                    let request: UpdateImageRequest = record.request()?;
                    service
                        .apply_update(&request, &update_paths(&request)?)
                        .await
                }
            })
            .add(SET_BINDINGS_METHOD, false, {
                let service = self.clone();
                move |record, _ctx| {
                    let service = service.clone();
                    async move {
                        let request = BindingsRequest::Set(record.request()?);
                        service.apply_bindings(&request).await
                    }
                }
            })
            .add(UPDATE_BINDINGS_METHOD, false, {
                let service = self.clone();
                move |record, _ctx| {
                    let service = service.clone();
                    async move {
                        let request = BindingsRequest::Update(record.request()?);
                        service.apply_bindings(&request).await
                    }
                }
            })
            .add(DELETE_METHOD, false, move |record, _ctx| {
                let service = delete.clone();
                async move {
                    let request: DeleteImageRequest = record.request()?;
                    // Marked DELETING before the restart, or not yet; gone already is done.
                    match service
                        .mark_deleting(&request.image_id, DeletingBy::Resumed)
                        .await
                    {
                        Err(e) if e.grpc_code() == tonic::Code::NotFound => {
                            Ok(Any::from_msg(&Empty {}))
                        }
                        Err(e) => Err(e),
                        Ok(_) => service.remove(&request.image_id).await,
                    }
                }
            })
    }

    /// `Delete`: the image is DELETING while the operation runs, then gone. The operation's
    /// work marks it (the call returns once it has), so that a restart at any moment resumes
    /// the Delete. An image being created or deleted is refused with `FAILED_PRECONDITION`.
    pub async fn delete(
        &self,
        request: &DeleteImageRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        let now = self.image(&request.image_id, caller, Role::Editor).await?;
        settled(&now, "deleted")?;
        let id = now.id;
        let start = StartOperation::new(
            "fd8",
            DELETE_METHOD,
            "Delete image",
            &id,
            &DeleteImageMetadata {
                image_id: id.clone(),
            },
            request,
        )
        .caller(caller);
        let service = self.clone();
        self.runner
            .start_accepted(start, move |ctx| async move {
                service.mark_deleting(&id, DeletingBy::New).await?;
                ctx.accept();
                service.remove(&id).await
            })
            .await
    }

    /// Marks the image DELETING: a new Delete only from READY or ERROR, a resumed one from
    /// DELETING too (its own mark, from before the restart).
    async fn mark_deleting(&self, id: &str, by: DeletingBy) -> Result<Image, Status> {
        self.modify(id, &|image| {
            if !(by == DeletingBy::Resumed && image.status == image::Status::Deleting as i32) {
                settled(image, "deleted")?;
            }
            image.status = image::Status::Deleting as i32;
            Ok(())
        })
        .await
    }

    /// The end of a Delete: the DELETING image is gone.
    async fn remove(&self, id: &str) -> Result<Any, Status> {
        self.store
            .delete(id, Timestamp::now())
            .await
            .map_err(store_status)?;
        Ok(Any::from_msg(&Empty {}))
    }
}

/// A change of an image's access bindings, as a Set or an Update asks it.
enum BindingsRequest {
    Set(SetAccessBindingsRequest),
    Update(UpdateAccessBindingsRequest),
}

impl BindingsRequest {
    fn resource_id(&self) -> &str {
        match self {
            BindingsRequest::Set(r) => &r.resource_id,
            BindingsRequest::Update(r) => &r.resource_id,
        }
    }
}

/// Who marks an image DELETING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeletingBy {
    /// A Delete as it is called.
    New,
    /// A Delete resumed after a restart, which may have marked the image before it.
    Resumed,
}

/// A Create's source, checked when it is called.
enum Sourced {
    /// A READY image, as it was read.
    Image(Box<Image>),
    /// A READY disk, as it was read.
    Disk(Box<Disk>),
    /// A READY snapshot, as it was read.
    Snapshot(Box<Snapshot>),
    /// A URI the policy allows.
    Uri(reqwest::Url),
}

/// What a Create's source gave.
enum Filled {
    /// A copy of this image.
    Image(Box<Image>),
    /// A copy of a disk or snapshot: the disk's size, the space it takes, its licenses.
    Copied {
        size: i64,
        storage_size: i64,
        product_ids: Vec<String>,
    },
    /// An image fetched and inspected.
    Fetched(Inspected),
}

impl Filled {
    /// Sizes (and, from an image, licenses when the request did not give them) on the new
    /// image; its OS and hardware generation were settled when it was stored.
    fn apply(&self, image: &mut Image) -> Result<(), Status> {
        match self {
            Filled::Image(source) => {
                image.size = source.size;
                image.storage_size = source.storage_size;
                image.min_disk_size = image
                    .min_disk_size
                    .max(source.min_disk_size)
                    .max(needed_disk(source.size));
                if image.product_ids.is_empty() {
                    image.product_ids = source.product_ids.clone();
                }
            }
            Filled::Copied {
                size,
                storage_size,
                product_ids,
            } => {
                image.size = *size;
                image.storage_size = *storage_size;
                image.min_disk_size = image.min_disk_size.max(needed_disk(*size));
                if image.product_ids.is_empty() {
                    image.product_ids = product_ids.clone();
                }
            }
            Filled::Fetched(inspected) => {
                let need = needed_disk(inspected.size);
                check_min_disk(image.min_disk_size, need)?;
                image.size = inspected.size;
                image.storage_size = inspected.storage_size;
                if image.min_disk_size == 0 {
                    image.min_disk_size = need;
                }
            }
        }
        Ok(())
    }
}

/// The image a Create stores at first: CREATING, with what the request gives.
fn new_image(request: &CreateImageRequest, id: &str, at: Timestamp) -> Image {
    Image {
        id: id.to_owned(),
        folder_id: request.folder_id.clone(),
        created_at: Some(at),
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
    }
}

/// Refuses an image that is not CREATING (a Create finishing).
fn creating(image: &Image) -> Result<(), Status> {
    if image.status == image::Status::Creating as i32 {
        Ok(())
    } else {
        Err(Status::new(
            tonic::Code::FailedPrecondition,
            format!("Image {} is no longer being created", image.id),
        ))
    }
}

/// Refuses an image in a transitional status: Update and Delete wait for READY or ERROR.
fn settled(image: &Image, action: &str) -> Result<(), Status> {
    let doing = match image::Status::try_from(image.status) {
        Ok(image::Status::Creating) => "being created",
        Ok(image::Status::Deleting) => "being deleted",
        _ => return Ok(()),
    };
    Err(Status::new(
        tonic::Code::FailedPrecondition,
        format!(
            "Image {} is {doing}; it can be {action} once it is READY or ERROR",
            image.id
        ),
    ))
}

/// The fields an Update changes.
fn update_paths(request: &UpdateImageRequest) -> Result<Vec<String>, Status> {
    yc_api_runtime::update_paths(
        request.update_mask.as_ref(),
        &[
            ("name", !request.name.is_empty()),
            ("description", !request.description.is_empty()),
            ("min_disk_size", request.min_disk_size != 0),
            ("labels", !request.labels.is_empty()),
        ],
        UPDATE_FIELDS,
    )
}

/// The fields `paths` names, from `request`, on `image`.
fn apply_mask(
    image: &mut Image,
    request: &UpdateImageRequest,
    paths: &[String],
) -> Result<(), Status> {
    for path in paths {
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
    Ok(())
}

fn check_min_disk(requested: i64, needed: i64) -> Result<(), Status> {
    if requested != 0 && requested < needed {
        return Err(yc_proto_types::validation_error(
            "min_disk_size",
            &format!("must be at least {needed}, the size the source needs"),
        ));
    }
    Ok(())
}
