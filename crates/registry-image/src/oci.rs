//! OCI image manifests (and Docker schema-2 manifests, the same shape) and OCI image layouts:
//! what `skopeo copy … oci:DIR:TAG` or `buildah push … oci:DIR` write.
//!
//! An image is identified by the digest of its manifest's bytes, exactly as sent: the same
//! image re-serialized is a different manifest.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of a Docker schema-2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The media type of an OCI image index (a multi-platform image).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The media type of a Docker manifest list (a multi-platform image).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor: what a blob is, its digest and its size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Where else the blob can be fetched.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Annotations, such as the tag of a manifest in a layout's index.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An image manifest: its config and its layers, base layer first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST`] or [`DOCKER_MANIFEST`]; OCI allows it to be absent.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layer blobs.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (a signature's or an SBOM's image): the referrers API
    /// lists it under that manifest.
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// What kind of artifact it is, when it is not an image.
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Manifest {
    /// The blobs it names: the config, then the layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// A manifest as pushed: its exact bytes, their digest, and what they say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// The manifest's bytes.
    pub bytes: Vec<u8>,
    /// `sha256:` of the bytes.
    pub digest: String,
    /// The parsed manifest.
    pub manifest: Manifest,
}

impl ImageManifest {
    /// Parses and checks manifest bytes: schema version 2, an image manifest (not an index),
    /// well-formed sha256 digests and sizes that are not negative.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, OciError> {
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| OciError::Invalid(format!("not an image manifest: {e}")))?;
        if manifest.schema_version != 2 {
            return Err(OciError::Invalid(format!(
                "schemaVersion is {}, not 2",
                manifest.schema_version
            )));
        }
        match manifest.media_type.as_deref() {
            None | Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => {}
            Some(OCI_INDEX | DOCKER_LIST) => {
                return Err(OciError::Unsupported(
                    "this is an image index (a multi-platform image), not one image's manifest"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(OciError::Invalid(format!(
                    "unknown manifest media type {other:?}"
                )));
            }
        }
        for descriptor in manifest.blobs().chain(&manifest.subject) {
            check_descriptor(descriptor)?;
        }
        Ok(Self {
            digest: sha256_digest(&bytes),
            bytes,
            manifest,
        })
    }

    /// The sum of the layer sizes: what the API calls the image's compressed size.
    pub fn compressed_size(&self) -> i64 {
        self.manifest.layers.iter().map(|l| l.size).sum()
    }
}

fn check_descriptor(descriptor: &Descriptor) -> Result<(), OciError> {
    if !is_sha256_digest(&descriptor.digest) {
        return Err(OciError::Invalid(format!(
            "digest {:?} is not sha256:<64 lower-case hex>",
            descriptor.digest
        )));
    }
    if descriptor.size < 0 {
        return Err(OciError::Invalid(format!(
            "blob {} has a negative size",
            descriptor.digest
        )));
    }
    Ok(())
}

/// Whether `digest` is `sha256:` and 64 lower-case hex digits: the only digests stored.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    digest_of(Sha256::new_with_prefix(bytes))
}

/// `sha256:<hex>` of what went through `hasher`.
pub(crate) fn digest_of(hasher: Sha256) -> String {
    let hash = hasher.finalize();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An image index (OCI) or manifest list (Docker): a multi-platform image, naming one image
/// manifest per platform.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_INDEX`] or [`DOCKER_LIST`]; OCI allows it to be absent.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The manifests, one per platform.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// What kind of artifact it is.
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An index as pushed: its exact bytes, their digest, and what they say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexManifest {
    /// The index's bytes.
    pub bytes: Vec<u8>,
    /// `sha256:` of the bytes.
    pub digest: String,
    /// The parsed index.
    pub index: Index,
}

/// A manifest pushed to a registry: one image's, or a multi-platform index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushedManifest {
    /// An image manifest.
    Image(ImageManifest),
    /// An image index or manifest list.
    Index(IndexManifest),
}

