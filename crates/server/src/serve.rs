//! `yc-images serve`: the stores, the services, and one listener for gRPC and REST.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use yc_api_runtime::Principal;
use yc_compute_image::source::FetchPolicy;
use yc_compute_image::store::ComputeImageStore;
use yc_compute_image::{ComputeImageGrpc, ComputeImages, SqlComputeImageStore};
use yc_operations::{OperationGrpc, OperationRunner, OperationStore, Resumers, SqlOperationStore};
use yc_proto_types::rpc::RestRouter;
use yc_registry_image::blobs::SqlBlobStore;
use yc_registry_image::store::ImageStore;
use yc_registry_image::{RegistryImageGrpc, RegistryImages, SqlImageStore};
use yc_sql::{Db, connect_postgres};

use crate::endpoints::Endpoints;
use crate::iam::Iam;

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
    listen: SocketAddr,

    /// Directory of the embedded store; created if missing. Every acknowledged change is in
    /// it before the answer is sent.
    #[arg(long, env = "YC_IMAGES_DATA_DIR", default_value = "./yc-images-data")]
    data_dir: PathBuf,

    /// Hosts that image URIs may be fetched from (repeat the flag, or separate with commas);
    /// `*` allows any. Loopback only by default.
    #[arg(
        long = "fetch-allow",
        env = "YC_IMAGES_FETCH_ALLOW",
        value_delimiter = ',',
        default_values_t = ["127.0.0.1".to_owned(), "localhost".to_owned(), "[::1]".to_owned()]
    )]
    fetch_allow: Vec<String>,

    /// The most connections open at once; a new one beyond it closes the one idle longest.
    /// Keep it below the open-files limit (`ulimit -n`).
    #[arg(long, env = "YC_IMAGES_MAX_CONNECTIONS", default_value_t = 768, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,

    /// Seconds a client has to send a request's headers (HTTP/1.1).
    #[arg(long, env = "YC_IMAGES_HEADER_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout: u64,

    /// Seconds a request body may go without a byte before the call fails.
    #[arg(long, env = "YC_IMAGES_BODY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout: u64,

    /// Seconds a connection may stay open with no call in flight.
    #[arg(long, env = "YC_IMAGES_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    idle_timeout: u64,

    /// Seconds a client has to finish its TLS handshake.
    #[arg(long, env = "YC_IMAGES_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    tls_handshake_timeout: u64,

    /// Seconds calls in flight may take to finish after SIGTERM or SIGINT; what is left then
    /// is closed.
    #[arg(long, env = "YC_IMAGES_SHUTDOWN_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    shutdown_grace: u64,

    /// The largest request body of an API call, in bytes (registry uploads under `/v2/` are
    /// not limited); a larger one is `RESOURCE_EXHAUSTED` over gRPC, 413 over REST.
    #[arg(long, env = "YC_IMAGES_MAX_REQUEST_BYTES", default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    max_request_bytes: u64,

    /// Seconds an image fetch may go without receiving a byte before the Create fails
    /// (its image ends in ERROR).
    #[arg(long, env = "YC_IMAGES_FETCH_STALL_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    fetch_stall_timeout: u64,

    /// Serve TLS with this certificate chain (PEM), for gRPC and REST alike; needs
    /// --tls-key.
    #[arg(long, env = "YC_IMAGES_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "YC_IMAGES_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

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
    tls: bool,

    /// IAM file (JSON): subjects, their tokens, and their roles (`viewer`, `editor`) in
    /// folders. Every call but discovery and health checks then needs `authorization: Bearer
    /// <token>`. Without it every caller may do anything.
    #[arg(long, env = "YC_IMAGES_IAM")]
    iam: Option<PathBuf>,

    /// Serve without authentication (no --iam) on an address other than loopback, where
    /// anyone who can reach it can read and change everything. Without it such a server
    /// listens only on loopback addresses.
    #[arg(
        long,
        env = "YC_IMAGES_ALLOW_UNAUTHENTICATED",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    allow_unauthenticated: bool,

    /// Keep the data in this PostgreSQL database instead of the data directory
    /// (`postgres://user[:password]@host[:port]/database`). Several servers may share one
    /// database: operations, idempotency keys and page tokens work across them.
    #[arg(long, env = "YC_IMAGES_DATABASE_URL")]
    database_url: Option<String>,

    /// Connections to keep open to the database.
    #[arg(long, env = "YC_IMAGES_DATABASE_CONNECTIONS", default_value_t = 8)]
    database_connections: u32,

    /// Seconds an operation runner's lease lasts; renewed every third of it. When a server
    /// stops without finishing its operations, another server on the same database (or this
    /// one, restarted) takes them over once the lease has run out.
    #[arg(long, env = "YC_IMAGES_OPERATION_LEASE", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    operation_lease: u64,

    /// Load registries, OCI image layouts and compute images from this directory at start,
    /// idempotently (its layout is in the server's docs).
    #[arg(long, env = "YC_IMAGES_SEED")]
    seed: Option<PathBuf>,
}

pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    let started = Instant::now();
    let iam = args.iam.as_deref().map(Iam::load).transpose()?;
    if iam.is_none() && !args.listen.ip().is_loopback() && !args.allow_unauthenticated {
        anyhow::bail!(
            "refusing to serve on {} without authentication: every caller could read and change \
             everything. Give an IAM file with --iam, listen on a loopback address (127.0.0.1, \
             [::1]), or pass --allow-unauthenticated if that is what you want",
            args.listen
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ if args.tls => {
            let local = crate::tls::local_certificate(&args.data_dir.join("tls"))?;
            // Before the address, which scripts and tests wait for.
            println!("yc-images TLS CA certificate: {}", local.ca.display());
            Some(crate::tls::acceptor(&local.cert, &local.key)?)
        }
        _ => None,
    };
    let stores = open_stores(&args).await?;
    let runner =
        OperationRunner::with_lease(stores.operations, Duration::from_secs(args.operation_lease));
    let registry = RegistryImages::new(stores.registry, runner.clone());
    let fetch = FetchPolicy {
        allowed_hosts: args.fetch_allow.clone(),
        stall_timeout: Duration::from_secs(args.fetch_stall_timeout),
        ..FetchPolicy::default()
    };
    let compute = ComputeImages::new(stores.compute, runner.clone(), fetch);
    if let Some(dir) = &args.seed {
        let seeded = crate::seed::load(dir, &registry, &stores.blobs, &compute).await?;
        tracing::info!(
            registry_images = seeded.registry_images,
            compute_images = seeded.compute_images,
            "seeded from {}",
            dir.display()
        );
    }
    let recovery = runner
        .recover(compute.resumers(registry.resumers(Resumers::new())))
        .await
        .map_err(anyhow::Error::msg)?;
    if !(recovery.resumed.is_empty() && recovery.aborted.is_empty()) {
        tracing::info!(
            resumed = recovery.resumed.len(),
            aborted = recovery.aborted.len(),
            "operations left by an earlier run"
        );
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    // Reflection in both versions: grpcurl and older tools ask v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(yc_proto_types::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(yc_proto_types::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building gRPC reflection")?;
    // `conn` refuses a message over the limit from its length prefix, with
    // RESOURCE_EXHAUSTED; tonic's own check (OUT_OF_RANGE) is never reached first.
    let max = usize::try_from(args.max_request_bytes).unwrap_or(usize::MAX);
    let grpc = tonic::service::Routes::new(
        RegistryImageGrpc::server(registry.clone()).max_decoding_message_size(max),
    )
    .add_service(ComputeImageGrpc::server(compute.clone()).max_decoding_message_size(max))
    .add_service(OperationGrpc::server(runner.clone()).max_decoding_message_size(max))
    .add_service(Endpoints::server(address.to_string()).max_decoding_message_size(max))
    .add_service(health_service.max_decoding_message_size(max))
    .add_service(reflection.max_decoding_message_size(max))
    .add_service(reflection_alpha.max_decoding_message_size(max))
    .prepare()
    .into_axum_router();
    for service in [
        "yandex.cloud.containerregistry.v1.ImageService",
        "yandex.cloud.compute.v1.ImageService",
        "yandex.cloud.operation.OperationService",
        "yandex.cloud.endpoint.ApiEndpointService",
    ] {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }

    let metrics = crate::metrics::Metrics::new(runner.clone(), stores.db.clone());
    let scraped = metrics.clone();
    // The REST API: every `google.api.http` rule of the schema, served by the transcoder.
    let rest = Arc::new(RestRouter::new([
        RegistryImageGrpc::rest(registry.clone()),
        ComputeImageGrpc::rest(compute.clone()),
        OperationGrpc::rest(runner.clone()),
        Endpoints::rest(address.to_string()),
    ]));
    let mut app = grpc
        .merge(yc_registry_image::distribution::router(
            registry,
            stores.blobs.clone(),
        ))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || async move { metrics_text(&scraped) }),
        )
        .fallback(move |request| yc_api_runtime::rest::transcode(rest.clone(), request))
        .method_not_allowed_fallback(yc_api_runtime::rest::method_not_allowed)
        // `conn` limits request bodies (flag `--max-request-bytes`).
        .layer(axum::extract::DefaultBodyLimit::disable());
    // Every call carries a principal: IAM's, or the explicit anonymous one of a server without
    // IAM. A call without one is refused by the services (UNAUTHENTICATED).
    let authenticated = iam.is_some();
    if authenticated {
        app = app.layer(axum::middleware::from_fn_with_state(
            iam,
            crate::iam::authenticate,
        ));
    }
    // Without IAM, `RequestIds` puts the anonymous principal on every call (one layer less
    // than `PrincipalLayer`: each layer of the router is a boxed service cloned per call).
    // Outermost, so that refused calls have ids and are logged and counted too.
    let app = app.layer(RequestIdsLayer {
        metrics,
        anonymous: !authenticated,
    });

    tracing::info!(%address, store = %stores.description, authenticated, tls = tls.is_some(), startup_ms = started.elapsed().as_millis() as u64, "serving");
    let shutdown = shutdown_signal()?;
    // Tests and scripts read the address from here, port 0 resolved.
    println!("yc-images listening on {address}");
    std::io::stdout().flush()?;

    let limits = crate::conn::Limits {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        handshake_timeout: Duration::from_secs(args.tls_handshake_timeout),
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        max_request_bytes: usize::try_from(args.max_request_bytes).unwrap_or(usize::MAX),
    };
    crate::conn::serve(listener, tls, app, limits, shutdown).await;
    tracing::info!("shut down: calls in flight are done or past the grace period");
    if let Err(e) = runner.release().await {
        tracing::warn!(error = %e, "cannot release the operation runner's lease");
    }
    stores.db.close().await;
    Ok(())
}

