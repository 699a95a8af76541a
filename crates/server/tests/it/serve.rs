//! End to end against the real binary: one address serves gRPC and REST, answers carry
//! request ids, discovery points at the server itself, and what the server confirmed survives
//! `kill -9` and a restart.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{Server, channel, write_layout};
use yc_compute_image::client::ComputeImageClient;
use yc_operations::WaitPolicy;
use yc_proto_types::yandex::cloud::compute::v1::create_image_request::Source;
use yc_proto_types::yandex::cloud::compute::v1::{CreateImageRequest, image};
use yc_proto_types::yandex::cloud::endpoint::ListApiEndpointsRequest;
use yc_proto_types::yandex::cloud::endpoint::api_endpoint_service_client::ApiEndpointServiceClient;
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;

async fn file_server() -> String {
    let router = axum::Router::new().route(
        "/disk.raw",
        axum::routing::get(|| async { vec![9u8; 6 << 20] }),
    );
    format!("{}/disk.raw", crate::support::serve_router(router).await)
}

fn fast() -> WaitPolicy {
    WaitPolicy {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        ..WaitPolicy::default()
    }
}

#[tokio::test]
async fn grpc_and_rest_on_one_address_with_request_ids_and_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let http = reqwest::Client::new();

    let health = http
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-server-trace-id"));
    let echoed = http
        .get(format!("{}/compute/v1/images?folderId=b1g", server.url()))
        .header("x-request-id", "my-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        echoed
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("my-request-1")
    );

    let mut endpoints = ApiEndpointServiceClient::new(channel(&server).await);
    let listed = endpoints
        .list(ListApiEndpointsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let compute = listed
        .endpoints
        .iter()
        .find(|e| e.id == "compute")
        .map(|e| e.address.clone());
    assert_eq!(compute, Some(server.address.clone()));

    // The same image through both transports of the one address.
    let uri = file_server().await;
    let grpc = ComputeImageClient::new(
        yc_operations::ApiClient::grpc(channel(&server).await).with_wait_policy(fast()),
    );
    let rest = ComputeImageClient::new(
        yc_operations::ApiClient::rest(&server.url())
            .unwrap()
            .with_wait_policy(fast()),
    );
    let request = CreateImageRequest {
        folder_id: "b1gfolder".into(),
        name: "e2e".into(),
        source: Some(Source::Uri(uri)),
        ..Default::default()
    };
    let created = grpc.create_and_wait(&request).await.unwrap();
    assert_eq!(
        (created.status, created.size),
        (image::Status::Ready as i32, 6 << 20)
    );
    assert_eq!(rest.get(&created.id).await.ok(), Some(created));
}

#[tokio::test]
async fn confirmed_changes_survive_kill_9_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let uri = file_server().await;
    let server = Server::start(dir.path());
    let client = ComputeImageClient::new(
        yc_operations::ApiClient::rest(&server.url())
            .unwrap()
            .with_wait_policy(fast()),
    );
    let mut kept = Vec::new();
    for name in ["one", "two", "three"] {
        let request = CreateImageRequest {
            folder_id: "b1gfolder".into(),
            name: name.into(),
            source: Some(Source::Uri(uri.clone())),
            ..Default::default()
        };
        kept.push(client.create_and_wait(&request).await.unwrap());
    }
    client.delete_and_wait(&kept[1].id).await.unwrap();
    server.kill();

    let restarted = Server::start(dir.path());
    let client = ComputeImageClient::new(
        yc_operations::ApiClient::rest(&restarted.url())
            .unwrap()
            .with_wait_policy(fast()),
    );
    assert_eq!(client.get(&kept[0].id).await.ok().as_ref(), Some(&kept[0]));
    assert_eq!(client.get(&kept[2].id).await.ok().as_ref(), Some(&kept[2]));
    let deleted = client.get(&kept[1].id).await.err().map(|e| e.grpc_code());
    assert_eq!(deleted, Some(tonic::Code::NotFound));
    let operations = client
        .list_operations(
            &yc_proto_types::yandex::cloud::compute::v1::ListImageOperationsRequest {
                image_id: kept[0].id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        operations.operations.iter().all(|o| o.done),
        "{:?}",
        operations.operations
    );
}