impl PushedManifest {
    /// Parses and checks manifest bytes of either kind: by its `mediaType`, or without one,
    /// by whether it lists `manifests`.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, OciError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Kind {
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde::de::IgnoredAny>,
        }
        let kind: Kind = serde_json::from_slice(&bytes)
            .map_err(|e| OciError::Invalid(format!("not a manifest: {e}")))?;
        let index = match kind.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) => true,
            None => kind.manifests.is_some(),
            Some(_) => false,
        };
        if !index {
            return ImageManifest::parse(bytes).map(PushedManifest::Image);
        }
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| OciError::Invalid(format!("not an image index: {e}")))?;
        if index.schema_version != 2 {
            return Err(OciError::Invalid(format!(
                "schemaVersion is {}, not 2",
                index.schema_version
            )));
        }
        for descriptor in index.manifests.iter().chain(&index.subject) {
            check_descriptor(descriptor)?;
        }
        Ok(PushedManifest::Index(IndexManifest {
            digest: sha256_digest(&bytes),
            bytes,
            index,
        }))
    }

    /// `sha256:` of the bytes.
    pub fn digest(&self) -> &str {
        match self {
            PushedManifest::Image(m) => &m.digest,
            PushedManifest::Index(m) => &m.digest,
        }
    }

    /// The bytes as pushed.
    pub fn bytes(&self) -> &[u8] {
        match self {
            PushedManifest::Image(m) => &m.bytes,
            PushedManifest::Index(m) => &m.bytes,
        }
    }

    /// Its media type: as it says, or the OCI type of its kind.
    pub fn media_type(&self) -> &str {
        match self {
            PushedManifest::Image(m) => m.manifest.media_type.as_deref().unwrap_or(OCI_MANIFEST),
            PushedManifest::Index(m) => m.index.media_type.as_deref().unwrap_or(OCI_INDEX),
        }
    }

    /// The manifest it refers to, if any.
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            PushedManifest::Image(m) => m.manifest.subject.as_ref(),
            PushedManifest::Index(m) => m.index.subject.as_ref(),
        }
    }

    /// Its artifact type: as it says, else (for an image manifest) its config's media type.
    pub fn artifact_type(&self) -> Option<&str> {
        match self {
            PushedManifest::Image(m) => m
                .manifest
                .artifact_type
                .as_deref()
                .or(Some(m.manifest.config.media_type.as_str()))
                .filter(|t| !t.is_empty()),
            PushedManifest::Index(m) => m.index.artifact_type.as_deref(),
        }
    }

    /// Its annotations.
    pub fn annotations(&self) -> &std::collections::BTreeMap<String, String> {
        match self {
            PushedManifest::Image(m) => &m.manifest.annotations,
            PushedManifest::Index(m) => &m.index.annotations,
        }
    }
}

/// Why a manifest or a layout was refused. Nothing is stored when there is one.
#[derive(Debug)]
pub enum OciError {
    /// The content is malformed.
    Invalid(String),
    /// Well-formed but not something this registry takes.
    Unsupported(String),
    /// A blob's bytes do not have the digest or size its descriptor says.
    Mismatch {
        /// The descriptor's digest.
        digest: String,
        /// What is wrong.
        what: String,
    },
    /// A blob the image needs is not in the layout.
    MissingBlob(String),
    /// The layout has no manifest with the tag asked for, or several and none was named.
    NoSuchTag(String),
    /// Reading the layout failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for OciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OciError::Invalid(why) => write!(f, "invalid image: {why}"),
            OciError::Unsupported(why) => write!(f, "unsupported image: {why}"),
            OciError::Mismatch { digest, what } => write!(f, "blob {digest}: {what}"),
            OciError::MissingBlob(digest) => write!(f, "blob {digest} is missing from the layout"),
            OciError::NoSuchTag(why) => f.write_str(why),
            OciError::Io { path, error } => write!(f, "reading {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for OciError {}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    manifests: Vec<Descriptor>,
}

/// An image read from an OCI image layout, every blob checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutImage {
    /// The manifest.
    pub manifest: ImageManifest,
    /// The tag the layout's index gives it, if any.
    pub tag: Option<String>,
}

