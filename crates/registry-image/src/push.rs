//! Pushing an OCI image layout to a server's distribution API ([`crate::distribution`]), over
//! the same connection as the gRPC clients (a tonic [`Channel`], HTTP/2, TLS when it has it).
//!
//! Blobs the registry has are skipped; the others go up in pieces of [`PUSH_PIECE`] bytes,
//! each a `PATCH`, so a large layer never sits in memory and progress can be shown; the
//! manifest goes last, and the server checks every digest.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use yc_registry_image::push::{Layout, LayoutPusher};
//!
//! let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051")
//!     .connect()
//!     .await?;
//! let pusher = LayoutPusher::new(channel, Some("my-iam-token"))?;
//! let layout = Layout::open("./app-layout".as_ref(), Some("v1"))?;
//! let pushed = pusher
//!     .push_layout(&layout, "crp0000000000000000/app", Some("v1"), &|_bytes| {})
//!     .await?;
//! println!("image {} ({})", pushed.image_id, pushed.digest);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use tonic::codegen::Service as _;
use tonic::transport::Channel;
use yc_proto_types::google::rpc::Status;

use crate::blobs::file_pieces;
use crate::distribution::IMAGE_ID_HEADER;
use crate::oci::{
    Descriptor, ImageManifest, LayoutImage, OCI_MANIFEST, OciError, blob_path, read_layout,
};
use crate::service::oci_status;

/// The bytes one `PATCH` carries.
pub const PUSH_PIECE: usize = 4 << 20;

/// The largest answer body read (errors and manifests).
const ANSWER_LIMIT: usize = 4 << 20;

/// What a push stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The image's id in the ImageService.
    pub image_id: String,
    /// Its manifest digest.
    pub digest: String,
    /// Bytes of blobs sent (those the registry had are not).
    pub uploaded: u64,
}

