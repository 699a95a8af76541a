//! The Compute ImageService over real sockets: the typed client runs the whole lifecycle over
//! gRPC and over REST, REST answers are the canonical JSON of the gRPC answers, and REST
//! responses are snapshotted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get as route_get;
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Server, server::TcpIncoming};
use yc_compute_image::client::ComputeImageClient;
use yc_compute_image::source::FetchPolicy;
use yc_compute_image::{ComputeImageGrpc, ComputeImages, SqlComputeImageStore};
use yc_operations::{MemoryOperationStore, OperationGrpc, OperationRunner, WaitPolicy};
use yc_proto_types::google::protobuf::FieldMask;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::compute::v1::create_image_request::Source;
use yc_proto_types::yandex::cloud::compute::v1::image_service_client::ImageServiceClient;
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, ListImageOperationsRequest, ListImagesRequest, UpdateImageRequest, image,
};

struct Fixture {
    channel: Channel,
    base: String,
    files: SocketAddr,
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn serve() -> Fixture {
    let (files_listener, files) = bind().await;
    let router = axum::Router::new().route("/disk.raw", route_get(|| async { vec![1u8; 5 << 20] }));
    tokio::spawn(async move {
        let _ = axum::serve(files_listener, router).await;
    });

    let store = SqlComputeImageStore::in_memory().await.unwrap();
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    let images = ComputeImages::new(Arc::new(store), runner.clone(), FetchPolicy::default());

    let (grpc_listener, grpc_addr) = bind().await;
    let (image_service, operation_service) = (
        ComputeImageGrpc::server(images.clone()),
        OperationGrpc::server(runner.clone()),
    );
    tokio::spawn(async move {
        let _ = Server::builder()
            .layer(yc_api_runtime::PrincipalLayer::new(
                yc_api_runtime::Principal::anonymous(),
            ))
            .add_service(image_service)
            .add_service(operation_service)
            .serve_with_incoming(TcpIncoming::from(grpc_listener))
            .await;
    });
    let (rest_listener, rest_addr) = bind().await;
    let router =
        yc_api_runtime::rest::router([ComputeImageGrpc::rest(images), OperationGrpc::rest(runner)])
            .layer(yc_api_runtime::PrincipalLayer::new(
                yc_api_runtime::Principal::anonymous(),
            ));
    tokio::spawn(async move {
        let _ = axum::serve(rest_listener, router).await;
    });
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Fixture {
        channel,
        base: format!("http://{rest_addr}"),
        files,
    }
}

fn fast() -> WaitPolicy {
    WaitPolicy {
        initial_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(20),
        ..WaitPolicy::default()
    }
}

#[tokio::test]
async fn the_typed_client_runs_the_lifecycle_over_both_transports() {
    let f = serve().await;
    let clients = [
        (
            "grpc",
            ComputeImageClient::new(
                yc_operations::ApiClient::grpc(f.channel.clone()).with_wait_policy(fast()),
            ),
        ),
        (
            "rest",
            ComputeImageClient::new(
                yc_operations::ApiClient::rest(&f.base)
                    .unwrap()
                    .with_wait_policy(fast()),
            ),
        ),
    ];
    for (name, client) in &clients {
        let folder = format!("b1g{name}");
        let request = CreateImageRequest {
            folder_id: folder.clone(),
            name: format!("{name}-image"),
            family: "fam".into(),
            source: Some(Source::Uri(format!("http://{}/disk.raw", f.files))),
            ..Default::default()
        };
        let image = client
            .create_and_wait(&request)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (image.status, image.size),
            (image::Status::Ready as i32, 5 << 20),
            "{name}"
        );
        assert_eq!(
            client.get(&image.id).await.ok().as_ref(),
            Some(&image),
            "{name}"
        );
        assert_eq!(
            client
                .latest_by_family(&folder, "fam")
                .await
                .map(|i| i.id)
                .ok(),
            Some(image.id.clone()),
            "{name}"
        );

        let listed: Vec<_> = client
            .list_all(ListImagesRequest {
                folder_id: folder.clone(),
                page_size: 1,
                ..Default::default()
            })
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(listed, std::slice::from_ref(&image), "{name}");

        let update = UpdateImageRequest {
            image_id: image.id.clone(),
            update_mask: Some(FieldMask::new(["description"])),
            description: "described".into(),
            name: "ignored".into(),
            ..Default::default()
        };
        let updated = client
            .update_and_wait(&update)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (updated.description.as_str(), updated.name.as_str()),
            ("described", image.name.as_str()),
            "{name}"
        );

