//! Image sources fetched over HTTP(S): the bytes are streamed, counted and inspected. A qcow2
//! image gives its virtual size from its header; any other file is a raw image whose size is
//! its length.
//!
//! Which hosts may be fetched is configured, loopback only by default, so that a caller
//! cannot make the server reach into a network it can see and the caller cannot.

use std::time::Duration;

use reqwest::Url;
use yc_proto_types::google::rpc::Status;

/// The qcow2 magic, `QFI\xfb`.
const QCOW2_MAGIC: [u8; 4] = [0x51, 0x46, 0x49, 0xfb];

/// What may be fetched, how much, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Host names or addresses that may be fetched; `*` allows any.
    pub allowed_hosts: Vec<String>,
    /// The largest image, in bytes.
    pub max_bytes: u64,
    /// How long one fetch may take.
    pub timeout: Duration,
}

impl Default for FetchPolicy {
    /// Loopback only, at most 64 GiB, within an hour.
    fn default() -> Self {
        Self {
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into(), "[::1]".into()],
            max_bytes: 64 << 30,
            timeout: Duration::from_secs(3600),
        }
    }
}

/// What a fetched image turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    /// The size of the disk the image holds, in bytes.
    pub size: i64,
    /// The bytes fetched: what the image takes in storage.
    pub storage_size: i64,
    /// Whether it is a qcow2 image.
    pub qcow2: bool,
}

fn invalid(message: String) -> Status {
    Status::new(tonic::Code::InvalidArgument, message)
}

/// Checks `uri` against the policy before anything is fetched.
pub fn check_uri(uri: &str, policy: &FetchPolicy) -> Result<Url, Status> {
    let url =
        Url::parse(uri).map_err(|e| invalid(format!("Request validation error: uri: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "Request validation error: uri: the scheme must be http or https, not {:?}",
            url.scheme()
        )));
    }
    let host = url.host_str().unwrap_or_default();
    if !policy
        .allowed_hosts
        .iter()
        .any(|h| h == "*" || h.eq_ignore_ascii_case(host))
    {
        return Err(Status::new(
            tonic::Code::PermissionDenied,
            format!(
                "the server may not fetch images from {host:?}; allowed hosts are {}",
                policy.allowed_hosts.join(", ")
            ),
        ));
    }
    Ok(url)
}

/// Fetches the image at `url`, counting and inspecting it as it streams.
pub async fn fetch(url: &Url, policy: &FetchPolicy) -> Result<Inspected, Status> {
    let client = reqwest::Client::builder()
        .timeout(policy.timeout)
        // A redirect could lead to a host the policy does not allow.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Status::new(tonic::Code::Internal, e.to_string()))?;
    let response = client.get(url.clone()).send().await.map_err(|e| {
        Status::new(
            tonic::Code::FailedPrecondition,
            format!("cannot fetch {url}: {e}"),
        )
    })?;
    if !response.status().is_success() {
        return Err(Status::new(
            tonic::Code::FailedPrecondition,
            format!("cannot fetch {url}: it answered {}", response.status()),
        ));
    }
    if let Some(length) = response.content_length().filter(|l| *l > policy.max_bytes) {
        return Err(too_large(url, length, policy));
    }
    let mut head = Vec::with_capacity(32);
    let mut total: u64 = 0;
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        Status::new(
            tonic::Code::FailedPrecondition,
            format!("fetching {url}: {e}"),
        )
    })? {
        total += chunk.len() as u64;
        if total > policy.max_bytes {
            return Err(too_large(url, total, policy));
        }
        if head.len() < 32 {
            let take = (32 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
    }
    let storage_size = i64::try_from(total).unwrap_or(i64::MAX);
    match qcow2_virtual_size(&head) {
        Some(size) => Ok(Inspected {
            size,
            storage_size,
            qcow2: true,
        }),
        None => Ok(Inspected {
            size: storage_size,
            storage_size,
            qcow2: false,
        }),
    }
}

fn too_large(url: &Url, bytes: u64, policy: &FetchPolicy) -> Status {
    Status::new(
        tonic::Code::InvalidArgument,
        format!(
            "the image at {url} is {bytes} bytes or more; at most {} are allowed",
            policy.max_bytes
        ),
    )
}

/// The virtual size in a qcow2 header (big-endian u64 at offset 24), if `head` starts one.
pub fn qcow2_virtual_size(head: &[u8]) -> Option<i64> {
    if head.get(..4)? != QCOW2_MAGIC {
        return None;
    }
    let bytes: [u8; 8] = head.get(24..32)?.try_into().ok()?;
    i64::try_from(u64::from_be_bytes(bytes)).ok()
}
