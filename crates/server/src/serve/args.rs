//! `yc-images serve` options.

use std::net::SocketAddr;
use std::path::PathBuf;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `<time>  INFO call{request_id=… trace_id=… method=… caller=…}: target: message fields`.
    Text,
    /// One JSON object per line.
    Json,
}

/// `yc-images serve` options; each also reads an environment variable.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// How log lines are written: `text` (one line of `name=value` fields per event) or `json`
    /// (one JSON object per line, the call's span with its request id, trace id, method and
    /// caller in `spans`).
    #[arg(long, env = "YC_IMAGES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Address to serve gRPC (HTTP/2) and REST (HTTP/1.1 and HTTP/2) on. Port 0 picks a free
    /// port; the address served is printed on standard output.
    #[arg(long, env = "YC_IMAGES_LISTEN", default_value = "127.0.0.1:50051")]
    pub(crate) listen: SocketAddr,

    #[command(flatten)]
    pub(crate) store: StoreArgs,

    /// Hosts that image URIs may be fetched from (repeat the flag, or separate with commas);
    /// `*` allows any. Loopback only by default.
    #[arg(
        long = "fetch-allow",
        env = "YC_IMAGES_FETCH_ALLOW",
        value_delimiter = ',',
        default_values_t = ["127.0.0.1".to_owned(), "localhost".to_owned(), "[::1]".to_owned()]
    )]
    pub(crate) fetch_allow: Vec<String>,

    /// The most connections open at once; a new one beyond it closes the one idle longest.
    /// Keep it below the open-files limit (`ulimit -n`).
    #[arg(long, env = "YC_IMAGES_MAX_CONNECTIONS", default_value_t = 768, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) max_connections: u64,

    /// Seconds a client has to send a request's headers (HTTP/1.1).
    #[arg(long, env = "YC_IMAGES_HEADER_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) header_timeout: u64,

    /// Seconds a request body may go without a byte before the call fails.
    #[arg(long, env = "YC_IMAGES_BODY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) body_timeout: u64,

    /// Seconds a connection may stay open with no call in flight.
    #[arg(long, env = "YC_IMAGES_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub(crate) idle_timeout: u64,

    /// Seconds a client has to finish its TLS handshake.
    #[arg(long, env = "YC_IMAGES_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) tls_handshake_timeout: u64,

    /// Seconds calls in flight may take to finish after SIGTERM or SIGINT; what is left then
    /// is closed.
    #[arg(long, env = "YC_IMAGES_SHUTDOWN_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub(crate) shutdown_grace: u64,

    /// The largest request body of an API call, in bytes (registry uploads under `/v2/` are
    /// not limited); a larger one is `RESOURCE_EXHAUSTED` over gRPC, 413 over REST.
    #[arg(long, env = "YC_IMAGES_MAX_REQUEST_BYTES", default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    pub(crate) max_request_bytes: u64,

    /// Seconds an image fetch may go without receiving a byte before the Create fails
    /// (its image ends in ERROR).
    #[arg(long, env = "YC_IMAGES_FETCH_STALL_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub(crate) fetch_stall_timeout: u64,

    /// Serve TLS with this certificate chain (PEM), for gRPC and REST alike; needs
    /// --tls-key.
    #[arg(long, env = "YC_IMAGES_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "YC_IMAGES_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,

    /// Serve TLS with a certificate for localhost, 127.0.0.1 and ::1, signed by a CA of the
    /// server's own; both are made once in DATA_DIR/tls and kept. The CA's path is printed:
    /// give it to clients to trust (the SDKs' `root_certificates`).
    #[arg(
        long,
        env = "YC_IMAGES_TLS",
        conflicts_with = "tls_cert",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub(crate) tls: bool,

    /// IAM file (JSON): subjects, their tokens, and their roles (`viewer`, `editor`) in
    /// folders. Every call but discovery and health checks then needs `authorization: Bearer
    /// <token>`. Without it every caller may do anything.
    #[arg(long, env = "YC_IMAGES_IAM")]
    pub(crate) iam: Option<PathBuf>,

    /// Serve without authentication (no --iam) on an address other than loopback, where
    /// anyone who can reach it can read and change everything. Without it such a server
    /// listens only on loopback addresses.
    #[arg(
        long,
        env = "YC_IMAGES_ALLOW_UNAUTHENTICATED",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub(crate) allow_unauthenticated: bool,

    /// Seconds between garbage collections of blobs no image needs any more (0: never; `yc-images
    /// registry gc` collects on demand).
    #[arg(long, env = "YC_IMAGES_GC_INTERVAL", default_value_t = 3600)]
    pub(crate) gc_interval: u64,

    /// Seconds a blob pushed but named by no image yet is kept by garbage collection: longer
    /// than a push takes from its first blob to its manifest.
    #[arg(long, env = "YC_IMAGES_GC_GRACE", default_value_t = 3600)]
    pub(crate) gc_grace: u64,

    /// Seconds an unfinished registry upload is kept: after it, what it received is removed
    /// (its multipart upload aborted, with --blob-store) at start and by each collection.
    #[arg(long, env = "YC_IMAGES_UPLOAD_LIFETIME", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) upload_lifetime: u64,

    /// Seconds an IAM token this server issues (IamTokenService.Create, for a
    /// service-account JWT or an OAuth token) is valid: 12 hours, as the cloud's.
    #[arg(long, env = "YC_IMAGES_IAM_TOKEN_LIFETIME", default_value_t = crate::iam::tokens::DEFAULT_LIFETIME.as_secs())]
    pub(crate) iam_token_lifetime: u64,

    /// Seconds an operation runner's lease lasts; renewed every third of it. When a server
    /// stops without finishing its operations, another server on the same database (or this
    /// one, restarted) takes them over once the lease has run out.
    #[arg(long, env = "YC_IMAGES_OPERATION_LEASE", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) operation_lease: u64,

    /// Load registries, OCI image layouts and compute images from this directory at start,
    /// idempotently (its layout is in the server's docs).
    #[arg(long, env = "YC_IMAGES_SEED")]
    pub(crate) seed: Option<PathBuf>,
}