/// The official Python SDK's stubs and operation waiter against the running binary (see
/// `sdk_e2e.py`). It needs the SDK's Python environment, which `cargo xtask ci` provides.
#[tokio::test]
async fn the_official_python_sdk_drives_every_rpc() {
    let Some(python) = crate::support::sdk_python("the Python SDK end-to-end test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let uri = file_server().await;
    let seed = dir.path().join("seed");
    let folder = "b1gsdkfolder";
    let gen2 = serde_json::json!({"generation2Features": {}});
    let legacy = serde_json::json!({"legacyFeatures": {"pciTopology": "PCI_TOPOLOGY_V2"}});
    crate::support::seed_disk(
        &seed,
        "fhmsdkdisk0000000000",
        folder,
        "boot",
        serde_json::json!({"productIds": ["f2esdklicense0000000"], "hardwareGeneration": gen2}),
    );
    crate::support::seed_disk(
        &seed,
        "fhmsdkcreating000000",
        folder,
        "busy",
        serde_json::json!({"status": "CREATING"}),
    );
    crate::support::seed_snapshot(
        &seed,
        "fd8sdksnapshot000000",
        folder,
        "nightly",
        serde_json::json!({"hardwareGeneration": legacy}),
    );
    let seed_arg = seed.to_string_lossy().into_owned();
    let server = Server::start_with(&dir.path().join("data"), &["--seed", &seed_arg]);
    crate::support::run_sdk_script(
        python,
        "sdk_e2e.py",
        &[server.address.as_ref(), uri.as_ref()],
        "the official Python SDK agrees with yc-images",
    )
    .await;
}

#[tokio::test]
async fn seeding_loads_layouts_and_compute_images_once() {
    let seed = tempfile::tempdir().unwrap();
    let registry = seed.path().join("container-registry/crpseedregistry00000");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(
        registry.join("registry.json"),
        r#"{"folderId":"b1gseeded","name":"main"}"#,
    )
    .unwrap();
    let digest = write_layout(&registry.join("ubuntu/base"), "one", "22.04");
    std::fs::create_dir_all(seed.path().join("compute")).unwrap();
    std::fs::write(
        seed.path().join("compute/ubuntu.json"),
        r#"{"id":"fd8seededimage000000","folderId":"standard-images","name":"ubuntu-2204","family":"ubuntu-2204-lts","size":"2361393152"}"#,
    )
    .unwrap();
    // Only a storage size, as the README's example gives: the smallest disk holds it.
    std::fs::write(
        seed.path().join("compute/stored.json"),
        r#"{"id":"fd8storedimage000000","folderId":"standard-images","name":"stored","storageSize":"4294967296"}"#,
    )
    .unwrap();

    let data = tempfile::tempdir().unwrap();
    let seed_arg = seed.path().to_string_lossy().into_owned();
    for _ in 0..2 {
        // Twice: seeding again changes nothing.
        let server = Server::start_with(data.path(), &["--seed", &seed_arg]);
        let http = reqwest::Client::new();
        let listed: serde_json::Value = http
            .get(format!(
                "{}/container-registry/v1/images?folderId=b1gseeded",
                server.url()
            ))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap_or_default())
            .unwrap();
        let images = listed["images"].as_array().cloned().unwrap_or_default();
        assert_eq!(images.len(), 1, "{listed}");
        assert_eq!(images[0]["name"], "crpseedregistry00000/ubuntu/base");
        assert_eq!(images[0]["digest"], digest.as_str());
        assert_eq!(images[0]["tags"], serde_json::json!(["22.04"]));

        let compute =
            ComputeImageClient::new(yc_operations::ApiClient::rest(&server.url()).unwrap());
        let latest = compute
            .latest_by_family("standard-images", "ubuntu-2204-lts")
            .await
            .unwrap();
        assert_eq!(
            (latest.id.as_str(), latest.status),
            ("fd8seededimage000000", image::Status::Ready as i32)
        );
        assert_eq!(latest.size, 2_361_393_152);
        assert_eq!(latest.min_disk_size, 2_361_393_152);
        let stored = compute.get("fd8storedimage000000").await.unwrap();
        assert_eq!(stored.min_disk_size, 4_294_967_296, "{stored:?}");
    }
}