        let operations = client
            .list_operations(&ListImageOperationsRequest {
                image_id: image.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let descriptions: Vec<&str> = operations
            .operations
            .iter()
            .map(|o| o.description.as_str())
            .collect();
        assert_eq!(descriptions, ["Update image", "Create image"], "{name}");

        client
            .delete_and_wait(&image.id)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let gone = client.get(&image.id).await.err().unwrap_or_default();
        assert_eq!(
            (gone.grpc_code(), gone.message),
            (
                tonic::Code::NotFound,
                format!("Image {} not found", image.id)
            ),
            "{name}"
        );
    }
}

async fn http(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{url}: {e}")),
    )
}

#[tokio::test]
async fn rest_answers_are_the_canonical_json_of_the_grpc_answers() {
    let f = serve().await;
    let client = ComputeImageClient::new(
        yc_operations::ApiClient::grpc(f.channel.clone()).with_wait_policy(fast()),
    );
    let request = CreateImageRequest {
        folder_id: "b1gparity".into(),
        name: "parity".into(),
        source: Some(Source::Uri(format!("http://{}/disk.raw", f.files))),
        ..Default::default()
    };
    let image = client.create_and_wait(&request).await.unwrap();
    let mut grpc = ImageServiceClient::new(f.channel.clone());

    let listed = grpc
        .list(ListImagesRequest {
            folder_id: "b1gparity".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner());
    let (status, json) = http(
        "GET",
        &format!("{}/compute/v1/images?folderId=b1gparity", f.base),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        json,
        serde_json::to_value(listed.unwrap_or_default()).unwrap_or_default()
    );

    let (status, json) = http(
        "GET",
        &format!("{}/compute/v1/images/{}", f.base, image.id),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json, serde_json::to_value(&image).unwrap_or_default());

    // The same invalid request fails the same way on both.
    let bad = ListImagesRequest {
        folder_id: "b1gparity".into(),
        page_size: 1001,
        ..Default::default()
    };
    let error = Status::from(
        grpc.list(bad)
            .await
            .err()
            .unwrap_or_else(|| tonic::Status::ok("")),
    );
    let (status, json) = http(
        "GET",
        &format!(
            "{}/compute/v1/images?folderId=b1gparity&pageSize=1001",
            f.base
        ),
        None,
    )
    .await;
    assert_eq!(
        (status, json["code"].as_i64(), json["message"].as_str()),
        (400, Some(3), Some(error.message.as_str()))
    );
}

/// Replaces what differs from run to run (ids, times) with placeholders.
fn redact(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, field) in map.iter_mut() {
                    match key.as_str() {
                        "id" | "imageId" => *field = Value::String("[id]".into()),
                        "createdAt" | "modifiedAt" => *field = Value::String("[time]".into()),
                        _ => walk(field),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[tokio::test]
async fn rest_responses() {
    let f = serve().await;
    let create = json!({
        "folderId": "b1gsnap",
        "name": "snap",
        "labels": { "env": "test" },
        "uri": format!("http://{}/disk.raw", f.files),
    });
    let (status, op) = http(
        "POST",
        &format!("{}/compute/v1/images", f.base),
        Some(create),
    )
    .await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("rest_create_started", redact(op.clone()));

    let id = op["metadata"]["imageId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let patch = json!({ "updateMask": "family", "family": "x" });
    let (status, error) = http(
        "PATCH",
        &format!("{}/compute/v1/images/{id}", f.base),
        Some(patch),
    )
    .await;
    assert_eq!(status, 400);
    insta::assert_json_snapshot!("rest_update_unknown_path", error);

    let (status, missing) = http(
        "GET",
        &format!(
            "{}/compute/v1/images:latestByFamily?folderId=b1gsnap&family=none",
            f.base
        ),
        None,
    )
    .await;
    assert_eq!(status, 404);
    insta::assert_json_snapshot!("rest_latest_by_family_not_found", missing);

    let (status, invalid) = http(
        "POST",
        &format!("{}/compute/v1/images", f.base),
        Some(json!({ "folderId": "b1gsnap" })),
    )
    .await;
    assert_eq!(status, 400);
    insta::assert_json_snapshot!("rest_create_without_source", invalid);
}

/// Every snapshot in `tests/it/snapshots` is one a test takes.
#[test]
fn no_unreferenced_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots");
    let known = [
        "it__transport__rest_create_started.snap",
        "it__transport__rest_update_unknown_path.snap",
        "it__transport__rest_latest_by_family_not_found.snap",
        "it__transport__rest_create_without_source.snap",
    ];
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            known.contains(&name.as_str()),
            "unreferenced snapshot {name}"
        );
    }
}
