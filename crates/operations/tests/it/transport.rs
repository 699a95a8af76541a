//! OperationService over real sockets on loopback, gRPC and REST, with the waiter on the other
//! end: success, failure with details, cancel, timeout, NOT_FOUND tolerance, and the same
//! Operation from both transports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Server, server::TcpIncoming};
use yc_api_runtime::rest;
use yc_operations::{
    MemoryOperationStore, OperationGrpc, OperationRunner, OperationSource, OperationWaiter,
    RestOperationSource, StartOperation, WaitError, WaitPolicy,
};
use yc_proto_types::google::protobuf::{Any, Empty};
use yc_proto_types::google::rpc::{BadRequest, Status, bad_request::FieldViolation};
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageMetadata, CreateImageRequest, Image, image,
};
use yc_proto_types::yandex::cloud::operation::Operation;
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;

struct Servers {
    runner: OperationRunner,
    grpc: OperationServiceClient<Channel>,
    rest: RestOperationSource,
    rest_base: String,
}

async fn serve() -> Servers {
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));

    let listener = bind().await;
    let grpc_addr = local_addr(&listener);
    let service = OperationGrpc::server(runner.clone());
    tokio::spawn(async move {
        let incoming = TcpIncoming::from(listener);
        let _ = Server::builder()
            .layer(yc_api_runtime::PrincipalLayer::new(
                yc_api_runtime::Principal::anonymous(),
            ))
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });

    let listener = bind().await;
    let rest_addr = local_addr(&listener);
    let router = rest::router([OperationGrpc::rest(runner.clone())]).layer(
        yc_api_runtime::PrincipalLayer::new(yc_api_runtime::Principal::anonymous()),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {grpc_addr}: {e}"));
    let rest_base = format!("http://{rest_addr}");
    Servers {
        runner,
        grpc: OperationServiceClient::new(channel),
        rest: RestOperationSource::new(&rest_base).unwrap(),
        rest_base,
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("binding a loopback port: {e}"))
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().unwrap()
}

fn fast() -> WaitPolicy {
    WaitPolicy {
        initial_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(20),
        multiplier: 2.0,
        timeout: Some(Duration::from_secs(10)),
        not_found_tolerance: 3,
    }
}

fn start(name: &str) -> StartOperation {
    let request = CreateImageRequest {
        name: name.into(),
        ..Default::default()
    };
    StartOperation::new(
        "fd8",
        "yandex.cloud.compute.v1.ImageService.Create",
        "Create image",
        "fd8k3jq9f3bmv2a8tqvl",
        &CreateImageMetadata {
            image_id: "fd8k3jq9f3bmv2a8tqvl".into(),
        },
        &request,
    )
    .created_by("ajesubject")
}

fn ready_image() -> Image {
    Image {
        id: "fd8k3jq9f3bmv2a8tqvl".into(),
        name: "ubuntu".into(),
        status: image::Status::Ready as i32,
        ..Default::default()
    }
}

/// Starts an operation whose work finishes with `outcome` when `release` fires.
async fn start_held(
    runner: &OperationRunner,
    name: &str,
    outcome: Result<Any, Status>,
) -> (Operation, oneshot::Sender<()>) {
    let (release, released) = oneshot::channel::<()>();
    let op = runner
        .start(start(name), move |ctx| async move {
            let _ = released.await;
            ctx.set_metadata(&CreateImageMetadata {
                image_id: "fd8k3jq9f3bmv2a8tqvl".into(),
            })
            .await?;
            outcome
        })
        .await
        .unwrap();
    (op, release)
}

async fn waits_for_success<S: OperationSource>(
    runner: &OperationRunner,
    waiter: OperationWaiter<S>,
) {
    let (op, release) = start_held(runner, "ok", Ok(Any::from_msg(&ready_image()))).await;
    let release_later = async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let _ = release.send(());
    };
    let (image, ()) = tokio::join!(waiter.wait::<Image>(op), release_later);
    assert_eq!(image, Ok(ready_image()));
}

