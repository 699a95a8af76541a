//! What the in-process lifecycle tests share: a service on an in-memory store, a local file
//! server with test images, and waiting for operations.

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use futures_util::StreamExt as _;
use yc_compute_image::source::FetchPolicy;
use yc_compute_image::{Caller, ComputeImages, SqlComputeImageStore};
use yc_operations::{MemoryOperationStore, OperationRunner};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::compute::v1::create_image_request::Source;
use yc_proto_types::yandex::cloud::compute::v1::{CreateImageRequest, GetImageRequest, Image};
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

pub(crate) const GIB: i64 = 1 << 30;
pub(crate) const FOLDER: &str = "b1gfolder";

/// A qcow2 header for a disk of `virtual_size` bytes: magic, version 3, cluster bits 16.
pub(crate) fn qcow2(virtual_size: u64) -> Vec<u8> {
    let mut header = vec![0u8; 512];
    header[..4].copy_from_slice(b"QFI\xfb");
    header[4..8].copy_from_slice(&3u32.to_be_bytes());
    header[20..24].copy_from_slice(&16u32.to_be_bytes());
    header[24..32].copy_from_slice(&virtual_size.to_be_bytes());
    header
}

/// A local HTTP server with the test images, answering after a short pause so that the
/// CREATING state can be seen.
pub(crate) async fn files() -> SocketAddr {
    let router = Router::new()
        .route(
            "/disk.qcow2",
            route_get(|| async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                qcow2(GIB as u64)
            }),
        )
        .route(
            "/slower.qcow2",
            route_get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                qcow2(GIB as u64)
            }),
        )
        .route("/disk.raw", route_get(|| async { vec![7u8; 3 << 20] }))
        .route("/big.raw", route_get(|| async { vec![0u8; 2 << 20] }))
        .route("/empty", route_get(|| async { Vec::<u8>::new() }))
        .route("/zero.qcow2", route_get(|| async { qcow2(0) }))
        .route("/huge.qcow2", route_get(|| async { qcow2((4 << 40) + 1) }))
        .route("/largest.qcow2", route_get(|| async { qcow2(4 << 40) }))
        .route("/unsigned.qcow2", route_get(|| async { qcow2(u64::MAX) }))
        .route(
            "/truncated.qcow2",
            route_get(|| async { qcow2(GIB as u64)[..20].to_vec() }),
        )
        // Headers and a first piece, then nothing, for ever.
        .route(
            "/stalls.raw",
            route_get(|| async {
                let first =
                    futures_util::stream::once(async { Ok::<_, std::io::Error>(vec![1u8; 4096]) });
                axum::body::Body::from_stream(first.chain(futures_util::stream::pending()))
            }),
        )
        // No answer at all.
        .route(
            "/hangs.raw",
            route_get(|| async {
                futures_util::future::pending::<()>().await;
                Vec::<u8>::new()
            }),
        );
    serve(router).await
}

/// Serves `router` on a loopback port of its own; its address.
pub(crate) async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Creates an image from `uri` expecting the operation to fail: its error, and the image it
/// left.
pub(crate) async fn failed_create(
    images: &ComputeImages,
    name: &str,
    uri: String,
) -> (Status, Image) {
    let op = images
        .create(&create(name, Source::Uri(uri)), &Caller::system())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let error = response(&done(images, &op).await)
        .err()
        .unwrap_or_else(|| panic!("{name} became READY"));
    let left = get(images, &image_id(&op)).await.unwrap();
    (error, left)
}

pub(crate) async fn service(max_bytes: u64) -> ComputeImages {
    service_with(FetchPolicy {
        max_bytes,
        ..FetchPolicy::default()
    })
    .await
}

/// The service on a fresh in-memory store, fetching under `policy`.
pub(crate) async fn service_with(policy: FetchPolicy) -> ComputeImages {
    let store = SqlComputeImageStore::in_memory().await.unwrap();
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    ComputeImages::new(Arc::new(store), runner, policy)
}

pub(crate) fn create(name: &str, source: Source) -> CreateImageRequest {
    CreateImageRequest {
        folder_id: FOLDER.into(),
        name: name.into(),
        source: Some(source),
        ..Default::default()
    }
}

pub(crate) async fn done(images: &ComputeImages, op: &Operation) -> Operation {
    for _ in 0..500 {
        let current = images.runner().get(&op.id).await.unwrap();
        if current.done {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("operation {} did not finish", op.id);
}

pub(crate) fn response(op: &Operation) -> Result<Image, Status> {
    match &op.result {
        Some(operation::Result::Response(any)) => Ok(any.to_msg::<Image>().unwrap_or_default()),
        Some(operation::Result::Error(status)) => Err(status.clone()),
        None => panic!("not done"),
    }
}

pub(crate) fn image_id(op: &Operation) -> String {
    op.metadata
        .as_ref()
        .and_then(|m| {
            m.to_msg::<yc_proto_types::yandex::cloud::compute::v1::CreateImageMetadata>()
                .ok()
        })
        .map(|m| m.image_id)
        .unwrap_or_default()
}

pub(crate) async fn get(images: &ComputeImages, id: &str) -> Result<Image, Status> {
    images
        .get(
            &GetImageRequest {
                image_id: id.into(),
            },
            &Caller::system(),
        )
        .await
}

pub(crate) async fn created(images: &ComputeImages, request: CreateImageRequest) -> Image {
    let op = images.create(&request, &Caller::system()).await.unwrap();
    response(&done(images, &op).await).unwrap()
}

/// Whether a test that needs an outside tool must run rather than skip: `var=1` (which
/// `cargo xtask ci` sets when it finds the tool) or `CI=true`.
pub(crate) fn required(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| v == "true")
}