/// Where the data is: the embedded store's directory, or a PostgreSQL database.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// Directory of the embedded store; created if missing. Every acknowledged change is in
    /// it before the answer is sent.
    #[arg(long, env = "YC_IMAGES_DATA_DIR", default_value = "./yc-images-data")]
    pub(crate) data_dir: PathBuf,

    /// Keep the data in this PostgreSQL database instead of the data directory
    /// (`postgres://user[:password]@host[:port]/database`). Several servers may share one
    /// database: operations, idempotency keys and page tokens work across them.
    #[arg(long, env = "YC_IMAGES_DATABASE_URL")]
    pub(crate) database_url: Option<String>,

    /// Connections to keep open to the database.
    #[arg(long, env = "YC_IMAGES_DATABASE_CONNECTIONS", default_value_t = 8)]
    pub(crate) database_connections: u32,

    #[command(flatten)]
    pub(crate) blob_store: BlobStoreArgs,
}

/// Where registry blob content goes: the database, or S3-compatible object storage.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BlobStoreArgs {
    /// Keep new blob content in object storage on the S3 API (`s3://bucket` or
    /// `s3://bucket/prefix`) rather than in the database; the database keeps which blobs there
    /// are. Blobs stored before stay where they are (`yc-images registry move-blobs` moves
    /// them). Credentials come from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[arg(long, env = "YC_IMAGES_BLOB_STORE")]
    pub(crate) blob_store: Option<String>,

    /// The object storage's endpoint (e.g. `https://storage.yandexcloud.net`,
    /// `http://127.0.0.1:9000`); else `AWS_ENDPOINT_URL`, else AWS's.
    #[arg(long, env = "YC_IMAGES_BLOB_STORE_ENDPOINT", requires = "blob_store")]
    pub(crate) blob_store_endpoint: Option<String>,

    /// The object storage's region; else `AWS_REGION`, else `us-east-1`.
    #[arg(long, env = "YC_IMAGES_BLOB_STORE_REGION", requires = "blob_store")]
    pub(crate) blob_store_region: Option<String>,

    /// Address the bucket as `https://bucket.host/` (virtual-hosted style) rather than
    /// `https://host/bucket/` (path style, the default).
    #[arg(
        long,
        env = "YC_IMAGES_BLOB_STORE_VIRTUAL_HOSTED",
        requires = "blob_store"
    )]
    pub(crate) blob_store_virtual_hosted: bool,

    /// Bytes per part of the multipart upload a blob is written by (at least 5 MiB): what an
    /// upload holds in memory is at most two parts.
    #[arg(long, env = "YC_IMAGES_BLOB_STORE_PART_SIZE", default_value_t = yc_registry_image::blobs::DEFAULT_PART_SIZE as u64, value_parser = clap::value_parser!(u64).range(yc_registry_image::blobs::MIN_PART_SIZE as u64..=(5u64 << 30)))]
    pub(crate) blob_store_part_size: u64,

    /// Answer pulls of blobs in object storage with `307` and a URL pre-signed for this many
    /// seconds, for clients to read from the storage directly; without it the server streams
    /// the content (clients need not reach the storage).
    #[arg(long, env = "YC_IMAGES_BLOB_STORE_REDIRECT", requires = "blob_store", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub(crate) blob_store_redirect: Option<u64>,
}

impl BlobStoreArgs {
    /// The object storage configured, if any.
    pub(crate) fn object_storage(&self) -> Option<yc_registry_image::blobs::ObjectStorageConfig> {
        let url = self.blob_store.clone()?;
        Some(yc_registry_image::blobs::ObjectStorageConfig {
            url,
            endpoint: self.blob_store_endpoint.clone(),
            region: self.blob_store_region.clone(),
            access_key_id: None,
            secret_access_key: None,
            virtual_hosted: self.blob_store_virtual_hosted,
            part_size: usize::try_from(self.blob_store_part_size).unwrap_or(usize::MAX),
            redirect: self.blob_store_redirect.map(std::time::Duration::from_secs),
        })
    }
}
