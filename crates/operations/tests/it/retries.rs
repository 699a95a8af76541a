//! What every call of `ApiClient` carries, and its retries: a request id and a user agent on
//! every call, an idempotency key on a call that starts an operation, and a call answered
//! `UNAVAILABLE` tried again with the same id and key, against a server that records them.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use yc_operations::ApiClient;
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, GetImageRequest, image_service_rpc,
};

/// The headers of each request, in order.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// Serves the compute image routes over REST: the first `failures` answers of each route are
/// 503 `UNAVAILABLE`, then an operation (Create) or an image (Get).
async fn server(failures: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let answer = |seen: Seen, body: &'static str| {
        move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let count = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(headers);
                    seen.len()
                };
                if count <= failures {
                    let error = r#"{"code": 14, "message": "try again"}"#;
                    return (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        error.to_owned(),
                    );
                }
                (axum::http::StatusCode::OK, body.to_owned())
            }
        }
    };
    let router = axum::Router::new()
        .route(
            "/compute/v1/images",
            axum::routing::post(answer(seen.clone(), r#"{"id": "fd8op", "done": false}"#)),
        )
        .route(
            "/compute/v1/images/{id}",
            axum::routing::get(answer(seen.clone(), r#"{"id": "fd8image"}"#)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{address}"), seen)
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn a_mutation_is_retried_with_the_same_idempotency_key() {
    let (url, seen) = server(2).await;
    let api = ApiClient::rest(&url).unwrap();
    let op = api
        .call(image_service_rpc::CREATE, CreateImageRequest::default())
        .await
        .unwrap();
    assert_eq!(op.id, "fd8op");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two UNAVAILABLE answers, then the operation");
    let key = header(&seen[0], "idempotency-key");
    let id = header(&seen[0], "x-client-request-id");
    assert_eq!(key.len(), 36, "a UUID: {key:?}");
    assert_eq!(id.len(), 36, "a UUID: {id:?}");
    assert_ne!(key, id);
    for headers in seen.iter() {
        assert_eq!(header(headers, "idempotency-key"), key);
        assert_eq!(header(headers, "x-client-request-id"), id);
        assert!(header(headers, "user-agent").starts_with("yc-images-rust/"));
    }
}

/// On paused time: the waits between retries (0.1 s, 0.4 s, 1.6 s) pass at once.
#[tokio::test(start_paused = true)]
async fn reads_carry_no_idempotency_key_and_give_up_after_the_retries() {
    let (url, seen) = server(usize::MAX).await;
    let api = ApiClient::rest(&url).unwrap();
    let error = api
        .call(
            image_service_rpc::GET,
            GetImageRequest {
                image_id: "fd8image".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.grpc_code(), tonic::Code::Unavailable);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1 + yc_operations::client::RETRIES as usize);
        assert!(seen.iter().all(|h| h.get("idempotency-key").is_none()));
    }

    // A new call is a new request id.
    let (url, seen) = server(0).await;
    let api = ApiClient::rest(&url).unwrap();
    for _ in 0..2 {
        let request = GetImageRequest {
            image_id: "fd8image".into(),
        };
        api.call(image_service_rpc::GET, request).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_ne!(
        header(&seen[0], "x-client-request-id"),
        header(&seen[1], "x-client-request-id")
    );
}
