//! Blob content in object storage on the S3 API (Amazon S3, Yandex Object Storage, MinIO, Ceph
//! RGW, …), through [`object_store`]'s S3 client: the Apache Arrow project's, with the
//! low-level multipart calls ([`MultipartStore`]) whose upload ids and part ETags can be kept
//! in the database, so that one upload continues on any replica and after a restart. (The AWS
//! SDK for Rust would do the same at several times the build time.)
//!
//! Each blob is one object, `<prefix>/blobs/<storage id>`, written by one multipart upload of
//! parts of [`ObjectStorage::part_size`] bytes (the last one shorter); the database keeps which
//! object a digest is and which registries link it (see [`super`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer as _;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _, PutPayload,
    RetryConfig,
};

use super::BlobError;

/// The smallest part S3 accepts but for an upload's last one.
pub const MIN_PART_SIZE: usize = 5 << 20;

/// The part size unless configured: 10 000 parts (the API's most) make a blob of up to
/// about 156 GiB.
pub const DEFAULT_PART_SIZE: usize = 16 << 20;

/// Where and how to reach the object storage for blob content.
#[derive(Debug, Clone, Default)]
pub struct ObjectStorageConfig {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// The S3 endpoint, e.g. `https://storage.yandexcloud.net` or `http://127.0.0.1:9000`; the
    /// environment's `AWS_ENDPOINT_URL`/`AWS_ENDPOINT`, else AWS's.
    pub endpoint: Option<String>,
    /// The region (`AWS_REGION` or `AWS_DEFAULT_REGION` unless given; `us-east-1` without).
    pub region: Option<String>,
    /// Access key id and secret (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` unless given).
    pub access_key_id: Option<String>,
    /// See `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Addresses buckets as `https://bucket.host/` rather than `https://host/bucket/`.
    pub virtual_hosted: bool,
    /// Bytes per multipart part (at least [`MIN_PART_SIZE`]); [`DEFAULT_PART_SIZE`] when 0.
    pub part_size: usize,
    /// Pulls are answered with `307` and a pre-signed URL valid this long, instead of streaming
    /// the content through the server.
    pub redirect: Option<Duration>,
}

/// The object storage blob content is kept in.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    store: Arc<AmazonS3>,
    prefix: Path,
    part_size: usize,
    redirect: Option<Duration>,
    /// `bucket/prefix`, for messages.
    name: String,
}

fn failed(what: &str, e: object_store::Error) -> BlobError {
    BlobError::Unavailable(format!("object storage: {what}: {e}"))
}