/// The stores on one database.
struct Stores {
    operations: Arc<dyn OperationStore>,
    registry: Arc<dyn ImageStore>,
    blobs: SqlBlobStore,
    compute: Arc<dyn ComputeImageStore>,
    db: Db,
    /// Where the data is, for the log.
    description: String,
    /// The data directory's lock, held while serving.
    _lock: Option<std::fs::File>,
}

/// Opens the embedded store in the data directory, or the PostgreSQL database of
/// `--database-url`, and creates or migrates its schema.
async fn open_stores(args: &ServeArgs) -> Result<Stores> {
    let mut lock = None;
    let (db, description) = match &args.database_url {
        Some(url) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "--database-url must be a PostgreSQL URL (postgres://user@host:port/database), got {url:?}"
                );
            }
            let pool = connect_postgres(url, args.database_connections)
                .await
                .with_context(|| format!("connecting to the database {}", redact(url)))?;
            (Db::Postgres(pool), redact(url))
        }
        None => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| {
                format!("creating the data directory {}", args.data_dir.display())
            })?;
            // One server per data directory: it is the only writer, which its Get cache relies on.
            let lock_path = args.data_dir.join("yc-images.lock");
            let file = std::fs::File::create(&lock_path)
                .with_context(|| format!("creating {}", lock_path.display()))?;
            match file.try_lock() {
                Ok(()) => lock = Some(file),
                Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                    "another yc-images serve is using the data directory {}; stop it, or give \
                     this one another --data-dir (several servers share data through \
                     --database-url)",
                    args.data_dir.display()
                ),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", lock_path.display()));
                }
            }
            let database = args.data_dir.join("yc-images.sqlite");
            // WAL with `synchronous = FULL`: an answer is sent only after its change is on disk.
            let db = Db::sqlite_file(&database, args.database_connections)
                .await
                .with_context(|| format!("opening {}", database.display()))?;
            (db, database.display().to_string())
        }
    };
    let operations = SqlOperationStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let registry = SqlImageStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let blobs = SqlBlobStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let mut compute = SqlComputeImageStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    if lock.is_some() {
        compute = compute.with_cache(GET_CACHE_IMAGES);
    }
    Ok(Stores {
        operations: Arc::new(operations),
        registry: Arc::new(registry),
        blobs,
        compute: Arc::new(compute),
        db,
        description,
        _lock: lock,
    })
}