/// Reads the image tagged `tag` (or the only image, when `tag` is `None`) from the OCI image
/// layout in `dir`, verifying the digest and size of the manifest, the config and every layer
/// against the blob files.
pub fn read_layout(dir: &Path, tag: Option<&str>) -> Result<LayoutImage, OciError> {
    let layout_file = dir.join("oci-layout");
    let layout: serde_json::Value = serde_json::from_slice(&read(&layout_file)?)
        .map_err(|e| OciError::Invalid(format!("{} is not JSON: {e}", layout_file.display())))?;
    if layout.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
        return Err(OciError::Invalid(format!(
            "{} does not declare imageLayoutVersion 1.0.0",
            layout_file.display()
        )));
    }
    let index_file = dir.join("index.json");
    let index: LayoutIndex = serde_json::from_slice(&read(&index_file)?).map_err(|e| {
        OciError::Invalid(format!(
            "{} is not an image index: {e}",
            index_file.display()
        ))
    })?;

    let tagged = |d: &&Descriptor| d.annotations.get(REF_NAME).map(String::as_str) == tag;
    let descriptor = match tag {
        Some(tag) => index.manifests.iter().find(tagged).ok_or_else(|| {
            OciError::NoSuchTag(format!("the layout has no image tagged {tag:?}"))
        })?,
        None => match index.manifests.as_slice() {
            [only] => only,
            [] => return Err(OciError::NoSuchTag("the layout holds no image".into())),
            _ => {
                return Err(OciError::NoSuchTag(
                    "the layout holds several images; name the tag to import".into(),
                ));
            }
        },
    };
    check_descriptor(descriptor)?;
    let bytes = read_blob(dir, descriptor)?;
    let manifest = ImageManifest::parse(bytes)?;
    verify_blob(dir, &manifest.manifest.config)?;
    for layer in &manifest.manifest.layers {
        verify_blob(dir, layer)?;
    }
    Ok(LayoutImage {
        manifest,
        tag: descriptor.annotations.get(REF_NAME).cloned(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, OciError> {
    std::fs::read(path).map_err(|error| OciError::Io {
        path: path.to_owned(),
        error,
    })
}

pub(crate) fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    dir.join("blobs").join("sha256").join(hex)
}

/// The blob's bytes, checked; for manifests, which are small.
fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Vec<u8>, OciError> {
    let path = blob_path(dir, &descriptor.digest);
    if !path.exists() {
        return Err(OciError::MissingBlob(descriptor.digest.clone()));
    }
    let bytes = read(&path)?;
    check_content(descriptor, bytes.len() as u64, &sha256_digest(&bytes))?;
    Ok(bytes)
}

/// Streams the blob's file through sha256 and checks digest and size; for layers, which may be
/// large.
fn verify_blob(dir: &Path, descriptor: &Descriptor) -> Result<(), OciError> {
    let path = blob_path(dir, &descriptor.digest);
    let io_error = |error| OciError::Io {
        path: path.clone(),
        error,
    };
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OciError::MissingBlob(descriptor.digest.clone()));
        }
        Err(e) => return Err(io_error(e)),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_error)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    check_content(descriptor, size, &digest_of(hasher))
}

fn check_content(descriptor: &Descriptor, size: u64, digest: &str) -> Result<(), OciError> {
    if digest != descriptor.digest {
        return Err(OciError::Mismatch {
            digest: descriptor.digest.clone(),
            what: format!("its content has digest {digest}"),
        });
    }
    if i64::try_from(size).ok() != Some(descriptor.size) {
        return Err(OciError::Mismatch {
            digest: descriptor.digest.clone(),
            what: format!(
                "it is {size} bytes, the descriptor says {}",
                descriptor.size
            ),
        });
    }
    Ok(())
}
