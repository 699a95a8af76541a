//! The registry ImageService over real sockets: gRPC and REST give the same answers, the REST
//! JSON is the canonical JSON of the gRPC answer, and the typed client works over both.

use std::sync::Arc;
use std::time::Duration;

use crate::support::TestImage;
use futures_util::TryStreamExt;
use serde_json::Value;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Server, server::TcpIncoming};
use yc_operations::{MemoryOperationStore, OperationGrpc, OperationRunner, WaitPolicy};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::containerregistry::v1::image_service_client::ImageServiceClient;
use yc_proto_types::yandex::cloud::containerregistry::v1::{GetImageRequest, ListImagesRequest};
use yc_registry_image::client::RegistryImageClient;
use yc_registry_image::oci::ImageManifest;
use yc_registry_image::store::Registry;
use yc_registry_image::{ApiClient, Caller, RegistryImageGrpc, RegistryImages, SqlImageStore};

struct Fixture {
    images: RegistryImages,
    grpc: ImageServiceClient<Channel>,
    channel: Channel,
    base: String,
}

async fn serve() -> Fixture {
    let store = SqlImageStore::in_memory().await.unwrap();
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    let images = RegistryImages::new(Arc::new(store), runner.clone());
    let registry = Registry {
        id: "crp1".into(),
        folder_id: "b1gfolder".into(),
        name: "main".into(),
        ..Default::default()
    };
    images.ensure_registry(&registry).await.unwrap();
    for (repo, seed, tag) in [
        ("crp1/app", "one", Some("latest")),
        ("crp1/app", "two", Some("v2")),
        ("crp1/web", "three", None),
    ] {
        let manifest = TestImage::new(
            seed,
            &[("base", b"shared base"), ("layer", seed.as_bytes())],
        )
        .manifest;
        let manifest = ImageManifest::parse(manifest).unwrap();
        images.push(repo, &manifest, tag).await.unwrap();
    }

    let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc_listener.local_addr().unwrap();
    let (image_service, operation_service) = (
        RegistryImageGrpc::server(images.clone()),
        OperationGrpc::server(runner.clone()),
    );
    tokio::spawn(async move {
        let incoming = TcpIncoming::from(grpc_listener);
        let _ = Server::builder()
            .layer(yc_api_runtime::PrincipalLayer::new(
                yc_api_runtime::Principal::anonymous(),
            ))
            .add_service(image_service)
            .add_service(operation_service)
            .serve_with_incoming(incoming)
            .await;
    });
    let rest_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest_addr = rest_listener.local_addr().unwrap();
    let router = yc_api_runtime::rest::router([
        RegistryImageGrpc::rest(images.clone()),
        yc_operations::OperationGrpc::rest(runner),
    ])
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
        images,
        grpc: ImageServiceClient::new(channel.clone()),
        channel,
        base: format!("http://{rest_addr}"),
    }
}

async fn rest_get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{url}: {e}")),
    )
}

fn query_of(request: &ListImagesRequest) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    let page_size = request.page_size.to_string();
    for (k, v) in [
        ("registryId", request.registry_id.as_str()),
        ("repositoryName", &request.repository_name),
        ("folderId", &request.folder_id),
        ("pageSize", &page_size),
        ("pageToken", &request.page_token),
        ("filter", &request.filter),
        ("orderBy", &request.order_by),
    ] {
        if !v.is_empty() && v != "0" {
            url.query_pairs_mut().append_pair(k, v);
        }
    }
    url.query().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn rest_answers_are_the_canonical_json_of_the_grpc_answers() {
    let f = serve().await;
    let requests = [
        ListImagesRequest {
            registry_id: "crp1".into(),
            ..Default::default()
        },
        ListImagesRequest {
            repository_name: "crp1/app".into(),
            order_by: "created_at desc".into(),
            ..Default::default()
        },
        ListImagesRequest {
            folder_id: "b1gfolder".into(),
            filter: r#"name IN ("crp1/web")"#.into(),
            ..Default::default()
        },
        ListImagesRequest {
            registry_id: "crp1".into(),
            page_size: 1,
            ..Default::default()
        },
        ListImagesRequest {
            registry_id: "crp1".into(),
            filter: "size = '1'".into(),
            ..Default::default()
        },
        ListImagesRequest {
            registry_id: "crp1".into(),
            page_size: 1001,
            ..Default::default()
        },
        ListImagesRequest::default(),
    ];
    for request in requests {
        let grpc = f.grpc.clone().list(request.clone()).await;
        let (http, json) = rest_get(&format!(
            "{}/container-registry/v1/images?{}",
            f.base,
            query_of(&request)
        ))
        .await;
        match grpc {
            Ok(answer) => {
                assert_eq!(http, 200, "{request:?}");
                let answer = answer.into_inner();
                // Page tokens are bound to the query, not the transport: equal too.
                assert_eq!(
                    json,
                    serde_json::to_value(&answer).unwrap_or_default(),
                    "{request:?}"
                );
            }
            Err(error) => {
                let status = Status::from(error);
                assert_eq!(http, status.http_status(), "{request:?}");
                assert_eq!(json["code"], status.code, "{request:?}");
                assert_eq!(json["message"], status.message.as_str(), "{request:?}");
            }
        }
    }
    let any = f
        .images
        .list(
            &ListImagesRequest {
                registry_id: "crp1".into(),
                ..Default::default()
            },
            &Caller::system(),
        )
        .await;
    let id = any.map(|r| r.images[0].id.clone()).unwrap_or_default();
    let grpc = f
        .grpc
        .clone()
        .get(GetImageRequest {
            image_id: id.clone(),
        })
        .await
        .map(|r| r.into_inner());
    let (http, json) = rest_get(&format!("{}/container-registry/v1/images/{id}", f.base)).await;
    assert_eq!(http, 200);
    assert_eq!(
        json,
        serde_json::to_value(grpc.unwrap_or_default()).unwrap_or_default()
    );
}

