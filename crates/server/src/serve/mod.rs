//! `yc-images serve`: the stores, the services, and one listener for gRPC and REST.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::get;
use yc_compute_image::source::FetchPolicy;
use yc_compute_image::{ComputeImageGrpc, ComputeImages, ComputeSources, ComputeSourcesGrpc};
use yc_operations::{OperationGrpc, OperationRunner, Resumers};
use yc_proto_types::rpc::RestRouter;
use yc_registry_image::{
    Registries, RegistryGrpc, RegistryImageGrpc, RegistryImages, Repositories, RepositoryGrpc,
};

use crate::endpoints::Endpoints;
use crate::iam::tokens::{IamTokens, IssuedTokens};
use crate::iam::{Config as IamConfig, Iam};

mod args;
mod calls;
mod dispatch;
mod stores;

pub(crate) use args::{LogFormat, ServeArgs, StoreArgs};
use calls::RequestIdsLayer;
use stores::open_stores;
pub(crate) use stores::{open_blobs, open_db};

pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    let started = Instant::now();
    let iam_config = args.iam.as_deref().map(IamConfig::load).transpose()?;
    let authenticated = iam_config.is_some();
    if !authenticated && !args.listen.ip().is_loopback() && !args.allow_unauthenticated {
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
            let local = crate::tls::local_certificate(&args.store.data_dir.join("tls"))?;
            // Before the address, which scripts and tests wait for.
            println!("yc-images TLS CA certificate: {}", local.ca.display());
            Some(crate::tls::acceptor(&local.cert, &local.key)?)
        }
        _ => None,
    };
    let stores = open_stores(&args).await?;
    let issued = IssuedTokens::open(
        stores.db.clone(),
        Duration::from_secs(args.iam_token_lifetime),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let iam = Iam::new(args.iam.as_deref(), iam_config.unwrap_or_default(), issued);
    let runner =
        OperationRunner::with_lease(stores.operations, Duration::from_secs(args.operation_lease));
    let registries = Registries::new(stores.registry.clone(), runner.clone());
    let repositories = Repositories::new(stores.registry.clone(), runner.clone());
    let registry = RegistryImages::new(stores.registry, runner.clone());
    let fetch = FetchPolicy {
        allowed_hosts: args.fetch_allow.clone(),
        stall_timeout: Duration::from_secs(args.fetch_stall_timeout),
        ..FetchPolicy::default()
    };
    let sources = ComputeSources::new(stores.sources, runner.token_keys().clone());
    let compute =
        ComputeImages::new(stores.compute, runner.clone(), fetch).with_sources(sources.clone());
    if let Some(dir) = &args.seed {
        let seeded = crate::seed::load(dir, &registry, &stores.blobs, &compute, &sources).await?;
        tracing::info!(
            registry_images = seeded.registry_images,
            compute_images = seeded.compute_images,
            disks = seeded.disks,
            snapshots = seeded.snapshots,
            "seeded from {}",
            dir.display()
        );
    }
    let recovery = runner
        .recover(compute.resumers(registry.resumers(registries.resumers(Resumers::new()))))
        .await
        .map_err(anyhow::Error::msg)?;
    if !(recovery.resumed.is_empty() && recovery.aborted.is_empty()) {
        tracing::info!(
            resumed = recovery.resumed.len(),
            aborted = recovery.aborted.len(),
            "operations left by an earlier run"
        );
    }

    if args.gc_interval > 0 {
        tokio::spawn(collect_garbage(
            stores.blobs.clone(),
            Duration::from_secs(args.gc_interval),
            Duration::from_secs(args.gc_grace),
        ));
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
    .add_service(RegistryGrpc::server(registries.clone()).max_decoding_message_size(max))
    .add_service(RepositoryGrpc::server(repositories.clone()).max_decoding_message_size(max))
    .add_service(ComputeImageGrpc::server(compute.clone()).max_decoding_message_size(max))
    .add_service(ComputeSourcesGrpc::disks(sources.clone()).max_decoding_message_size(max))
    .add_service(ComputeSourcesGrpc::snapshots(sources.clone()).max_decoding_message_size(max))
    .add_service(OperationGrpc::server(runner.clone()).max_decoding_message_size(max))
    .add_service(Endpoints::server(address.to_string()).max_decoding_message_size(max))
    .add_service(
        IamTokens::new(iam.clone(), address.to_string())
            .server()
            .max_decoding_message_size(max),
    )
    .add_service(health_service.max_decoding_message_size(max))
    .add_service(reflection.max_decoding_message_size(max))
    .add_service(reflection_alpha.max_decoding_message_size(max))
    .prepare()
    .into_axum_router();
    for service in [
        "yandex.cloud.containerregistry.v1.ImageService",
        "yandex.cloud.containerregistry.v1.RegistryService",
        "yandex.cloud.containerregistry.v1.RepositoryService",
        "yandex.cloud.compute.v1.ImageService",
        "yandex.cloud.compute.v1.DiskService",
        "yandex.cloud.compute.v1.SnapshotService",
        "yandex.cloud.operation.OperationService",
        "yandex.cloud.endpoint.ApiEndpointService",
        "yandex.cloud.iam.v1.IamTokenService",
    ] {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }

    let metrics = crate::metrics::Metrics::new(runner.clone(), stores.db.clone());
    let scraped = metrics.clone();
    // The REST API: every `google.api.http` rule of the schema, served by the transcoder.
    let [disks_rest, snapshots_rest] = ComputeSourcesGrpc::rest(sources);
    let rest = Arc::new(RestRouter::new([
        RegistryImageGrpc::rest(registry.clone()),
        RegistryGrpc::rest(registries),
        RepositoryGrpc::rest(repositories),
        ComputeImageGrpc::rest(compute.clone()),
        disks_rest,
        snapshots_rest,
        OperationGrpc::rest(runner.clone()),
        Endpoints::rest(address.to_string()),
        IamTokens::new(iam.clone(), address.to_string()).rest(),
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
        // What no rule's path is: 404 (gRPC's UNIMPLEMENTED for a gRPC call). The paths of
        // the rules go to the transcoder before the router (`Dispatch`).
        .fallback({
            let rest = rest.clone();
            move |request| yc_api_runtime::rest::transcode(rest.clone(), request)
        })
        .method_not_allowed_fallback(yc_api_runtime::rest::method_not_allowed)
        // `conn` limits request bodies (flag `--max-request-bytes`).
        .layer(axum::extract::DefaultBodyLimit::disable());
    // Every call carries a principal: IAM's, or the explicit anonymous one of a server without
    // IAM. A call without one is refused by the services (UNAUTHENTICATED).
    if authenticated {
        app = app.layer(axum::middleware::from_fn_with_state(
            iam.clone(),
            crate::iam::authenticate,
        ));
    }
    let app = dispatch::Dispatch {
        router: app,
        rest: rest.clone(),
        iam: authenticated.then_some(iam),
    };
    // Without IAM, `RequestIds` puts the anonymous principal on every call (one layer less
    // than `PrincipalLayer`: each layer of the router is a boxed service cloned per call).
    // Outermost, so that refused calls have ids and are logged and counted too.
    // Around the router rather than inside it (`Router::layer`), where every layer would box
    // each route once more and clone that box for every call.
    use tower_layer::Layer as _;
    let app = RequestIdsLayer {
        metrics,
        rest: rest.clone(),
        anonymous: !authenticated,
    }
    .layer(axum::extract::DefaultBodyLimit::disable().layer(app));

    let blob_store = stores
        .blobs
        .object_storage()
        .map_or_else(|| "database".to_owned(), |o| format!("s3://{}", o.name()));
    tracing::info!(%address, store = %stores.description, %blob_store, authenticated, tls = tls.is_some(), startup_ms = started.elapsed().as_millis() as u64, "serving");
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

/// Collects the blobs no image needs, every `interval` (see
/// [`SqlBlobStore::collect_garbage`](yc_registry_image::blobs::SqlBlobStore::collect_garbage)).
async fn collect_garbage(
    blobs: yc_registry_image::blobs::SqlBlobStore,
    interval: Duration,
    grace: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match blobs.collect_garbage(grace).await {
            Ok(collected) => tracing::info!(
                links_removed = collected.links_removed,
                blobs_removed = collected.blobs_removed,
                bytes_freed = collected.bytes_freed,
                uploads_expired = collected.uploads_expired,
                "garbage collection"
            ),
            Err(e) => tracing::warn!(error = %e, "garbage collection failed; it runs again later"),
        }
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

/// `GET /metrics`: the Prometheus text (OpenMetrics) format.
fn metrics_text(metrics: &crate::metrics::Metrics) -> Response {
    let mut response = Response::new(axum::body::Body::from(metrics.render()));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
