//! The OCI distribution API under `/v2/`: what `docker push`, `skopeo copy` and
//! `yc-images registry import` push images through, and what pulls read.
//!
//! A repository is `<registry_id>/<name>` (`/v2/crp…/app/manifests/latest`), as in
//! `cr.yandex/<registry_id>/<name>`. Pushing needs the `editor` role in the registry's folder,
//! pulling `viewer`. Routes:
//!
//! - `GET /v2/`: the API version check.
//! - `POST /v2/<repo>/blobs/uploads/` starts an upload (`?digest=` with the body: all at once;
//!   `?mount=<digest>&from=<repo>`: link a blob the caller may read in another registry);
//!   `PATCH …/uploads/<id>` appends (`Content-Range: <start>-<end>` optional; when given, it
//!   must start where the upload ends and its length be the body's); `PUT …/uploads/<id>?digest=`
//!   finishes, checking the digest of every byte received; `GET` tells how much arrived;
//!   `DELETE` cancels. One request writes to an upload at a time: another is refused with 416
//!   `BLOB_UPLOAD_INVALID` and changes nothing, so bytes answered `202` are never lost.
//! - `HEAD`/`GET /v2/<repo>/blobs/<digest>`: a blob pushed to the registry.
//! - `PUT /v2/<repo>/manifests/<tag or digest>`: stores the image; every blob it names must
//!   have been pushed to the registry, with the size it gives. The answer's `yc-image-id`
//!   header is the image's id in the ImageService.
//! - `HEAD`/`GET /v2/<repo>/manifests/<tag or digest>`: a pushed manifest.
//! - `DELETE /v2/<repo>/manifests/<digest>` deletes the image (and its tags), as the
//!   ImageService's Delete does; `DELETE …/manifests/<tag>` takes the tag off its image.
//! - `GET /v2/<repo>/tags/list` (`?n=` and `?last=` page it; a `Link` header names the next
//!   page): the repository's tags.
//! - `GET /v2/_catalog` (paged the same way): the repositories of the registries the caller
//!   may read.
//! - `GET /v2/<repo>/referrers/<digest>`: the manifests whose `subject` is that manifest
//!   (signatures, SBOMs), as an image index; a push of such a manifest answers `OCI-Subject`.
//!
//! Manifests are image manifests (OCI, Docker schema 2) or indexes (OCI image index, Docker
//! manifest list: multi-platform images, whose platforms are pushed first).
//!
//! Errors are the spec's `{"errors": [{"code", "message"}]}` with its codes.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use yc_api_runtime::Role;
use yc_proto_types::google::rpc::Status;

use crate::blobs::{BlobError, BlobInfo, SqlBlobStore, Upload};
use crate::oci::{OCI_MANIFEST, PushedManifest};
use crate::service::{Caller, RegistryImages, oci_status};

mod errors;
mod manifests;
mod uploads;

pub use errors::{OciApiError, unauthorized};

/// The largest manifest taken.
const MANIFEST_LIMIT: usize = 4 << 20;

/// The header that names the pushed image's id in the ImageService.
pub const IMAGE_ID_HEADER: &str = "yc-image-id";

/// The routes, over the image service and the blob store.
pub fn router(images: RegistryImages, blobs: SqlBlobStore) -> Router {
    Router::new()
        .route("/v2/", get(version))
        .route("/v2", get(version))
        .route("/v2/_catalog", get(catalog))
        .route("/v2/{*path}", any(dispatch))
        .with_state(Arc::new(Distribution { images, blobs }))
}

struct Distribution {
    images: RegistryImages,
    blobs: SqlBlobStore,
}