impl ObjectStorage {
    /// The object storage `config` names. Nothing is sent until it is used (see
    /// [`check`](Self::check)).
    pub fn open(config: &ObjectStorageConfig) -> Result<Self, BlobError> {
        let invalid = |why: String| BlobError::Unavailable(format!("--blob-store: {why}"));
        let rest = config
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid(format!("{:?} is not s3://bucket[/prefix]", config.url)))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid(format!("{:?} names no bucket", config.url)));
        }
        let part_size = match config.part_size {
            0 => DEFAULT_PART_SIZE,
            size if size < MIN_PART_SIZE => {
                return Err(invalid(format!(
                    "parts of {size} bytes are smaller than S3's least, {MIN_PART_SIZE}"
                )));
            }
            size => size,
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(config.virtual_hosted)
            // A store that is down fails a call in seconds rather than after minutes of retries.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        let endpoint = config.endpoint.clone().or_else(|| {
            std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .ok()
        });
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        let region = config.region.clone().or_else(|| {
            std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .ok()
        });
        if let Some(region) = region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| invalid(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::from(prefix),
            part_size,
            redirect: config.redirect,
            name: if prefix.is_empty() {
                bucket.to_owned()
            } else {
                format!("{bucket}/{prefix}")
            },
        })
    }

    /// `bucket/prefix`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes per part of a multipart upload.
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Whether pulls are redirected to pre-signed URLs.
    pub fn redirects(&self) -> bool {
        self.redirect.is_some()
    }

    /// Checks that the bucket can be listed with these credentials: a server fails at start,
    /// not at its first push.
    pub async fn check(&self) -> Result<(), BlobError> {
        let prefix = self.prefix.clone().join("blobs");
        let mut listed = self.store.list(Some(&prefix));
        match listed.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(failed(&format!("listing {}", self.name), e)),
        }
    }

    fn key(&self, storage: &str) -> Path {
        self.prefix.clone().join("blobs").join(storage)
    }

    /// Starts the multipart upload of the object `storage`; returns its upload id.
    pub(super) async fn create(&self, storage: &str) -> Result<String, BlobError> {
        self.store
            .create_multipart(&self.key(storage))
            .await
            .map_err(|e| failed("starting a multipart upload", e))
    }

    /// Uploads part `number` (from 1) of the object `storage`; returns its ETag.
    pub(super) async fn put_part(
        &self,
        storage: &str,
        multipart: &str,
        number: i64,
        content: Vec<Bytes>,
    ) -> Result<String, BlobError> {
        let index = usize::try_from(number - 1)
            .map_err(|_| BlobError::Unavailable(format!("part {number} is not a part number")))?;
        let payload: PutPayload = content.into_iter().collect();
        let part = self
            .store
            .put_part(&self.key(storage), &multipart.to_owned(), index, payload)
            .await
            .map_err(|e| failed(&format!("uploading part {number}"), e))?;
        Ok(part.content_id)
    }

    /// Completes the object `storage` from its parts' ETags, in order.
    pub(super) async fn complete(
        &self,
        storage: &str,
        multipart: &str,
        etags: Vec<String>,
    ) -> Result<(), BlobError> {
        let parts = etags
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        self.store
            .complete_multipart(&self.key(storage), &multipart.to_owned(), parts)
            .await
            .map(|_| ())
            .map_err(|e| failed("completing a multipart upload", e))
    }

    /// Writes the object `storage` whole (an empty blob: S3 needs a part for a multipart
    /// upload).
    pub(super) async fn put(&self, storage: &str, content: Bytes) -> Result<(), BlobError> {
        self.store
            .put(&self.key(storage), content.into())
            .await
            .map(|_| ())
            .map_err(|e| failed("writing an object", e))
    }

    /// The size of the object `storage`, or `None` when there is none.
    pub(super) async fn size(&self, storage: &str) -> Result<Option<u64>, BlobError> {
        match self.store.head(&self.key(storage)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("reading an object's size", e)),
        }
    }

    /// Aborts the multipart upload (its parts are dropped); one that is gone already is fine.
    pub(super) async fn abort(&self, storage: &str, multipart: &str) -> Result<(), BlobError> {
        match self
            .store
            .abort_multipart(&self.key(storage), &multipart.to_owned())
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("aborting a multipart upload", e)),
        }
    }

    /// Removes the object `storage`; one that is gone already is fine.
    pub(super) async fn delete(&self, storage: &str) -> Result<(), BlobError> {
        match self.store.delete(&self.key(storage)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("removing an object", e)),
        }
    }

    /// `length` bytes of the object `storage` from `start`, as they arrive.
    pub(super) async fn read(
        &self,
        storage: &str,
        start: u64,
        length: u64,
    ) -> Result<impl Stream<Item = Result<Bytes, BlobError>> + Send + 'static, BlobError> {
        if length == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + length)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.key(storage), options)
            .await
            .map_err(|e| failed("reading an object", e))?;
        Ok(got
            .into_stream()
            .map_err(|e| failed("reading an object", e))
            .boxed())
    }

    /// A URL that reads the object `storage` without credentials, valid for the configured
    /// time; `None` unless pulls are redirected.
    pub(super) async fn signed_url(&self, storage: &str) -> Result<Option<String>, BlobError> {
        let Some(valid) = self.redirect else {
            return Ok(None);
        };
        let url = self
            .store
            .signed_url(object_store::signer::Method::GET, &self.key(storage), valid)
            .await
            .map_err(|e| failed("signing a URL", e))?;
        Ok(Some(url.to_string()))
    }
}
