//! Where registry images live: the [`ImageStore`] trait and what goes through it.
//!
//! A List is one [`ImageQuery`]: a scope, conditions on `name`, a sort order and a keyset
//! cursor, in a shape a SQL backend answers with one indexed query (see [`crate::sqlite`]).

use async_trait::async_trait;
use yc_api_runtime::list::{FilterExpr, OrderItem, PageRows};
use yc_api_runtime::stored::Stored;
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::containerregistry::v1::{Blob, Image};

pub use yc_proto_types::yandex::cloud::containerregistry::v1::Registry;
use yc_proto_types::yandex::cloud::containerregistry::v1::registry;

pub use yc_proto_types::yandex::cloud::containerregistry::v1::Repository;

/// An id of the Yandex form (`crp` and 17 more characters) that `key` always gets.
pub(crate) fn hashed_id(key: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let hash = Sha256::digest(key.as_bytes());
    let mut id = String::from("crp");
    id.extend(
        hash.iter()
            .take(17)
            .map(|b| ALPHABET[usize::from(b & 0x1f)] as char),
    );
    id
}

/// The id of the repository `name` (`<registry_id>/<name>`): the same whenever the name is
/// used, so a repository emptied and pushed to again keeps it.
pub fn repository_id(name: &str) -> String {
    hashed_id(&format!("repository\0{name}"))
}

/// Which repositories a List covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryScope {
    /// The repositories of a registry.
    Registry(String),
    /// The repositories of every registry of a folder.
    Folder(String),
}

/// A List of repositories: a scope, conditions on `name`, an order (by `name` or `id`, the
/// id breaking ties) and where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryQuery {
    /// The repositories in question.
    pub scope: RepositoryScope,
    /// Conditions on `name`.
    pub filter: FilterExpr,
    /// Sort keys among `name` and `id`; never empty.
    pub order: Vec<OrderItem>,
    /// Continue after this repository (from a page token).
    pub after: Option<String>,
    /// The page size.
    pub limit: usize,
}

/// A List of registries: a folder's, maybe with conditions on `name`, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryQuery {
    /// The folder.
    pub folder_id: String,
    /// Conditions on `name`.
    pub filter: FilterExpr,
    /// Continue after this registry (from a page token).
    pub after: Option<String>,
    /// The page size.
    pub limit: usize,
}

/// What a change of a registry may look at besides the registry, read in the same
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryFacts {
    /// Whether the registry holds an image.
    pub has_images: bool,
}

/// A change of a stored registry, applied in one transaction: it changes the registry, or
/// refuses with the status the caller gets.
pub type RegistryChange<'a> =
    dyn Fn(&mut Registry, RegistryFacts) -> Result<(), Status> + Send + Sync + 'a;

/// What a [`RegistryChange`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryModified {
    /// Stored: the registry as it now is.
    Changed(Box<Registry>),
    /// The change refused the registry as it was; nothing changed.
    Refused(Status),
    /// There is no such registry.
    Missing,
}

/// Whether pushes go into a registry of this status.
pub fn accepts_pushes(registry: &Registry) -> bool {
    registry.status == registry::Status::Active as i32
}

/// Which images a List covers. The request's `repository_name` wins over `registry_id`, which
/// wins over `folder_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One repository, `<registry_id>/<name>`.
    Repository(String),
    /// Every repository of a registry.
    Registry(String),
    /// Every registry of a folder.
    Folder(String),
}

/// A List: scope, filter on `name`, order (the id breaks ties) and where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageQuery {
    /// The images in question.
    pub scope: Scope,
    /// Conditions on `name`.
    pub filter: FilterExpr,
    /// Sort keys among `name`, `digest`, `created_at`, `last_modified`; never empty.
    pub order: Vec<OrderItem>,
    /// Continue after this image (from a page token).
    pub after: Option<String>,
    /// The page size.
    pub limit: usize,
}

/// An image to store: a manifest pushed into a repository, maybe with a tag.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PushImage {
    /// The registry.
    pub registry_id: String,
    /// The repository, `<registry_id>/<name>`.
    pub repository: String,
    /// `sha256:` of the manifest bytes.
    pub digest: String,
    /// The config blob; an index has none (an empty digest).
    pub config: Blob,
    /// The layer blobs (of every platform, for an index).
    pub layers: Vec<Blob>,
    /// The sum of the layer sizes.
    pub compressed_size: i64,
    /// A tag to point at the image; it moves off any other image of the repository.
    pub tag: Option<String>,
    /// Every blob of the registry the image needs (its manifest, config and layers; for an
    /// index also its platforms' manifests and blobs): what garbage collection keeps.
    pub blobs: Vec<String>,
    /// The manifest it refers to, for the referrers API.
    pub referrer: Option<Referrer>,
    /// Blobs that must be linked to the registry in the blob store when the image is stored
    /// (a push through the registry API, whose blobs garbage collection might have taken
    /// since they were checked): checked in the push's transaction, which garbage
    /// collection of the registry waits for.
    pub linked: Vec<String>,
}

/// What the referrers API says of a manifest that refers to another (its `subject`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Referrer {
    /// The digest of the manifest referred to.
    pub subject: String,
    /// The referring manifest's media type.
    pub media_type: String,
    /// Its artifact type.
    pub artifact_type: String,
    /// Its size in bytes.
    pub size: i64,
    /// Its annotations, as a JSON object.
    pub annotations: String,
}