/// Compute images the embedded store keeps in memory for Get.
const GET_CACHE_IMAGES: usize = 100_000;

/// A database URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// SIGINT or SIGTERM. The handlers are installed here, before the server says it is listening,
/// so that a signal sent as soon as it does stops it gracefully.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The outermost layer: every call runs in a tracing span of its own (`call`, with its
/// request id, trace id, method and caller), so that every event of the call, errors
/// included, carries them; every answer carries `x-request-id` (the client's, or a new one)
/// and `x-server-trace-id`; every call is logged when its answer ends, and counted in the
/// metrics. A layer of its own rather than `axum::middleware::from_fn`, which clones the
/// inner service and boxes a future for every call.
#[derive(Debug, Clone)]
struct RequestIdsLayer {
    metrics: Arc<crate::metrics::Metrics>,
    /// Whether every caller is the anonymous one (a server without IAM): then this layer
    /// puts [`Principal::anonymous`] on every call.
    anonymous: bool,
}

impl<S> tower_layer::Layer<S> for RequestIdsLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIds {
            inner,
            metrics: self.metrics.clone(),
            anonymous: self.anonymous,
        }
    }
}

#[derive(Debug, Clone)]
struct RequestIds<S> {
    inner: S,
    metrics: Arc<crate::metrics::Metrics>,
    anonymous: bool,
}

/// The method label and transport of a call, from what its request shows; a REST call's
/// method is known once the transcoder has routed it.
fn classify(request: &Request) -> (&'static str, &'static str) {
    let path = request.uri().path();
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        (crate::metrics::grpc_method(path), "grpc")
    } else if path == "/v2" || path.starts_with("/v2/") {
        ("registry-api", "http")
    } else if path == "/healthz" {
        ("healthz", "http")
    } else if path == "/metrics" {
        ("metrics", "http")
    } else {
        ("unknown", "rest")
    }
}

impl<S> tower_service::Service<Request> for RequestIds<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RequestIdsFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        if crate::endpoints::is_discovery(request.uri().path())
            && let Some(reached) = crate::endpoints::ReachedAt::of(&request)
        {
            request.extensions_mut().insert(reached);
        }
        if self.anonymous {
            request.extensions_mut().insert(Principal::anonymous());
        }
        let request_id = client_request_id(request.headers()).unwrap_or_else(new_id);
        let trace_id = new_id();
        let (method, transport) = classify(&request);
        let span = tracing::info_span!(
            "call",
            request_id = request_id.to_str().unwrap_or_default(),
            trace_id = trace_id.to_str().unwrap_or_default(),
            // Known now for gRPC; a REST call's once the transcoder has routed it.
            method = (method != "unknown").then_some(method),
            // Known now without IAM; else once the token is checked.
            caller = self.anonymous.then_some("anonymous"),
        );
        let call = Pending {
            request_id,
            trace_id,
            http_method: request.method().clone(),
            uri: request.uri().clone(),
            started,
            method,
            transport,
        };
        let inner = span.in_scope(|| self.inner.call(request));
        RequestIdsFuture {
            inner,
            call: Some(call),
            span,
            metrics: self.metrics.clone(),
        }
    }
}

/// What is known of a call before its answer.
struct Pending {
    request_id: HeaderValue,
    trace_id: HeaderValue,
    http_method: axum::http::Method,
    uri: axum::http::Uri,
    started: Instant,
    method: &'static str,
    transport: &'static str,
}

pin_project_lite::pin_project! {
    /// The answer of a [`RequestIds`] call: the inner answer, polled in the call's span, with
    /// the ids; its body logs and counts the call when it ends.
    struct RequestIdsFuture<F> {
        #[pin]
        inner: F,
        call: Option<Pending>,
        span: tracing::Span,
        metrics: Arc<crate::metrics::Metrics>,
    }
}