#[tokio::test]
async fn query_parameters_take_snake_case_too() {
    let f = serve().await;
    let camel = rest_get(&format!(
        "{}/container-registry/v1/images?registryId=crp1&pageSize=2&orderBy=digest",
        f.base
    ))
    .await;
    let snake = rest_get(&format!(
        "{}/container-registry/v1/images?registry_id=crp1&page_size=2&order_by=digest",
        f.base
    ))
    .await;
    assert_eq!(camel.0, 200);
    assert_eq!(camel, snake);
    let bad = rest_get(&format!(
        "{}/container-registry/v1/images?registryId=crp1&pageSize=lots",
        f.base
    ))
    .await;
    assert_eq!(bad.0, 400);
}

/// Replaces what differs from run to run (image ids, times) with placeholders.
fn redact(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, field) in map.iter_mut() {
                    match key.as_str() {
                        "createdAt" => *field = Value::String("[time]".into()),
                        "id" if field
                            .as_str()
                            .is_some_and(|s| s.starts_with("crp") && s.len() == 20) =>
                        {
                            // Blob ids are derived from content; image ids are random.
                        }
                        _ => walk(field),
                    }
                }
                if map.contains_key("digest") && map.contains_key("name") {
                    map.insert("id".into(), Value::String("[image id]".into()));
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
    let (_, list) = rest_get(&format!(
        "{}/container-registry/v1/images?repositoryName=crp1/app&orderBy=digest",
        f.base
    ))
    .await;
    insta::assert_json_snapshot!("rest_list_repository", redact(list));
    let (status, missing) = rest_get(&format!(
        "{}/container-registry/v1/images/crpnosuchimage000000",
        f.base
    ))
    .await;
    assert_eq!(status, 404);
    insta::assert_json_snapshot!("rest_get_not_found", missing);
    let (status, invalid) = rest_get(&format!(
        "{}/container-registry/v1/images?registryId=crp1&filter=name%20~%20%27x%27",
        f.base
    ))
    .await;
    assert_eq!(status, 400);
    insta::assert_json_snapshot!("rest_list_bad_filter", invalid);
}

#[tokio::test]
async fn the_typed_client_works_the_same_over_both_transports() {
    let f = serve().await;
    let fast = WaitPolicy {
        initial_interval: Duration::from_millis(5),
        max_interval: Duration::from_millis(20),
        ..WaitPolicy::default()
    };
    let clients = [
        (
            "grpc",
            RegistryImageClient::new(
                ApiClient::grpc(f.channel.clone()).with_wait_policy(fast.clone()),
            ),
        ),
        (
            "rest",
            RegistryImageClient::new(ApiClient::rest(&f.base).unwrap().with_wait_policy(fast)),
        ),
    ];
    let request = ListImagesRequest {
        registry_id: "crp1".into(),
        page_size: 1,
        order_by: "digest".into(),
        ..Default::default()
    };
    let mut answers = Vec::new();
    for (name, client) in &clients {
        let all: Vec<_> = client
            .list_all(request.clone())
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(all.len(), 3, "{name}: every page");
        let one = client
            .get(&all[0].id)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(one, all[0], "{name}");
        let missing = client
            .get("crpnosuchimage000000")
            .await
            .err()
            .unwrap_or_default();
        assert_eq!(
            (missing.grpc_code(), missing.message.as_str()),
            (
                tonic::Code::NotFound,
                "Image crpnosuchimage000000 not found"
            ),
            "{name}"
        );
        answers.push(all);
    }
    assert_eq!(answers[0], answers[1]);

    // Each transport deletes one image and waits for it to be gone.
    for ((name, client), image) in clients.iter().zip(&answers[0]) {
        client
            .delete_and_wait(&image.id)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let gone = client.get(&image.id).await.err().map(|e| e.grpc_code());
        assert_eq!(gone, Some(tonic::Code::NotFound), "{name}");
    }
    let left: Vec<_> = clients[0]
        .1
        .list_all(request)
        .try_collect()
        .await
        .unwrap_or_default();
    assert_eq!(left.len(), 1);
}

/// Every snapshot in `tests/it/snapshots` is one a test takes.
#[test]
fn no_unreferenced_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots");
    let known = [
        "it__transport__rest_list_repository.snap",
        "it__transport__rest_get_not_found.snap",
        "it__transport__rest_list_bad_filter.snap",
    ];
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            known.contains(&name.as_str()),
            "unreferenced snapshot {name}"
        );
    }
}
