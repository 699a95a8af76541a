//! The Container Registry image service, transport aside: what List, Get and Delete mean, and
//! how images get in. The gRPC and REST faces ([`crate::grpc`], [`crate::rest`]) only convert.

use std::path::Path;
use std::sync::Arc;

use yc_api_runtime::list::{ListSpec, Page, decode_page, token_too_old};
use yc_api_runtime::stored::Stored;
use yc_api_runtime::{Role, store_unavailable};
use yc_operations::{OperationRunner, Resumers, StartOperation};
use yc_proto_types::encoded::Form;
use yc_proto_types::google::protobuf::{Any, Empty, Timestamp};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    Blob, DeleteImageMetadata, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    ListImagesResponse,
};
use yc_proto_types::yandex::cloud::operation::Operation;

use crate::blobs::{BlobError, SqlBlobStore};
use crate::oci::{Descriptor, ImageManifest, OciError, PushedManifest, read_layout};
use crate::store::{
    ImageQuery, ImageStore, ImageStoreError, PushImage, Referrer, Referring, Registry, Scope,
};

/// The full name of the Delete RPC: the scope of its idempotency keys and its resumer.
pub const DELETE_METHOD: &str = "yandex.cloud.containerregistry.v1.ImageService.Delete";
const LIST_KIND: &str = "yandex.cloud.containerregistry.v1.ImageService.List";
/// The fields List can filter on.
pub const FILTER_FIELDS: &[&str] = &["name"];
/// The fields List can sort by.
pub const ORDER_FIELDS: &[&str] = &["name", "digest", "created_at", "last_modified"];

/// What List accepts.
const LIST: ListSpec<'static> = ListSpec {
    method: LIST_KIND,
    filter_fields: FILTER_FIELDS,
    order_fields: ORDER_FIELDS,
    default_order: &[("name", false)],
};

pub use yc_api_runtime::Caller;

/// Container Registry images over an [`ImageStore`], with mutations run as operations.
#[derive(Clone)]
pub struct RegistryImages {
    store: Arc<dyn ImageStore>,
    runner: OperationRunner,
}

/// The status of a store's error.
pub(crate) fn store_status(error: ImageStoreError) -> Status {
    match error {
        ImageStoreError::NoRegistry(id) => {
            Status::new(tonic::Code::NotFound, format!("Registry {id} not found"))
        }
        ImageStoreError::RegistryNotActive(id) => Status::new(
            tonic::Code::FailedPrecondition,
            format!("Registry {id} is being created or deleted; it takes no pushes"),
        ),
        ImageStoreError::BlobsGone(digests) => Status::new(
            tonic::Code::FailedPrecondition,
            format!(
                "blobs {} were removed from the registry while the manifest was pushed; push them again",
                digests.join(", ")
            ),
        ),
        ImageStoreError::NameTaken(name) => Status::new(
            tonic::Code::AlreadyExists,
            format!(
                "A registry named {} already exists in the folder",
                yc_proto_types::quote(&name)
            ),
        ),
        ImageStoreError::CursorGone(_) => token_too_old(),
        ImageStoreError::Unavailable(why) => store_unavailable("image store", &why),
    }
}

fn not_found(id: &str) -> Status {
    Status::new(tonic::Code::NotFound, format!("Image {id} not found"))
}

/// The id of a blob in a registry: the same digest in the same registry is the same blob.
pub fn blob_id(registry_id: &str, digest: &str) -> String {
    crate::store::hashed_id(&format!("{registry_id}\0{digest}"))
}