impl<F, E> std::future::Future for RequestIdsFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let mut response = std::task::ready!(this.span.in_scope(|| inner.poll(cx)))?;
        let Some(pending) = this.call.take() else {
            return std::task::Poll::Ready(Ok(response));
        };
        // An error carries the request id in its details, as the cloud's do; only errors pay.
        let failed = response.status().is_client_error() || response.status().is_server_error();
        let grpc_failed = response
            .headers()
            .get(GRPC_STATUS)
            .is_some_and(|code| code.as_bytes() != b"0");
        if grpc_failed {
            crate::request_info::add_to_grpc_error(response.headers_mut(), &pending.request_id);
        } else if failed && !pending.uri.path().starts_with("/v2/") {
            response = crate::request_info::add_to_json_error(response, &pending.request_id);
        }
        let method = response
            .extensions()
            .get::<yc_api_runtime::rest::RestRpc>()
            .map_or(pending.method, |rpc| rpc.0);
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID, pending.request_id);
        headers.insert(X_SERVER_TRACE_ID, pending.trace_id);
        // The call is logged when its answer has been sent in full: a gRPC answer's status
        // comes in its trailers, after the body.
        let call = CallLog {
            http_method: pending.http_method,
            uri: pending.uri,
            status: response.status().as_u16(),
            grpc_status: response.headers().get(GRPC_STATUS).cloned(),
            started: pending.started,
            method,
            transport: pending.transport,
            span: this.span.clone(),
            metrics: this.metrics.clone(),
        };
        let (parts, body) = response.into_parts();
        std::task::Poll::Ready(Ok(Response::from_parts(
            parts,
            axum::body::Body::new(LoggedBody {
                inner: body,
                call: Some(call),
            }),
        )))
    }
}

/// `GET /metrics`: the Prometheus text (OpenMetrics) format.
fn metrics_text(metrics: &crate::metrics::Metrics) -> Response {
    let mut response = Response::new(axum::body::Body::from(metrics.render()));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-client-request-id");
const X_SERVER_TRACE_ID: HeaderName = HeaderName::from_static("x-server-trace-id");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// A new random id (a UUID), as a header value HTTP/2 never adds to its header table: every
/// answer has its own, and indexing them would only push out the headers that do repeat.
fn new_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    // A UUID is always a valid header value; the fallback only keeps this free of panics.
    let mut value = HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"));
    value.set_sensitive(true);
    value
}

/// What is logged and counted of one call.
struct CallLog {
    http_method: axum::http::Method,
    uri: axum::http::Uri,
    status: u16,
    grpc_status: Option<HeaderValue>,
    started: Instant,
    method: &'static str,
    transport: &'static str,
    span: tracing::Span,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Milliseconds with three decimals, as the call line writes a latency.
struct Millis(Duration);

impl std::fmt::Debug for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

impl CallLog {
    fn emit(self) {
        let elapsed = self.started.elapsed();
        let grpc_status = self.grpc_status.as_ref().and_then(|v| v.to_str().ok());
        let code = match grpc_status.map(str::parse::<i32>) {
            Some(Ok(code)) => tonic::Code::from_i32(code),
            _ if self.status < 400 => tonic::Code::Ok,
            _ => yc_proto_types::code_of_http(self.status),
        };
        self.metrics
            .record(self.method, self.transport, code, elapsed);
        let _in_call = self.span.enter();
        if self.transport == "grpc" && self.method != "unknown" {
            // The span's method is the path, and the HTTP method is always POST.
            tracing::info!(
                status = self.status,
                grpc_status,
                latency_ms = ?Millis(elapsed),
                "call"
            );
        } else {
            tracing::info!(
                http_method = self.http_method.as_str(),
                path = self.uri.path(),
                status = self.status,
                grpc_status,
                latency_ms = ?Millis(elapsed),
                "call"
            );
        }
    }
}

/// An answer's body that logs its call when it ends, with the gRPC status of its trailers.
struct LoggedBody {
    inner: axum::body::Body,
    call: Option<CallLog>,
}

impl http_body::Body for LoggedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(|t| t.get(GRPC_STATUS))
                    && let Some(call) = self.call.as_mut()
                {
                    call.grpc_status = Some(status.clone());
                }
            }
            std::task::Poll::Ready(None | Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.emit();
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    /// A body dropped before its end (the client went away) still logs its call.
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.emit();
        }
    }
}

/// The request id a client sent, if it is one we can echo.
fn client_request_id(headers: &axum::http::HeaderMap) -> Option<HeaderValue> {
    [X_REQUEST_ID, X_CLIENT_REQUEST_ID].iter().find_map(|name| {
        headers
            .get(name)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
            .map(|v| {
                let mut v = v.clone();
                v.set_sensitive(true);
                v
            })
    })
}
