//! Image sources fetched over HTTP(S): the bytes are streamed, counted and inspected. A qcow2
//! image gives its virtual size from its header; any other file is a raw image whose size is
//! its length.
//!
//! Which hosts may be fetched is configured, loopback only by default, so that a caller
//! cannot make the server reach into a network it can see and the caller cannot.

use std::time::Duration;

use reqwest::Url;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::validation_error;

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
    /// How long a fetch may go without receiving a byte (or, at first, the answer's
    /// headers) before it fails.
    pub stall_timeout: Duration,
}

impl Default for FetchPolicy {
    /// Loopback only, at most 64 GiB, within an hour, with no minute without progress.
    fn default() -> Self {
        Self {
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into(), "[::1]".into()],
            max_bytes: 64 << 30,
            timeout: Duration::from_secs(3600),
            stall_timeout: Duration::from_secs(60),
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

/// Checks `uri` against the policy before anything is fetched.
pub fn check_uri(uri: &str, policy: &FetchPolicy) -> Result<Url, Status> {
    let url = Url::parse(uri).map_err(|e| validation_error("uri", &e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(validation_error(
            "uri",
            &format!(
                "the scheme must be http or https, not {}",
                yc_proto_types::quote(url.scheme())
            ),
        ));
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
                "the server may not fetch images from {}; allowed hosts are {}",
                yc_proto_types::quote(host),
                policy.allowed_hosts.join(", ")
            ),
        ));
    }
    Ok(url)
}

/// The largest disk there is, and so the largest image: 4 TiB.
pub const MAX_DISK_SIZE: u64 = 4 << 40;

/// Fetches the image at `url`, counting and inspecting it as it streams. A source that sends
/// nothing for [`FetchPolicy::stall_timeout`] fails with `DEADLINE_EXCEEDED`; one whose
/// content cannot be a disk image (empty, or a qcow2 header with an impossible size) with
/// `INVALID_ARGUMENT`.
pub async fn fetch(url: &Url, policy: &FetchPolicy) -> Result<Inspected, Status> {
    let client = reqwest::Client::builder()
        .timeout(policy.timeout)
        // A redirect could lead to a host the policy does not allow.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Status::new(tonic::Code::Internal, e.to_string()))?;
    let stalled = |waiting: &str| {
        Status::new(
            tonic::Code::DeadlineExceeded,
            format!(
                "fetching {url}: no progress for {} s while waiting for {waiting}",
                policy.stall_timeout.as_secs_f64()
            ),
        )
    };
    let response = tokio::time::timeout(policy.stall_timeout, client.get(url.clone()).send())
        .await
        .map_err(|_| stalled("the answer"))?
        .map_err(|e| {
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
    let mut head = Vec::with_capacity(QCOW2_HEADER);
    let mut total: u64 = 0;
    let mut response = response;
    loop {
        let chunk = tokio::time::timeout(policy.stall_timeout, response.chunk())
            .await
            .map_err(|_| stalled("more bytes"))?
            .map_err(|e| {
                Status::new(
                    tonic::Code::FailedPrecondition,
                    format!("fetching {url}: {e}"),
                )
            })?;
        let Some(chunk) = chunk else { break };
        total += chunk.len() as u64;
        if total > policy.max_bytes {
            return Err(too_large(url, total, policy));
        }
        if head.len() < QCOW2_HEADER {
            let take = (QCOW2_HEADER - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
    }
    inspect(&head, total).map_err(|why| {
        Status::new(
            tonic::Code::InvalidArgument,
            format!("the image at {url} {why}"),
        )
    })
}

/// The bytes of a qcow2 header that say what it is: the magic and the virtual size.
const QCOW2_HEADER: usize = 32;

/// What an image of `total` bytes that starts with `head` (its first 32 bytes, or all of
/// them) is; or why it cannot be a disk image, as the end of a sentence about it.
pub fn inspect(head: &[u8], total: u64) -> Result<Inspected, String> {
    let storage_size = i64::try_from(total).unwrap_or(i64::MAX);
    if total == 0 {
        return Err("is empty: a disk image has at least one byte".into());
    }
    if head.starts_with(&QCOW2_MAGIC) {
        let size = qcow2_virtual_size(head).ok_or_else(|| {
            format!(
                "starts as a qcow2 image, but its header is cut short ({} bytes)",
                head.len()
            )
        })?;
        if size == 0 {
            return Err("is a qcow2 image of virtual size 0".into());
        }
        return Ok(Inspected {
            size: disk_size(size, "a qcow2 image of virtual size")?,
            storage_size,
            qcow2: true,
        });
    }
    Ok(Inspected {
        size: disk_size(total, "a raw image of")?,
        storage_size,
        qcow2: false,
    })
}

/// `size` as a disk size, if there is a disk that large.
fn disk_size(size: u64, what: &str) -> Result<i64, String> {
    if size > MAX_DISK_SIZE {
        return Err(format!(
            "is {what} {size} bytes, larger than the largest disk, {MAX_DISK_SIZE} bytes"
        ));
    }
    i64::try_from(size).map_err(|_| format!("is {what} {size} bytes"))
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
pub fn qcow2_virtual_size(head: &[u8]) -> Option<u64> {
    if head.get(..4)? != QCOW2_MAGIC {
        return None;
    }
    let bytes: [u8; 8] = head.get(24..32)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