/// A manifest that refers to another, as the referrers API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referring {
    /// Its digest.
    pub digest: String,
    /// What it says of itself.
    pub referrer: Referrer,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    /// The image, with its tags.
    pub image: Image,
    /// Whether the image was new; pushing the same manifest again is not.
    pub created: bool,
}

/// A store failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStoreError {
    /// The registry does not exist.
    NoRegistry(String),
    /// The registry exists but takes no pushes now (it is being created or deleted).
    RegistryNotActive(String),
    /// Another registry of the folder has this name.
    NameTaken(String),
    /// Blobs a pushed manifest names are no longer in the registry (garbage collection took
    /// them since they were checked).
    BlobsGone(Vec<String>),
    /// A page token's image is no longer known (its listing is too old).
    CursorGone(String),
    /// The store could not do it now; the text is for the log.
    Unavailable(String),
}

impl std::fmt::Display for ImageStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageStoreError::NoRegistry(id) => write!(f, "registry {id} not found"),
            ImageStoreError::RegistryNotActive(id) => write!(f, "registry {id} is not ACTIVE"),
            ImageStoreError::NameTaken(name) => {
                write!(f, "a registry named {name:?} exists in the folder")
            }
            ImageStoreError::BlobsGone(digests) => {
                write!(
                    f,
                    "blobs {} are no longer in the registry",
                    digests.join(", ")
                )
            }
            ImageStoreError::CursorGone(id) => {
                write!(f, "the page token's image {id} is no longer known")
            }
            ImageStoreError::Unavailable(why) => write!(f, "image store unavailable: {why}"),
        }
    }
}

impl std::error::Error for ImageStoreError {}

/// Persistence of registries and their images. Each method is atomic.
#[async_trait]
pub trait ImageStore: Send + Sync + 'static {
    /// Creates the registry as given but ACTIVE (created now if it gives no time), or leaves
    /// a registry of that id as it is: for seeding. Returns whether it was new.
    async fn ensure_registry(&self, registry: &Registry) -> Result<bool, ImageStoreError>;

    /// Stores a new registry; [`ImageStoreError::NameTaken`] when another registry of the
    /// folder has its name.
    async fn create_registry(&self, registry: &Registry) -> Result<(), ImageStoreError>;

    /// The registry with this id; deleted registries are gone.
    async fn registry(&self, id: &str) -> Result<Option<Registry>, ImageStoreError>;

    /// Changes the registry `id` in one transaction, serialized with pushes into it.
    async fn modify_registry(
        &self,
        id: &str,
        change: &RegistryChange<'_>,
    ) -> Result<RegistryModified, ImageStoreError>;

    /// Deletes the registry; returns whether it existed. Its id keeps its place in List
    /// for a while, so that a page token that stops at it still continues.
    async fn delete_registry(&self, id: &str, at: Timestamp) -> Result<bool, ImageStoreError>;

    /// The repository with this id; a repository exists while it holds an image.
    async fn repository(&self, id: &str) -> Result<Option<Repository>, ImageStoreError>;

    /// The repository with this name, `<registry_id>/<name>`.
    async fn repository_by_name(&self, name: &str) -> Result<Option<Repository>, ImageStoreError>;

    /// Up to `limit` repository names in lexical order after `after`, of every registry, or
    /// only of registries in `folders`: the distribution API's catalog.
    async fn catalog(
        &self,
        folders: Option<&[&str]>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, ImageStoreError>;

    /// Removes `tag` from the image of `repository` it points at; returns whether it did.
    async fn untag(
        &self,
        repository: &str,
        tag: &str,
        at: Timestamp,
    ) -> Result<bool, ImageStoreError>;

    /// The manifests of `repository` that refer to `subject`, by digest.
    async fn referrers(
        &self,
        repository: &str,
        subject: &str,
    ) -> Result<Vec<Referring>, ImageStoreError>;

    /// One page of a List of repositories, served by an index.
    async fn list_repositories(
        &self,
        query: &RepositoryQuery,
    ) -> Result<Vec<Repository>, ImageStoreError>;

    /// One page of a List of registries, served by an index.
    async fn list_registries(
        &self,
        query: &RegistryQuery,
    ) -> Result<Vec<Registry>, ImageStoreError>;

    /// Stores a pushed image (or finds the same manifest already in the repository) and
    /// points the tag at it, moving the tag off the image that had it.
    async fn push(&self, image: PushImage, at: Timestamp) -> Result<Pushed, ImageStoreError>;

    /// The image with this id, with its tags and its stored forms (which Get answers with);
    /// deleted images are gone.
    async fn get(&self, id: &str) -> Result<Option<Stored<Image>>, ImageStoreError>;

    /// The image of `repository` that `reference` names: a manifest digest (`sha256:…`) or a
    /// tag; deleted images are gone.
    async fn resolve(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Image>, ImageStoreError>;

    /// Up to `limit` tags of `repository` in lexical order, after `after` when given.
    async fn tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, ImageStoreError>;

    /// Deletes the image and its tags. Returns whether it existed. Its sort keys are kept
    /// for a while, so that a page token that stops at it still continues.
    async fn delete(&self, id: &str, at: Timestamp) -> Result<bool, ImageStoreError>;

    /// One page of a List, served by an index: each image (up to `query.limit`) put into
    /// `rows` as it is read, in the rows' form.
    async fn list(&self, query: &ImageQuery, rows: &mut PageRows) -> Result<(), ImageStoreError>;
}