impl RegistryImages {
    /// The service over `store`, running operations through `runner`.
    pub fn new(store: Arc<dyn ImageStore>, runner: OperationRunner) -> Self {
        Self { store, runner }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ImageStore> {
        &self.store
    }

    /// The runner.
    pub fn runner(&self) -> &OperationRunner {
        &self.runner
    }

    /// How interrupted Deletes continue after a restart: deleting is idempotent, so again.
    pub fn resumers(&self, resumers: Resumers) -> Resumers {
        let store = self.store.clone();
        resumers.add(DELETE_METHOD, false, move |record, _ctx| {
            let store = store.clone();
            async move {
                let request: DeleteImageRequest = record.request()?;
                store
                    .delete(&request.image_id, Timestamp::now())
                    .await
                    .map_err(store_status)?;
                Ok(Any::from_msg(&Empty {}))
            }
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
        let scope = if !request.repository_name.is_empty() {
            Scope::Repository(request.repository_name.clone())
        } else if !request.registry_id.is_empty() {
            Scope::Registry(request.registry_id.clone())
        } else if !request.folder_id.is_empty() {
            Scope::Folder(request.folder_id.clone())
        } else {
            return Err(yc_proto_types::validation_error(
                "repository_name",
                "one of repository_name, registry_id or folder_id is required",
            ));
        };
        match &scope {
            Scope::Folder(folder) => caller.require(folder, Role::Viewer)?,
            Scope::Registry(registry) => {
                self.require_in_registry(registry, caller, Role::Viewer)
                    .await?
            }
            Scope::Repository(repository) => {
                self.require_in_registry(registry_of(repository), caller, Role::Viewer)
                    .await?
            }
        }
        let page = Page::read(
            self.runner.token_keys(),
            &LIST,
            &[
                &request.repository_name,
                &request.registry_id,
                &request.folder_id,
            ],
            &request.filter,
            &request.order_by,
            request.page_size,
            &request.page_token,
        )?;
        let query = ImageQuery {
            scope,
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
        let image = self
            .stored_image(&request.image_id, caller, Role::Viewer)
            .await?;
        Ok(image.bytes(form).to_vec())
    }

    /// The image `id`, if the caller holds `role` in the folder of its registry.
    async fn image(&self, id: &str, caller: &Caller, role: Role) -> Result<Image, Status> {
        Ok(self.stored_image(id, caller, role).await?.into_message())
    }

    /// [`image`](Self::image), with its stored forms.
    async fn stored_image(
        &self,
        id: &str,
        caller: &Caller,
        role: Role,
    ) -> Result<Stored<Image>, Status> {
        let image = self
            .store
            .get(id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(id))?;
        self.require_in_registry(registry_of(&image.message().name), caller, role)
            .await?;
        Ok(image)
    }

    /// The registry `id`, if the caller holds `role` in its folder: for pushes and pulls
    /// through the distribution API. `NOT_FOUND` when there is no such registry (for anyone
    /// signed in, as for every other id), `PERMISSION_DENIED` when the caller may not.
    pub async fn registry_for(
        &self,
        id: &str,
        caller: &Caller,
        role: Role,
    ) -> Result<Registry, Status> {
        crate::registries::registry_for(&*self.store, id, caller, role).await
    }

    /// The image of `repository` a tag or manifest digest names, for a caller that may read
    /// the repository's registry (checked by [`RegistryImages::registry_for`]).
    pub async fn resolve(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Image>, Status> {
        self.store
            .resolve(repository, reference)
            .await
            .map_err(store_status)
    }

    /// Up to `limit` tags of `repository` after `after`, for a caller that may read the
    /// repository's registry (checked by [`RegistryImages::registry_for`]).
    pub async fn tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, Status> {
        self.store
            .tags(repository, after, limit)
            .await
            .map_err(store_status)
    }

    /// Nothing if the registry `id` exists and the caller holds `role` in its folder;
    /// `NOT_FOUND` when there is no such registry, `PERMISSION_DENIED` when the caller may not
    /// (see [`RegistryImages::registry_for`]).
    async fn require_in_registry(
        &self,
        id: &str,
        caller: &Caller,
        role: Role,
    ) -> Result<(), Status> {
        self.registry_for(id, caller, role).await.map(drop)
    }

    /// Up to `limit` repository names after `after`, of the registries the caller may read:
    /// the distribution API's catalog.
    pub async fn catalog(
        &self,
        caller: &Caller,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, Status> {
        let folders = caller.access.folders(Role::Viewer);
        self.store
            .catalog(folders.as_deref(), after, limit)
            .await
            .map_err(store_status)
    }

    /// Deletes what `reference` names in `repository`, for a caller that may change its
    /// registry (checked by [`RegistryImages::registry_for`]): a manifest digest deletes the
    /// image and its tags, as `Delete` does; a tag is taken off its image. Returns whether
    /// there was such a manifest or tag.
    pub async fn delete_reference(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<bool, Status> {
        if reference.starts_with("sha256:") {
            let Some(image) = self.resolve(repository, reference).await? else {
                return Ok(false);
            };
            self.store
                .delete(&image.id, Timestamp::now())
                .await
                .map_err(store_status)
        } else {
            self.store
                .untag(repository, reference, Timestamp::now())
                .await
                .map_err(store_status)
        }
    }

    /// Whether `repository` holds an image, for a caller that may read its registry.
    pub async fn repository_exists(&self, repository: &str) -> Result<bool, Status> {
        // A repository is recorded exactly while it holds an image.
        Ok(self
            .store
            .repository_by_name(repository)
            .await
            .map_err(store_status)?
            .is_some())
    }

    /// `Delete`: an operation whose metadata is `DeleteImageMetadata` and whose response is
    /// `Empty`. When it is done the image and its tags are gone; other images' blobs are not
    /// touched.
    pub async fn delete(
        &self,
        request: &DeleteImageRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        let id = request.image_id.clone();
        self.image(&id, caller, Role::Editor).await?;
        let start = StartOperation::new(
            "crp",
            DELETE_METHOD,
            "Delete image",
            &id,
            &DeleteImageMetadata {
                image_id: id.clone(),
            },
            request,
        )
        .caller(caller);
        let store = self.store.clone();
        self.runner
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
            .await
    }

    /// Creates a registry, ACTIVE, or leaves an existing one as it is: for seeding (see
    /// [`ImageStore::ensure_registry`]). Returns whether it was new.
    pub async fn ensure_registry(&self, registry: &Registry) -> Result<bool, Status> {
        self.store
            .ensure_registry(registry)
            .await
            .map_err(store_status)
    }

    /// Stores a pushed manifest in `repository` (`<registry_id>/<name>`), optionally tagged.
    /// Pushing the same manifest again is idempotent; a tag moves to this image.
    pub async fn push(
        &self,
        repository: &str,
        manifest: &ImageManifest,
        tag: Option<&str>,
    ) -> Result<Image, Status> {
        self.push_manifest(repository, &PushedManifest::Image(manifest.clone()), tag)
            .await
    }

    /// [`push`](Self::push) of either kind of manifest. An index (a multi-platform image) is
    /// one image whose digest is the index's, whose layers are its platforms' (each once) and
    /// which has no config; every platform's manifest must have been pushed to the repository
    /// first (`FAILED_PRECONDITION` otherwise), as registry clients do.
    pub async fn push_manifest(
        &self,
        repository: &str,
        manifest: &PushedManifest,
        tag: Option<&str>,
    ) -> Result<Image, Status> {
        self.store_manifest(repository, manifest, tag, false).await
    }

    /// [`push_manifest`](Self::push_manifest) of a manifest whose bytes and blobs were stored
    /// in the registry's blob store (the registry API, a layout import): they are checked to
    /// be there still when the image is stored, so that an image never names a blob garbage
    /// collection took.
    pub async fn push_linked(
        &self,
        repository: &str,
        manifest: &PushedManifest,
        tag: Option<&str>,
    ) -> Result<Image, Status> {
        self.store_manifest(repository, manifest, tag, true).await
    }

    async fn store_manifest(
        &self,
        repository: &str,
        manifest: &PushedManifest,
        tag: Option<&str>,
        linked: bool,
    ) -> Result<Image, Status> {
        let registry_id = check_repository(repository)?;
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        let blob = |d: &Descriptor| Blob {
            id: blob_id(registry_id, &d.digest),
            digest: d.digest.clone(),
            size: d.size,
            urls: d.urls.clone(),
        };
        let referrer = manifest.subject().map(|subject| Referrer {
            subject: subject.digest.clone(),
            media_type: manifest.media_type().to_owned(),
            artifact_type: manifest.artifact_type().unwrap_or_default().to_owned(),
            size: i64::try_from(manifest.bytes().len()).unwrap_or(i64::MAX),
            annotations: serde_json::to_string(manifest.annotations()).unwrap_or_default(),
        });
        let push = match manifest {
            PushedManifest::Image(image) => PushImage {
                registry_id: registry_id.to_owned(),
                repository: repository.to_owned(),
                digest: image.digest.clone(),
                config: blob(&image.manifest.config),
                layers: image.manifest.layers.iter().map(blob).collect(),
                compressed_size: image.compressed_size(),
                tag: tag.map(str::to_owned),
                blobs: std::iter::once(image.digest.clone())
                    .chain(image.manifest.blobs().map(|d| d.digest.clone()))
                    .collect(),
                referrer,
                // Blobs with `urls` may live elsewhere.
                linked: if linked {
                    std::iter::once(image.digest.clone())
                        .chain(
                            image
                                .manifest
                                .blobs()
                                .filter(|d| d.urls.is_empty())
                                .map(|d| d.digest.clone()),
                        )
                        .collect()
                } else {
                    Vec::new()
                },
            },
            PushedManifest::Index(index) => {
                let mut layers: Vec<Blob> = Vec::new();
                let mut blobs = vec![index.digest.clone()];
                for platform in &index.index.manifests {
                    let Some(image) = self.resolve(repository, &platform.digest).await? else {
                        return Err(Status::new(
                            tonic::Code::FailedPrecondition,
                            format!(
                                "manifest {} of the index has not been pushed to {repository}; \
                                 push every platform's manifest first",
                                platform.digest
                            ),
                        ));
                    };
                    blobs.push(image.digest.clone());
                    blobs.extend(image.config.iter().map(|c| c.digest.clone()));
                    for layer in image.layers {
                        blobs.push(layer.digest.clone());
                        if !layers.iter().any(|l| l.digest == layer.digest) {
                            layers.push(layer);
                        }
                    }
                }
                blobs.sort();
                blobs.dedup();
                PushImage {
                    registry_id: registry_id.to_owned(),
                    repository: repository.to_owned(),
                    digest: index.digest.clone(),
                    config: Blob::default(),
                    compressed_size: layers.iter().map(|l| l.size).sum(),
                    layers,
                    tag: tag.map(str::to_owned),
                    blobs,
                    referrer,
                    linked: if linked {
                        vec![index.digest.clone()]
                    } else {
                        Vec::new()
                    },
                }
            }
        };
        Ok(self
            .store
            .push(push, Timestamp::now())
            .await
            .map_err(store_status)?
            .image)
    }

    /// The manifests of `repository` that refer to `subject`, for a caller that may read the
    /// repository's registry.
    pub async fn referrers(
        &self,
        repository: &str,
        subject: &str,
    ) -> Result<Vec<Referring>, Status> {
        self.store
            .referrers(repository, subject)
            .await
            .map_err(store_status)
    }

    /// Imports the image tagged `tag` (or the only one) of the OCI image layout in `dir` into
    /// `repository`, tagging it `tag`. Every blob is verified first; on any mismatch nothing is
    /// stored. With `blobs`, the manifest and blobs are stored there before the image, so that
    /// it pulls through the registry API like a pushed image.
    pub async fn import_layout(
        &self,
        dir: &Path,
        repository: &str,
        tag: Option<&str>,
        blobs: Option<&SqlBlobStore>,
    ) -> Result<Image, Status> {
        let layout = read_layout(dir, tag).map_err(|e| oci_status(&e))?;
        if let Some(blobs) = blobs {
            blobs
                .put_layout(registry_of(repository), dir, &layout)
                .await
                .map_err(|e| blob_status(&e))?;
        }
        let tag = tag.map(str::to_owned).or(layout.tag);
        let manifest = PushedManifest::Image(layout.manifest);
        if blobs.is_some() {
            self.push_linked(repository, &manifest, tag.as_deref())
                .await
        } else {
            self.push_manifest(repository, &manifest, tag.as_deref())
                .await
        }
    }
}

/// The status of a blob that could not be stored.
fn blob_status(error: &BlobError) -> Status {
    match error {
        BlobError::Unavailable(why) => store_unavailable("blob store", why),
        other => Status::new(tonic::Code::InvalidArgument, other.to_string()),
    }
}

/// The status of a refused image.
pub fn oci_status(error: &OciError) -> Status {
    let code = match error {
        OciError::Io { .. } | OciError::NoSuchTag(_) => tonic::Code::NotFound,
        OciError::Unsupported(_) => tonic::Code::Unimplemented,
        _ => tonic::Code::InvalidArgument,
    };
    Status::new(code, error.to_string())
}

/// A repository name, `<registry_id>/<name>` with the name the API's rule allows (the
/// pattern of `ListImagesRequest.repository_name`); its registry id.
pub fn check_repository(repository: &str) -> Result<&str, Status> {
    let (registry_id, name) = repository.split_once('/').unwrap_or((repository, ""));
    let checked = ListImagesRequest {
        repository_name: repository.to_owned(),
        ..Default::default()
    };
    if registry_id.is_empty() || name.is_empty() || validate(&checked).is_err() {
        return Err(Status::new(
            tonic::Code::InvalidArgument,
            format!(
                "repository {} is not <registry_id>/<name> with a valid name",
                yc_proto_types::quote(repository)
            ),
        ));
    }
    Ok(registry_id)
}

/// A tag as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), Status> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let valid = first_ok
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        return Ok(());
    }
    Err(Status::new(
        tonic::Code::InvalidArgument,
        format!(
            "tag {} is not [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}",
            yc_proto_types::quote(tag)
        ),
    ))
}

/// The registry id of a repository or image name, `<registry_id>/<repository>`.
pub(crate) fn registry_of(name: &str) -> &str {
    name.split('/').next().unwrap_or_default()
}