async fn waits_for_failure<S: OperationSource>(
    runner: &OperationRunner,
    waiter: OperationWaiter<S>,
) {
    let error = Status::new(
        tonic::Code::InvalidArgument,
        "Request validation error: uri: unreachable",
    )
    .with_detail(&BadRequest {
        field_violations: vec![FieldViolation {
            field: "uri".into(),
            description: "unreachable".into(),
            ..Default::default()
        }],
    });
    let (op, release) = start_held(runner, "bad", Err(error.clone())).await;
    let _ = release.send(());
    match waiter.wait::<Image>(op).await {
        Err(WaitError::Failed(status)) => assert_eq!(status, error),
        other => panic!("expected the operation's error, got {other:?}"),
    }
}

async fn times_out<S: OperationSource>(runner: &OperationRunner, waiter: OperationWaiter<S>) {
    let (op, _hold) = start_held(runner, "slow", Ok(Any::from_msg(&Empty {}))).await;
    let waiter = waiter.with_policy(WaitPolicy {
        timeout: Some(Duration::from_millis(100)),
        ..fast()
    });
    match waiter.wait::<Empty>(op.clone()).await {
        Err(WaitError::Timeout(Some(last))) => {
            assert_eq!(last.id, op.id);
            assert!(!last.done);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

async fn tolerates_not_found_briefly<S: OperationSource>(
    runner: &OperationRunner,
    waiter: OperationWaiter<S>,
) {
    // An id that never exists is NOT_FOUND once the tolerance is spent.
    match waiter.wait_id::<Image>("fd8nosuchoperation00").await {
        Err(WaitError::NotFound(id)) => assert_eq!(id, "fd8nosuchoperation00"),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    // An operation that becomes visible after a few polls is waited for. The waiter learns
    // the id before the operation exists, as a client may from a replica that is ahead.
    let (op, release) = start_held(runner, "late", Ok(Any::from_msg(&ready_image()))).await;
    let _ = release.send(());
    let patient = waiter.with_policy(WaitPolicy {
        not_found_tolerance: 1_000,
        ..fast()
    });
    assert_eq!(patient.wait_id::<Image>(&op.id).await, Ok(ready_image()));
}

#[tokio::test]
async fn the_waiter_over_grpc() {
    let servers = serve().await;
    let waiter = || OperationWaiter::new(servers.grpc.clone()).with_policy(fast());
    waits_for_success(&servers.runner, waiter()).await;
    waits_for_failure(&servers.runner, waiter()).await;
    times_out(&servers.runner, waiter()).await;
    tolerates_not_found_briefly(&servers.runner, waiter()).await;
}

#[tokio::test]
async fn the_waiter_over_rest() {
    let servers = serve().await;
    let waiter = || OperationWaiter::new(servers.rest.clone()).with_policy(fast());
    waits_for_success(&servers.runner, waiter()).await;
    waits_for_failure(&servers.runner, waiter()).await;
    times_out(&servers.runner, waiter()).await;
    tolerates_not_found_briefly(&servers.runner, waiter()).await;
}

#[tokio::test]
async fn progress_streams_until_done() {
    let servers = serve().await;
    let (op, release) = start_held(
        &servers.runner,
        "watched",
        Ok(Any::from_msg(&ready_image())),
    )
    .await;
    let waiter = OperationWaiter::new(servers.grpc.clone()).with_policy(fast());
    let updates = waiter.watch::<CreateImageMetadata, Image>(op);
    let _ = release.send(());
    let updates: Vec<_> = updates.collect().await;
    let first = updates.first().and_then(|u| u.as_ref().ok());
    assert!(
        first.is_some_and(|u| !u.done),
        "the stream starts with the running operation"
    );
    let last = updates.last().and_then(|u| u.as_ref().ok());
    assert_eq!(last.and_then(|u| u.result.clone()), Some(Ok(ready_image())));
    assert!(updates.iter().all(Result::is_ok));
}

async fn http(method: &str, url: &str) -> (u16, Value) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = client
        .request(method, url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{url}: {e}")),
    )
}

#[tokio::test]
async fn rest_and_grpc_return_the_same_operation() {
    let servers = serve().await;
    let (op, release) =
        start_held(&servers.runner, "same", Ok(Any::from_msg(&ready_image()))).await;
    let _ = release.send(());
    let done = OperationWaiter::new(servers.grpc.clone())
        .with_policy(fast())
        .wait_done(op)
        .await
        .unwrap();

    let via_grpc = servers.grpc.get_operation(&done.id).await.unwrap();
    let (status, json) = http(
        "GET",
        &format!("{}/operations/{}", servers.rest_base, done.id),
    )
    .await;
    assert_eq!(status, 200);
    let via_rest: Operation = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(via_rest, via_grpc);
    assert_eq!(via_grpc, done);

    // The JSON carries typed metadata and response under "@type"; ids and times vary by run.
    let mut json = json;
    for (field, placeholder) in [
        ("id", "[operation id]"),
        ("createdAt", "[time]"),
        ("modifiedAt", "[time]"),
    ] {
        assert!(json.get(field).is_some(), "{field}");
        json[field] = Value::String(placeholder.into());
    }
    insta::assert_json_snapshot!("rest_operation_done", json);
}

#[tokio::test]
async fn rest_cancel_answers_get_and_post_and_errors_are_statuses() {
    let servers = serve().await;
    let base = &servers.rest_base;
    let cancellable = start("held").cancellable(true);
    let op = servers
        .runner
        .start(cancellable, |ctx| async move {
            ctx.cancelled().await;
            Ok(Any::from_msg(&Empty {}))
        })
        .await
        .unwrap();

    let (status, json) = http("POST", &format!("{base}/operations/{}:cancel", op.id)).await;
    assert_eq!(status, 200);
    assert_eq!(json["done"], true);
    assert_eq!(json["error"]["code"], 1);

    // Cancel of a finished operation, by GET, returns it unchanged.
    let (status, again) = http("GET", &format!("{base}/operations/{}:cancel", op.id)).await;
    assert_eq!((status, &again), (200, &json));

    let (status, json) = http("GET", &format!("{base}/operations/fd8nosuchoperation00")).await;
    assert_eq!(status, 404);
    assert_eq!(json["code"], 5);
    assert_eq!(json["message"], "Operation fd8nosuchoperation00 not found");

    let (status, json) = http("GET", &format!("{base}/operations/:cancel")).await;
    assert_eq!(status, 400);
    assert_eq!(
        json["message"],
        "Request validation error: operation_id: is required"
    );

    // The path is Get's, which takes GET only.
    let (status, json) = http("POST", &format!("{base}/operations/{}", op.id)).await;
    assert_eq!(status, 405);
    assert_eq!(json["code"], 12);

    // gRPC validates the same way, from the same rules.
    let mut client = servers.grpc.clone();
    let request = yc_proto_types::yandex::cloud::operation::GetOperationRequest::default();
    let error = client
        .get(request)
        .await
        .err()
        .map(|e| e.message().to_owned());
    assert_eq!(
        error.as_deref(),
        Some("Request validation error: operation_id: is required")
    );
}

/// Every snapshot in `tests/it/snapshots` is one a test takes.
#[test]
fn no_unreferenced_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots");
    let known = ["it__transport__rest_operation_done.snap"];
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            known.contains(&name.as_str()),
            "unreferenced snapshot {name}"
        );
    }
}

/// Access fails closed: OperationService mounted without anything that puts a principal on
/// its calls answers every call `UNAUTHENTICATED`, over gRPC and over REST, instead of
/// treating the caller as one that may do anything.
#[tokio::test]
async fn a_service_without_a_principal_layer_refuses_every_call() {
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    let listener = bind().await;
    let addr = local_addr(&listener);
    let service = OperationGrpc::server(runner.clone());
    tokio::spawn(async move {
        let _ = Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = OperationServiceClient::new(channel)
        .get(
            yc_proto_types::yandex::cloud::operation::GetOperationRequest {
                operation_id: "fd8anyoperation00000".into(),
            },
        )
        .await
        .err()
        .map(|e| e.code());
    assert_eq!(refused, Some(tonic::Code::Unauthenticated));

    let router = rest::router([OperationGrpc::rest(runner)]);
    let request = axum::http::Request::get("/operations/fd8anyoperation00000")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = tower::ServiceExt::oneshot(router, request)
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(answer.status(), 401);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["code"], 16);
}