/// A client of the distribution API.
#[derive(Debug, Clone)]
pub struct LayoutPusher {
    channel: Channel,
    authorization: Option<HeaderValue>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The status of a refused call: the spec's error code and message, or the HTTP status.
fn refused(what: &str, answer: &Answer) -> Status {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let detail = serde_json::from_slice::<Errors>(&answer.body)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or_else(|| format!("HTTP {}", answer.status));
    Status::new(
        yc_proto_types::code_of_http(answer.status.as_u16()),
        format!("{what}: {detail}"),
    )
}

fn io_status(what: String, error: std::io::Error) -> Status {
    Status::new(tonic::Code::NotFound, format!("{what}: {error}"))
}

impl LayoutPusher {
    /// A pusher over `channel`, sending `token` (an IAM token) with every call.
    pub fn new(channel: Channel, token: Option<&str>) -> Result<Self, Status> {
        let authorization = token
            .map(|token| {
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Status::new(
                        tonic::Code::InvalidArgument,
                        "the token is not a valid header value",
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            channel,
            authorization,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
    ) -> Result<Answer, Status> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(tonic::body::Body::new(Body::from(body)))
            .map_err(|e| Status::new(tonic::Code::InvalidArgument, format!("{path}: {e}")))?;
        let mut channel = self.channel.clone();
        let unreachable =
            |e: tonic::transport::Error| Status::new(tonic::Code::Unavailable, e.to_string());
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(unreachable)?;
        let response = channel.call(request).await.map_err(unreachable)?;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(Body::new(body), ANSWER_LIMIT)
            .await
            .map_err(|e| Status::new(tonic::Code::Unavailable, e.to_string()))?;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Whether the registry of `repository` has the blob.
    pub async fn has_blob(&self, repository: &str, digest: &str) -> Result<bool, Status> {
        let answer = self
            .send(
                Method::HEAD,
                &format!("/v2/{repository}/blobs/{digest}"),
                &[],
                Bytes::new(),
            )
            .await?;
        match answer.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(refused(&format!("checking blob {digest}"), &answer)),
        }
    }

    /// Uploads the file `path` as the blob `descriptor` names, calling `progress` with the
    /// bytes of each piece sent.
    pub async fn push_blob(
        &self,
        repository: &str,
        descriptor: &Descriptor,
        path: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, Status> {
        let what = format!("uploading blob {}", descriptor.digest);
        let started = self
            .send(
                Method::POST,
                &format!("/v2/{repository}/blobs/uploads/"),
                &[],
                Bytes::new(),
            )
            .await?;
        if started.status != StatusCode::ACCEPTED {
            return Err(refused(&what, &started));
        }
        let mut location = started
            .header("location")
            .ok_or_else(|| Status::new(tonic::Code::Unavailable, format!("{what}: no Location")))?
            .to_owned();
        let unreadable = |e| io_status(format!("reading {}", path.display()), e);
        let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let mut pieces = std::pin::pin!(file_pieces(file, PUSH_PIECE));
        let mut sent = 0u64;
        while let Some(piece) = pieces.try_next().await.map_err(unreadable)? {
            let len = piece.len() as u64;
            let range = format!("{sent}-{}", sent + len - 1);
            let answer = self
                .send(
                    Method::PATCH,
                    &location,
                    &[
                        (header::CONTENT_RANGE, range),
                        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    ],
                    piece,
                )
                .await?;
            if answer.status != StatusCode::ACCEPTED {
                return Err(refused(&what, &answer));
            }
            if let Some(next) = answer.header("location") {
                location = next.to_owned();
            }
            sent += len;
            progress(len);
        }
        let separator = if location.contains('?') { '&' } else { '?' };
        let finished = self
            .send(
                Method::PUT,
                &format!("{location}{separator}digest={}", descriptor.digest),
                &[],
                Bytes::new(),
            )
            .await?;
        if finished.status != StatusCode::CREATED {
            return Err(refused(&what, &finished));
        }
        Ok(sent)
    }

    /// Puts the manifest, tagged `reference` (a tag, or its digest for none); returns the
    /// image's id.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &ImageManifest,
    ) -> Result<String, Status> {
        let media_type = manifest
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        let answer = self
            .send(
                Method::PUT,
                &format!("/v2/{repository}/manifests/{reference}"),
                &[(header::CONTENT_TYPE, media_type)],
                Bytes::from(manifest.bytes.clone()),
            )
            .await?;
        if answer.status != StatusCode::CREATED {
            return Err(refused("pushing the manifest", &answer));
        }
        answer
            .header(IMAGE_ID_HEADER)
            .map(str::to_owned)
            .ok_or_else(|| {
                Status::new(
                    tonic::Code::Unavailable,
                    "the server did not say which image it stored",
                )
            })
    }

    /// Pushes the layout's image into `repository` (`<registry_id>/<name>`), tagged `tag` (or
    /// as in the layout; untagged when neither names one). `progress` gets the bytes of each
    /// blob the registry already had or that was sent.
    pub async fn push_layout(
        &self,
        layout: &Layout,
        repository: &str,
        tag: Option<&str>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Pushed, Status> {
        let (dir, layout) = (&layout.dir, &layout.image);
        let mut uploaded = 0;
        for descriptor in layout.manifest.manifest.blobs() {
            if self.has_blob(repository, &descriptor.digest).await? {
                progress(u64::try_from(descriptor.size).unwrap_or_default());
                continue;
            }
            uploaded += self
                .push_blob(
                    repository,
                    descriptor,
                    &blob_path(dir, &descriptor.digest),
                    progress,
                )
                .await?;
        }
        let tag = tag.map(str::to_owned).or(layout.tag.clone());
        let reference = tag.as_deref().unwrap_or(&layout.manifest.digest);
        let image_id = self
            .push_manifest(repository, reference, &layout.manifest)
            .await?;
        Ok(Pushed {
            image_id,
            digest: layout.manifest.digest.clone(),
            uploaded,
        })
    }
}

/// An image of an OCI image layout on disk, every blob verified, ready to push.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
    image: LayoutImage,
}

impl Layout {
    /// The image tagged `tag` in the layout in `dir`, or its only image when none has that tag;
    /// the digest and size of every blob are checked against the files.
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<Self, Status> {
        let image = match read_layout(dir, tag) {
            Err(OciError::NoSuchTag(_)) if tag.is_some() => read_layout(dir, None),
            other => other,
        }
        .map_err(|e| oci_status(&e))?;
        Ok(Self {
            dir: dir.to_owned(),
            image,
        })
    }

    /// The sum of the blob sizes: what a push reports progress against.
    pub fn size(&self) -> u64 {
        self.image
            .manifest
            .manifest
            .blobs()
            .map(|d| u64::try_from(d.size).unwrap_or_default())
            .sum()
    }

    /// The manifest's digest.
    pub fn digest(&self) -> &str {
        &self.image.manifest.digest
    }
}