#[tokio::test]
async fn reflection_lists_every_service_and_health_answers() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut reflection = ServerReflectionClient::new(channel(&server).await);
    let ask = |request| {
        futures_util::stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        }])
    };
    let mut answers = reflection
        .server_reflection_info(ask(MessageRequest::ListServices(String::new())))
        .await
        .unwrap()
        .into_inner();
    let answer = answers
        .message()
        .await
        .unwrap()
        .and_then(|a| a.message_response);
    let Some(MessageResponse::ListServicesResponse(list)) = answer else {
        panic!("no service list: {answer:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "yandex.cloud.containerregistry.v1.ImageService",
        "yandex.cloud.compute.v1.ImageService",
        "yandex.cloud.operation.OperationService",
        "yandex.cloud.endpoint.ApiEndpointService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} is not in {names:?}"
        );
    }
    let mut answers = reflection
        .server_reflection_info(ask(MessageRequest::FileContainingSymbol(
            "yandex.cloud.compute.v1.ImageService".into(),
        )))
        .await
        .unwrap()
        .into_inner();
    let answer = answers
        .message()
        .await
        .unwrap()
        .and_then(|a| a.message_response);
    assert!(
        matches!(answer, Some(MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty())
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&server).await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "yandex.cloud.compute.v1.ImageService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// Unauthenticated, the server listens only on loopback unless told otherwise.
#[test]
fn an_unauthenticated_server_stays_on_loopback_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = Server::refused("0.0.0.0:0", dir.path());
    assert!(
        stderr.contains("refusing to serve on 0.0.0.0:0 without authentication")
            && stderr.contains("--allow-unauthenticated"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("yc-images.sqlite").exists(),
        "nothing opened"
    );
    let allowed = Server::start_on("0.0.0.0:0", dir.path(), &["--allow-unauthenticated"]);
    assert!(
        allowed.address.starts_with("0.0.0.0:"),
        "{}",
        allowed.address
    );
    drop(allowed);
    // With an IAM file every call is authenticated, so any address will do.
    let iam = dir.path().join("iam.json");
    std::fs::write(&iam, r#"{"subjects": [{"id": "aje1", "tokens": ["t"]}]}"#).unwrap();
    let authenticated =
        Server::start_on("0.0.0.0:0", dir.path(), &["--iam", &iam.to_string_lossy()]);
    assert!(authenticated.address.starts_with("0.0.0.0:"));
}

#[test]
fn a_second_server_on_one_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path());
    let stderr = Server::refused("127.0.0.1:0", dir.path());
    assert!(
        stderr.contains("another yc-images is using the data directory"),
        "{stderr}"
    );
    first.kill();
    // Once the first is gone, the directory is free again.
    Server::start(dir.path()).kill();
}

#[tokio::test]
async fn a_data_dir_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Server::start(dir.path()).kill();
    let database = dir.path().join("yc-images.sqlite");
    let db = yc_sql::Db::sqlite_file(&database, 1).await.unwrap();
    db.execute(&yc_sql::query(
        "UPDATE yc_schema SET version = 99 WHERE component = 'compute-image'",
    ))
    .await
    .unwrap();
    db.close().await;

    let stderr = Server::refused("127.0.0.1:0", dir.path());
    assert!(
        stderr.contains("schema version 99, newer than this server's 3; run a newer yc-images"),
        "{stderr}"
    );
}