/// Whether a request path is the distribution API's.
pub fn is_registry_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// What a path under `/v2/` names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Manifest { repo: &'a str, reference: &'a str },
    Blob { repo: &'a str, digest: &'a str },
    Uploads { repo: &'a str },
    Upload { repo: &'a str, id: &'a str },
    Tags { repo: &'a str },
    Referrers { repo: &'a str, digest: &'a str },
}

impl<'a> Target<'a> {
    /// Parses the path after `/v2/`. The repository name may hold slashes, so the path is
    /// read from its end.
    fn parse(path: &'a str) -> Option<Self> {
        let (head, last) = path.rsplit_once('/')?;
        if last.is_empty() {
            let repo = head.strip_suffix("/blobs/uploads")?;
            return Some(Target::Uploads { repo });
        }
        let (repo, kind) = head.rsplit_once('/')?;
        match kind {
            "manifests" => Some(Target::Manifest {
                repo,
                reference: last,
            }),
            "blobs" if last == "uploads" => Some(Target::Uploads { repo }),
            "blobs" => Some(Target::Blob { repo, digest: last }),
            "tags" if last == "list" => Some(Target::Tags { repo }),
            "referrers" => Some(Target::Referrers { repo, digest: last }),
            "uploads" => Some(Target::Upload {
                repo: repo.strip_suffix("/blobs")?,
                id: last,
            }),
            _ => None,
        }
    }
}

/// `GET /v2/_catalog`: the repositories of the registries the caller may read, by name,
/// `n` at a time (at most 1000) after `last`, with a `Link` to the next page.
async fn catalog(State(api): State<Arc<Distribution>>, caller: Caller, uri: Uri) -> Response {
    const MOST: usize = 1000;
    let params = match Params::of(&uri) {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let limit = params.n.unwrap_or(MOST).clamp(1, MOST);
    let after = params.last.unwrap_or_default();
    let mut names = match api.images.catalog(&caller, &after, limit + 1).await {
        Ok(names) => names,
        Err(s) => {
            return OciApiError::from_status(s, "NAME_UNKNOWN", "UNSUPPORTED").into_response();
        }
    };
    let more = names.len() > limit;
    names.truncate(limit);
    let mut response = axum::Json(serde_json::json!({"repositories": names})).into_response();
    if more && let Some(last) = names.last() {
        let next = format!("</v2/_catalog?n={limit}&last={last}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&next) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

async fn version() -> Response {
    let mut response = axum::Json(serde_json::json!({})).into_response();
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

const API_VERSION: &str = "docker-distribution-api-version";
const CONTENT_DIGEST: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";
const OCI_SUBJECT: &str = "oci-subject";

struct Call {
    method: Method,
    params: Params,
    headers: HeaderMap,
    body: Body,
    caller: Caller,
}

async fn dispatch(
    State(api): State<Arc<Distribution>>,
    caller: Caller,
    method: Method,
    Path(path): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = match Params::of(&uri) {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let call = Call {
        method,
        params,
        headers,
        body,
        caller,
    };
    let answer = match Target::parse(&path) {
        None => Err(OciApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("/v2/{path} is not a manifest, blob or upload of a repository"),
        )),
        Some(target) => api.serve(target, call).await,
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

fn method_not_allowed(method: &Method) -> OciApiError {
    OciApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        format!("{method} is not supported here"),
    )
}

/// The query parameters of the distribution API.
#[derive(Debug, Default, serde::Deserialize)]
struct Params {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
    /// Tags per page.
    n: Option<usize>,
    /// The tag a page continues after.
    last: Option<String>,
    /// The referrers of one artifact type.
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

impl Params {
    fn of(uri: &axum::http::Uri) -> Result<Self, OciApiError> {
        axum::extract::Query::<Params>::try_from_uri(uri)
            .map(|q| q.0)
            .map_err(|e| OciApiError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", e.body_text()))
    }
}

/// A digest this registry stores blobs under.
fn checked_digest(digest: &str) -> Result<&str, OciApiError> {
    if crate::oci::is_sha256_digest(digest) {
        Ok(digest)
    } else {
        Err(OciApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!(
                "digest {} is not sha256:<64 lower-case hex>",
                yc_proto_types::quote(digest)
            ),
        ))
    }
}

/// The registry id of a repository `<registry_id>/<name>`.
fn registry_id(repo: &str) -> Result<&str, OciApiError> {
    match repo.split_once('/') {
        Some((registry, name)) if !registry.is_empty() && !name.is_empty() => Ok(registry),
        _ => Err(OciApiError::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!(
                "repository {} is not <registry_id>/<name>",
                yc_proto_types::quote(repo)
            ),
        )),
    }
}

fn with_headers(status: StatusCode, headers: &[(&'static str, String)], body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}

fn upload_answer(repo: &str, upload: &Upload) -> Response {
    let end = (upload.size - 1).max(0);
    with_headers(
        StatusCode::ACCEPTED,
        &[
            (
                "location",
                format!("/v2/{repo}/blobs/uploads/{}", upload.id),
            ),
            ("range", format!("0-{end}")),
            (UPLOAD_UUID, upload.id.clone()),
            ("content-length", "0".to_owned()),
        ],
        Body::empty(),
    )
}

fn blob_created(repo: &str, blob: &BlobInfo) -> Response {
    with_headers(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{repo}/blobs/{}", blob.digest)),
            (CONTENT_DIGEST, blob.digest.clone()),
            ("content-length", "0".to_owned()),
        ],
        Body::empty(),
    )
}

/// Where a `Content-Range: <start>-<end>` header says a PATCH's bytes go, and how many there
/// are: `(start, end - start + 1)`.
fn content_range(headers: &HeaderMap) -> Result<Option<(i64, i64)>, OciApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let range = value.to_str().ok().and_then(|v| {
        let v = v
            .trim()
            .trim_start_matches("bytes")
            .trim_start_matches([' ', '=']);
        let (start, end) = v.split_once('-')?;
        let start = start.trim().parse::<i64>().ok()?;
        let end = end.trim().parse::<i64>().ok()?;
        (start >= 0 && end >= start).then(|| (start, end - start + 1))
    });
    range.map(Some).ok_or_else(|| {
        OciApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            "Content-Range must be <start>-<end>, with end at or after start",
        )
    })
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranged {
    /// All of it: no range this server serves as a part (several ranges, another unit, a
    /// header it cannot read), which RFC 9110 lets a server answer with the whole body.
    Whole,
    /// `length` bytes from `start`, all within the body.
    Part { start: i64, length: i64 },
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Reads `bytes=<start>-<end>`, `bytes=<start>-` or `bytes=-<suffix length>`.
fn byte_range(value: &str, size: i64) -> Ranged {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let number = |text: &str| -> Option<i64> {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<i64>().ok())
            .flatten()
    };
    match (number(first), number(last)) {
        // The last `n` bytes.
        (None, Some(suffix)) if first.trim().is_empty() => {
            if suffix == 0 || size == 0 {
                return Ranged::Unsatisfiable;
            }
            let length = suffix.min(size);
            Ranged::Part {
                start: size - length,
                length,
            }
        }
        (Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if start >= size {
                return Ranged::Unsatisfiable;
            }
            let end = end.map_or(size - 1, |end| end.min(size - 1));
            if end < start {
                return Ranged::Whole;
            }
            Ranged::Part {
                start,
                length: end - start + 1,
            }
        }
        _ => Ranged::Whole,
    }
}

impl Distribution {
    async fn serve(&self, target: Target<'_>, call: Call) -> Result<Response, OciApiError> {
        let repo = match &target {
            Target::Manifest { repo, .. }
            | Target::Blob { repo, .. }
            | Target::Uploads { repo }
            | Target::Upload { repo, .. }
            | Target::Tags { repo }
            | Target::Referrers { repo, .. } => repo,
        };
        crate::service::check_repository(repo)
            .map_err(|s| OciApiError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", s.message))?;
        match target {
            Target::Manifest { repo, reference } => match call.method {
                Method::GET | Method::HEAD => {
                    self.get_manifest(repo, reference, &call.method, &call.caller)
                        .await
                }
                Method::PUT => self.put_manifest(repo, reference, call).await,
                Method::DELETE => self.delete_manifest(repo, reference, &call.caller).await,
                ref other => Err(method_not_allowed(other)),
            },
            Target::Blob { repo, digest } => match call.method {
                Method::GET | Method::HEAD => {
                    self.get_blob(repo, digest, &call.method, &call.headers, &call.caller)
                        .await
                }
                ref other => Err(method_not_allowed(other)),
            },
            Target::Uploads { repo } => match call.method {
                Method::POST => self.start_upload(repo, call).await,
                ref other => Err(method_not_allowed(other)),
            },
            Target::Upload { repo, id } => self.upload(repo, id, call).await,
            Target::Tags { repo } => match call.method {
                Method::GET => self.tags(repo, &call.params, &call.caller).await,
                ref other => Err(method_not_allowed(other)),
            },
            Target::Referrers { repo, digest } => match call.method {
                Method::GET => {
                    self.referrers(repo, digest, &call.params, &call.caller)
                        .await
                }
                ref other => Err(method_not_allowed(other)),
            },
        }
    }

    /// Checks that the caller holds `role` in the folder of the repository's registry.
    async fn authorize<'r>(
        &self,
        repo: &'r str,
        caller: &Caller,
        role: Role,
    ) -> Result<&'r str, OciApiError> {
        let registry = registry_id(repo)?;
        self.images
            .registry_for(registry, caller, role)
            .await
            .map_err(|s| OciApiError::from_status(s, "NAME_UNKNOWN", "NAME_INVALID"))?;
        Ok(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_their_end() {
        assert_eq!(
            Target::parse("crp1/team/app/manifests/latest"),
            Some(Target::Manifest {
                repo: "crp1/team/app",
                reference: "latest"
            })
        );
        assert_eq!(
            Target::parse("crp1/blobs/manifests/sha256:ab"),
            Some(Target::Manifest {
                repo: "crp1/blobs",
                reference: "sha256:ab"
            })
        );
        assert_eq!(
            Target::parse("crp1/app/blobs/uploads/"),
            Some(Target::Uploads { repo: "crp1/app" })
        );
        assert_eq!(
            Target::parse("crp1/app/blobs/uploads/upl123"),
            Some(Target::Upload {
                repo: "crp1/app",
                id: "upl123"
            })
        );
        assert_eq!(
            Target::parse("crp1/app/blobs/sha256:ab"),
            Some(Target::Blob {
                repo: "crp1/app",
                digest: "sha256:ab"
            })
        );
        assert_eq!(
            Target::parse("crp1/app/tags/list"),
            Some(Target::Tags { repo: "crp1/app" })
        );
        assert_eq!(Target::parse("crp1/app/tags/other"), None);
        assert_eq!(Target::parse("crp1"), None);
    }

    #[test]
    fn byte_ranges_read_as_rfc_9110_says() {
        let part = |start, length| Ranged::Part { start, length };
        assert_eq!(byte_range("bytes=0-9", 100), part(0, 10));
        assert_eq!(byte_range("bytes=90-", 100), part(90, 10));
        assert_eq!(byte_range("bytes=90-1000", 100), part(90, 10));
        assert_eq!(byte_range("bytes=-10", 100), part(90, 10));
        assert_eq!(byte_range("bytes=-1000", 100), part(0, 100));
        assert_eq!(byte_range("bytes=100-", 100), Ranged::Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 100), Ranged::Unsatisfiable);
        assert_eq!(byte_range("bytes=0-0", 0), Ranged::Unsatisfiable);
        assert_eq!(byte_range("bytes=5-2", 100), Ranged::Whole);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), Ranged::Whole);
        assert_eq!(byte_range("items=0-1", 100), Ranged::Whole);
        assert_eq!(byte_range("bytes=a-b", 100), Ranged::Whole);
        assert_eq!(byte_range("bytes=+1-2", 100), Ranged::Whole);
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        let uri: Uri = "/v2/crp1/app/blobs/uploads/?mount=sha256%3Aab&from=crp1%2Fapp&x=1"
            .parse()
            .expect("valid");
        let params = Params::of(&uri).expect("valid");
        assert_eq!(params.mount.as_deref(), Some("sha256:ab"));
        assert_eq!(params.from.as_deref(), Some("crp1/app"));
        assert_eq!(params.digest, None);
    }

    proptest::proptest! {
        /// Any path under `/v2/` parses to a target whose repository is a part of it, or to
        /// nothing; never a panic.
        #[test]
        fn fuzz_paths_parse_from_their_end(path in "(([a-z0-9._-]{0,6}|\\.\\.|blobs|uploads|manifests|tags|list)/?){0,8}|[\\PC]{0,40}") {
            if let Some(target) = Target::parse(&path) {
                let repo = match target {
                    Target::Manifest { repo, .. }
                    | Target::Blob { repo, .. }
                    | Target::Uploads { repo }
                    | Target::Upload { repo, .. }
                    | Target::Tags { repo }
                    | Target::Referrers { repo, .. } => repo,
                };
                proptest::prop_assert!(path.starts_with(repo));
            }
        }

        /// Any `Range` value on any size: a part is inside the body and never empty.
        #[test]
        fn fuzz_byte_ranges(value in "(bytes=)?[0-9 ,-]{0,24}|[\\PC]{0,24}", size in 0i64..1 << 40) {
            match byte_range(&value, size) {
                Ranged::Part { start, length } => {
                    proptest::prop_assert!(start >= 0 && length >= 1 && start + length <= size);
                }
                Ranged::Whole | Ranged::Unsatisfiable => {}
            }
        }

        /// `Content-Range` values: `<start>-<end>` with end ≥ start gives where and how many;
        /// anything else is refused with 416.
        #[test]
        fn fuzz_content_ranges(value in "(bytes[ =]?)?[0-9 -]{0,24}|[\\PC]{0,24}", start in 0i64..1 << 40, length in 1i64..1 << 30) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::CONTENT_RANGE, v);
                match content_range(&headers) {
                    Ok(Some((s, n))) => proptest::prop_assert!(s >= 0 && n >= 1),
                    Ok(None) => proptest::prop_assert!(false, "a header was there"),
                    Err(e) => proptest::prop_assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE),
                }
            }
            let exact = format!("{start}-{}", start + length - 1);
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(&exact).unwrap_or(HeaderValue::from_static("0-0")));
            proptest::prop_assert_eq!(content_range(&headers).ok().flatten(), Some((start, length)));
        }
    }
}