#[test]
fn serve_help_explains_every_option() {
    let output = Command::new(env!("CARGO_BIN_EXE_yc-images"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--listen",
        "YC_IMAGES_LISTEN",
        "--data-dir",
        "YC_IMAGES_DATA_DIR",
        "--fetch-allow",
        "--seed",
        "--database-url",
        "YC_IMAGES_DATABASE_URL",
        "--operation-lease",
        "--allow-unauthenticated",
        "--iam",
        "--tls-cert",
        "--tls-key",
        "--tls",
    ] {
        assert!(
            help.contains(option),
            "--help does not mention {option}:\n{help}"
        );
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    server.terminate();
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = server.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        exited.is_some_and(|s| s.success()),
        "the server did not exit cleanly: {exited:?}"
    );
    // The store was closed cleanly: the next start opens it at once.
    let again = Server::start(dir.path());
    let health = reqwest::get(format!("{}/healthz", again.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A disk image served once slowly (the first request hangs until the test ends) and then at
/// once: an operation fetching it stays running on the replica that started it.
async fn stalling_file_server() -> String {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stalled = std::sync::Arc::new(AtomicBool::new(false));
    let router = axum::Router::new().route(
        "/disk.raw",
        axum::routing::get(move || {
            let stalled = stalled.clone();
            async move {
                if !stalled.swap(true, Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                vec![7u8; 1 << 20]
            }
        }),
    );
    format!("{}/disk.raw", crate::support::serve_router(router).await)
}

/// Two `yc-images serve` on one PostgreSQL database: what one creates the other reads, lists
/// (a page token from one continues on the other) and waits for; an idempotency key taken
/// through one is honoured by the other; and when the replica running an operation is killed,
/// the other takes it over once the lease runs out and finishes it, once.
#[tokio::test]
async fn two_replicas_share_one_postgres_database() {
    let Some(pg) = yc_sql::TestPostgres::fresh().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = ["--database-url", pg.url.as_str(), "--operation-lease", "2"];
    let one = Server::start_with(dir.path(), &shared);
    let two = Server::start_with(dir.path(), &shared);
    assert!(
        !dir.path().join("yc-images.sqlite").exists(),
        "no embedded store"
    );
    let uri = file_server().await;

    // Created through one (gRPC), waited for and read through two (gRPC and REST).
    let through_one = ComputeImageClient::new(
        yc_operations::ApiClient::grpc(channel(&one).await).with_wait_policy(fast()),
    );
    let through_two = ComputeImageClient::new(
        yc_operations::ApiClient::grpc(channel(&two).await).with_wait_policy(fast()),
    );
    let rest_two = ComputeImageClient::new(
        yc_operations::ApiClient::rest(&two.url())
            .unwrap()
            .with_wait_policy(fast()),
    );
    let mut created = Vec::new();
    for n in 0..5 {
        let operation = through_one
            .create(&CreateImageRequest {
                folder_id: "b1gshared".into(),
                name: format!("image-{n}"),
                family: "shared".into(),
                source: Some(Source::Uri(uri.clone())),
                ..Default::default()
            })
            .await
            .unwrap();
        let waiter =
            yc_operations::OperationWaiter::new(OperationServiceClient::new(channel(&two).await))
                .with_policy(fast());
        let done = waiter.wait_done(operation.clone()).await.unwrap();
        assert!(done.done, "{done:?}");
        let image = rest_two.get(&operation_image_id(&operation)).await.unwrap();
        assert_eq!(image.status, image::Status::Ready as i32);
        created.push(image);
    }
    let latest = through_two
        .latest_by_family("b1gshared", "shared")
        .await
        .unwrap();
    assert_eq!(Some(&latest), created.last());

    // A page token from one continues on two.
    let request = yc_proto_types::yandex::cloud::compute::v1::ListImagesRequest {
        folder_id: "b1gshared".into(),
        page_size: 2,
        order_by: "name desc".into(),
        ..Default::default()
    };
    let first = through_one.list(&request).await.unwrap();
    let second = through_two
        .list(
            &yc_proto_types::yandex::cloud::compute::v1::ListImagesRequest {
                page_token: first.next_page_token.clone(),
                ..request.clone()
            },
        )
        .await
        .unwrap();
    let names: Vec<&str> = first
        .images
        .iter()
        .chain(&second.images)
        .map(|i| i.name.as_str())
        .collect();
    assert_eq!(names, ["image-4", "image-3", "image-2", "image-1"]);

    // One idempotency key, through both replicas: one operation.
    let http = reqwest::Client::new();
    let mut operation_ids = Vec::new();
    for server in [&one, &two] {
        let answer: serde_json::Value = http
            .post(format!("{}/compute/v1/images", server.url()))
            .header("Idempotency-Key", "3f1c7c1e-2d2b-4b8e-9d2a-6f0a1b2c3d4e")
            .header("content-type", "application/json")
            .body(
                serde_json::json!({
                    "folderId": "b1gshared",
                    "name": "keyed",
                    "uri": uri,
                })
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap_or_default())
            .unwrap();
        operation_ids.push(answer["id"].as_str().unwrap_or_default().to_owned());
    }
    assert!(!operation_ids[0].is_empty(), "{operation_ids:?}");
    assert_eq!(operation_ids[0], operation_ids[1]);

    // A create running on one when it is killed: two takes it over and finishes it, once.
    let stalling = stalling_file_server().await;
    let operation = through_one
        .create(&CreateImageRequest {
            folder_id: "b1gshared".into(),
            name: "taken-over".into(),
            source: Some(Source::Uri(stalling)),
            ..Default::default()
        })
        .await
        .unwrap();
    let image_id = operation_image_id(&operation);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = through_two.get(&image_id).await.unwrap();
    assert_eq!(running.status, image::Status::Creating as i32);
    one.kill();
    let waiter =
        yc_operations::OperationWaiter::new(OperationServiceClient::new(channel(&two).await))
            .with_policy(WaitPolicy {
                timeout: Some(Duration::from_secs(30)),
                ..fast()
            });
    let done = waiter.wait_done(operation.clone()).await.unwrap();
    assert!(
        matches!(
            done.result,
            Some(yc_proto_types::yandex::cloud::operation::operation::Result::Response(_))
        ),
        "{done:?}"
    );
    let finished = through_two.get(&image_id).await.unwrap();
    assert_eq!(finished.status, image::Status::Ready as i32);
    let operations = through_two
        .list_operations(
            &yc_proto_types::yandex::cloud::compute::v1::ListImageOperationsRequest {
                image_id: image_id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(operations.operations.len(), 1);
    assert_eq!(operations.operations[0], done);
    drop(two);
    pg.drop_schema().await;
}

/// The image id in a Create operation's metadata.
fn operation_image_id(operation: &yc_proto_types::yandex::cloud::operation::Operation) -> String {
    let metadata = operation.metadata.clone().unwrap_or_default();
    metadata
        .to_msg::<yc_proto_types::yandex::cloud::compute::v1::CreateImageMetadata>()
        .map(|m| m.image_id)
        .unwrap()
}

/// Every RPC of both ImageServices and OperationService over REST, against the real binary,
/// with the typed REST clients and plain HTTP: on the embedded store, and on PostgreSQL when
/// one is reachable.
#[tokio::test]
async fn every_rpc_over_rest_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_dir(dir.path());
    let embedded = Server::start_with(dir.path(), &["--seed", &seed]);
    every_rpc_over_rest(&embedded).await;
    drop(embedded);
    if let Some(pg) = yc_sql::TestPostgres::fresh().await {
        let shared = Server::start_with(dir.path(), &["--seed", &seed, "--database-url", &pg.url]);
        every_rpc_over_rest(&shared).await;
        drop(shared);
        pg.drop_schema().await;
    }
}

/// A seed directory with one registry holding one image layout.
fn seed_dir(dir: &Path) -> String {
    let seed = dir.join("seed");
    let registry = seed.join("container-registry/crprestregistry00000");
    if !registry.exists() {
        std::fs::create_dir_all(&registry).unwrap();
        std::fs::write(
            registry.join("registry.json"),
            r#"{"folderId":"b1grest","name":"main"}"#,
        )
        .unwrap();
        write_layout(&registry.join("app"), "rest", "v1");
    }
    seed.to_string_lossy().into_owned()
}

async fn every_rpc_over_rest(server: &Server) {
    use yc_proto_types::google::protobuf::FieldMask;
    use yc_proto_types::yandex::cloud::compute::v1::{
        ListImageOperationsRequest, ListImagesRequest, UpdateImageRequest,
    };
    use yc_proto_types::yandex::cloud::containerregistry::v1 as cr;

    let uri = file_server().await;
    let compute = ComputeImageClient::new(
        yc_operations::ApiClient::rest(&server.url())
            .unwrap()
            .with_wait_policy(fast()),
    );
    let registry = yc_registry_image::client::RegistryImageClient::new(
        yc_operations::ApiClient::rest(&server.url())
            .unwrap()
            .with_wait_policy(fast()),
    );
    let http = reqwest::Client::new();

    // Compute: Create, Get, GetLatestByFamily, List, Update, ListOperations, Delete.
    let mut created = Vec::new();
    for name in ["rest-one", "rest-two"] {
        created.push(
            compute
                .create_and_wait(&CreateImageRequest {
                    folder_id: "b1grest".into(),
                    name: name.into(),
                    family: "rest".into(),
                    source: Some(Source::Uri(uri.clone())),
                    ..Default::default()
                })
                .await
                .unwrap(),
        );
    }
    assert!(
        created
            .iter()
            .all(|i| i.status == image::Status::Ready as i32)
    );
    assert_eq!(
        compute.get(&created[0].id).await.ok().as_ref(),
        Some(&created[0])
    );
    let latest = compute.latest_by_family("b1grest", "rest").await.unwrap();
    assert!(created.contains(&latest));
    let page = compute
        .list(&ListImagesRequest {
            folder_id: "b1grest".into(),
            filter: r#"name = "rest-two""#.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.images, [created[1].clone()]);
    let updated = compute
        .update_and_wait(&UpdateImageRequest {
            image_id: created[0].id.clone(),
            update_mask: Some(FieldMask {
                paths: vec!["description".into()],
            }),
            description: "over REST".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(updated.description, "over REST");
    let operations = compute
        .list_operations(&ListImageOperationsRequest {
            image_id: created[0].id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(operations.operations.len(), 2, "create and update");
    assert!(operations.operations.iter().all(|o| o.done));

    // OperationService: Get, and Cancel of an operation that is done.
    let operation_id = &operations.operations[0].id;
    let got = http
        .get(format!("{}/operations/{operation_id}", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let cancel = http
        .post(format!("{}/operations/{operation_id}:cancel", server.url()))
        .send()
        .await
        .unwrap();
    let status = cancel.status();
    let body: serde_json::Value = cancel
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap_or_default())
        .unwrap();
    // Cancelling a done operation changes nothing and answers it as it is.
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["done"], true, "{body}");
    assert_eq!(body["id"], operation_id.as_str(), "{body}");

    compute.delete_and_wait(&created[1].id).await.unwrap();
    let gone = compute
        .get(&created[1].id)
        .await
        .err()
        .map(|e| e.grpc_code());
    assert_eq!(gone, Some(tonic::Code::NotFound));

    // Registry: List, Get, Delete.
    let listed = registry
        .list(&cr::ListImagesRequest {
            folder_id: "b1grest".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.images.len(), 1, "{listed:?}");
    let seeded = &listed.images[0];
    assert_eq!(seeded.tags, ["v1".to_owned()]);
    assert_eq!(registry.get(&seeded.id).await.ok().as_ref(), Some(seeded));
    registry.delete_and_wait(&seeded.id).await.unwrap();
    let gone = registry.get(&seeded.id).await.err().map(|e| e.grpc_code());
    assert_eq!(gone, Some(tonic::Code::NotFound));

    // Bad input: the field named, the right HTTP status.
    let bad = http
        .get(format!(
            "{}/compute/v1/images/{}",
            server.url(),
            "x".repeat(51)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap_or_default())
        .unwrap();
    assert_eq!(
        body["message"],
        "Request validation error: image_id: length must be at most 50"
    );
}

/// Every call is logged once, in its span (request id, trace id, method, caller), with its
/// HTTP method, path, HTTP status, gRPC status and latency; the ids are those of the answer's
/// headers; and the lines queued for the log thread are written out when the server stops.
#[tokio::test]
async fn every_call_is_logged_in_its_span() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server::launch(
        Server::command("127.0.0.1:0", &dir.path().join("data"), &[])
            .env("YC_IMAGES_LOG", "info")
            .stderr(log),
    );

    let http = reqwest::Client::new();
    let mut traces = Vec::new();
    for n in 0..50 {
        let answer = http
            .get(format!(
                "{}/compute/v1/images/fd8missing{n:010}",
                server.url()
            ))
            .header("x-request-id", format!("logged-rest-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
        let trace = answer.headers()["x-server-trace-id"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        traces.push(trace);
    }
    let grpc = ComputeImageClient::new(yc_operations::ApiClient::grpc(channel(&server).await));
    let missing = grpc
        .get("fd8missing0000000000")
        .await
        .err()
        .map(|e| e.grpc_code());
    assert_eq!(missing, Some(tonic::Code::NotFound));

    let text = stop_and_read_log(server, &log_path).await;
    let calls: Vec<&str> = text.lines().filter(|l| l.contains(" call ")).collect();
    assert_eq!(calls.len(), 51, "{text}");
    for (n, trace) in traces.iter().enumerate() {
        let line = calls
            .iter()
            .find(|l| l.contains(&format!("call{{request_id=logged-rest-{n} ")))
            .unwrap_or_else(|| panic!("no line for call {n}:\n{text}"));
        assert!(line.contains(&format!(" trace_id={trace} ")), "{line}");
        assert!(line.contains(" caller=anonymous"), "{line}");
        assert!(
            line.contains(" method=/yandex.cloud.compute.v1.ImageService/Get"),
            "{line}"
        );
        assert!(line.contains(" http_method=GET"), "{line}");
        assert!(line.contains(" status=404"), "{line}");
        assert!(line.contains(" latency_ms="), "{line}");
    }
    let grpc_line = calls
        .iter()
        .find(|l| !l.contains("http_method="))
        .unwrap_or_else(|| panic!("no gRPC line:\n{text}"));
    assert!(
        grpc_line.contains(" method=/yandex.cloud.compute.v1.ImageService/Get "),
        "{grpc_line}"
    );
    assert!(grpc_line.contains(" grpc_status=5 "), "{grpc_line}");
    assert!(grpc_line.contains("call{request_id="), "{grpc_line}");

    // Whole lines, as tracing-subscriber's default format writes an event in a span.
    let time = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z";
    // A REST call's method is in its span from the start, as a gRPC call's: the call layer
    // finds its route as the call comes in.
    let method = r"method=/yandex\.cloud\.compute\.v1\.ImageService/Get";
    let span =
        format!(r"call\{{request_id=[^ ]+ trace_id=[0-9a-f-]{{36}} {method} caller=anonymous\}}");
    let rest = regex::Regex::new(&format!(
        r"^{time}  INFO {span}: yc_images::serve::calls: call http_method=GET path=/compute/v1/images/fd8missing\d{{10}} status=404 latency_ms=\d+\.\d{{3}}$"
    ))
    .unwrap();
    let grpc = regex::Regex::new(&format!(
        r"^{time}  INFO {span}: yc_images::serve::calls: call status=200 grpc_status=5 latency_ms=\d+\.\d{{3}}$"
    ))
    .unwrap();
    for line in &calls {
        assert!(rest.is_match(line) || grpc.is_match(line), "{line}");
    }
}

/// Stops the server and returns its log.
async fn stop_and_read_log(server: Server, log_path: &Path) -> String {
    server.terminate();
    let mut server = server;
    for _ in 0..100 {
        if server.child.try_wait().ok().flatten().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::read_to_string(log_path).unwrap()
}

/// `--log-format json`: one JSON object per line; a call's line holds its span with the
/// request id, trace id, method and caller, and what happened in the call's fields.
#[tokio::test]
async fn json_logs_carry_the_call_span() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server::launch(
        Server::command(
            "127.0.0.1:0",
            &dir.path().join("data"),
            &["--log-format", "json"],
        )
        .env("YC_IMAGES_LOG", "info")
        .stderr(log),
    );
    let answer = reqwest::Client::new()
        .get(format!(
            "{}/compute/v1/images?folderId=b1gjson",
            server.url()
        ))
        .header("x-request-id", "json-call-1")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let trace = answer.headers()["x-server-trace-id"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let text = stop_and_read_log(server, &log_path).await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let call = lines
        .iter()
        .find(|l| l["fields"]["message"] == "call")
        .unwrap_or_else(|| panic!("no call line:\n{text}"));
    let span = &call["spans"][0];
    assert_eq!(span["name"], "call", "{call}");
    assert_eq!(span["request_id"], "json-call-1", "{call}");
    assert_eq!(span["trace_id"], trace.as_str(), "{call}");
    assert_eq!(
        span["method"], "/yandex.cloud.compute.v1.ImageService/List",
        "{call}"
    );
    assert_eq!(span["caller"], "anonymous", "{call}");
    assert_eq!(call["fields"]["status"], 200, "{call}");
}

/// `GET /metrics`: calls by method, transport and code; a method nobody defined is counted
/// as `unknown`, whatever path the client made up, so the number of series stays bounded;
/// operations running, database connections and blob bytes are there.
#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let answer = http
            .get(format!(
                "{}/compute/v1/images/fd8missing0000000000",
                server.url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
    }
    let grpc = ComputeImageClient::new(yc_operations::ApiClient::grpc(channel(&server).await));
    assert!(grpc.get("fd8missing0000000000").await.is_err());
    // Made-up gRPC methods and REST paths.
    let mut raw = tonic::client::Grpc::new(channel(&server).await);
    for n in 0..20 {
        raw.ready().await.unwrap();
        let path = format!("/yandex.cloud.compute.v1.ImageService/Made{n}")
            .parse::<axum::http::uri::PathAndQuery>()
            .unwrap();
        let codec = tonic_prost::ProstCodec::<
            yc_proto_types::google::protobuf::Empty,
            yc_proto_types::google::protobuf::Empty,
        >::default();
        let refused = raw
            .unary(
                tonic::Request::new(yc_proto_types::google::protobuf::Empty {}),
                path,
                codec,
            )
            .await
            .err()
            .map(|e| e.code());
        assert_eq!(refused, Some(tonic::Code::Unimplemented));
        let answer = http
            .get(format!("{}/made/up/{n}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
    }
    let answer = http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    let get = "/yandex.cloud.compute.v1.ImageService/Get";
    assert_eq!(
        value(&format!(
            "yc_images_calls_total{{method=\"{get}\",transport=\"rest\",code=\"NOT_FOUND\"}}"
        )),
        3.0
    );
    assert_eq!(
        value(&format!(
            "yc_images_calls_total{{method=\"{get}\",transport=\"grpc\",code=\"NOT_FOUND\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(
            "yc_images_calls_total{method=\"unknown\",transport=\"grpc\",code=\"UNIMPLEMENTED\"}"
        ),
        20.0
    );
    assert_eq!(
        value("yc_images_calls_total{method=\"unknown\",transport=\"rest\",code=\"NOT_FOUND\"}"),
        20.0
    );
    assert!(!text.contains("Made1"), "{text}");
    assert!(!text.contains("/made/up"), "{text}");
    assert_eq!(
        value(&format!(
            "yc_images_call_duration_seconds_count{{method=\"{get}\",transport=\"rest\"}}"
        )),
        3.0
    );
    assert_eq!(value("yc_images_operations_running"), 0.0);
    assert!(value("yc_images_db_connections{state=\"idle\"}") >= 0.0);
    assert_eq!(value("yc_images_blob_bytes_total{direction=\"in\"}"), 0.0);
}

/// A TLS connection to `server` that trusts `ca` and offers `alpn`.
async fn tls_connect(
    server: &Server,
    ca: &Path,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(&server.address)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake: {e}"))
}

/// `--tls`: a CA and a certificate for this machine made once in the data directory, the CA's
/// path printed; gRPC clients get HTTP/2 by ALPN, REST clients HTTP/1.1, a client that trusts
/// the CA verifies the server as 127.0.0.1, and a restart keeps the same CA.
#[tokio::test]
async fn tls_with_a_certificate_made_for_this_machine() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("tls/ca.pem");
    let server = Server::start_with(dir.path(), &["--tls"]);
    assert_eq!(
        server.preamble,
        [format!("yc-images TLS CA certificate: {}", ca.display())]
    );
    let first_ca = std::fs::read(&ca).unwrap();

    let h2 = tls_connect(&server, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let mut http1 = tls_connect(&server, &ca, &[b"http/1.1"]).await;
    http1
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    http1.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");

    // Plaintext to a TLS address gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("{}/healthz", server.url()))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    drop(server);
    let again = Server::start_with(dir.path(), &["--tls"]);
    assert_eq!(std::fs::read(&ca).unwrap(), first_ca, "the CA is kept");
    drop(again);
}

/// Every `google.api.http` rule of the schema, called over REST against the real server as a
/// client builds the call from the rule: each reaches its service (an answer of the method,
/// not the router's "No route" or 405), so that a method added to a proto with a rule is
/// served with nothing else written.
#[tokio::test]
async fn every_http_rule_of_the_schema_is_served_over_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let http = reqwest::Client::new();
    let rules = yc_proto_types::rpc::every_http_rule();
    let mut called = 0;
    for (method, rules) in &rules {
        for rule in *rules {
            // Path fields get a value that names nothing; everything else is left empty.
            let mut request = serde_json::Map::new();
            for segment in rule.template().segments() {
                if let yc_proto_types::rpc::Segment::Field(field) = segment {
                    request.insert(field.clone(), "fd8nosuchthing000000".into());
                }
            }
            let call = rule
                .request(&serde_json::Value::Object(request))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            let mut builder = http.request(
                call.method.clone(),
                format!("{}{}", server.url(), call.path),
            );
            if let Some(body) = call.body {
                builder = builder
                    .header("content-type", "application/json")
                    .body(body);
            }
            let response = builder.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            let json: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{method}: {e}"));
            let message = json["message"].as_str().unwrap_or_default();
            assert!(
                status != 405 && !message.starts_with("No route"),
                "{method} by {} {}: {status} {json}",
                call.method,
                rule.template()
            );
            assert!(
                (200..500).contains(&status),
                "{method} by {} {}: {status} {json}",
                call.method,
                rule.template()
            );
            called += 1;
        }
    }
    // Every RPC of the image, registry, repository and operation services, discovery and
    // IAM tokens; Cancel has two rules.
    assert_eq!(
        rules.len(),
        32,
        "{:?}",
        rules.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    assert_eq!(called, 33);
}
