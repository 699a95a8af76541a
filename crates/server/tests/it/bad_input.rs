//! Bad input for every RPC and every REST route of the real binary: malformed protobuf, JSON
//! that does not read, oversized fields and bodies, bad and forged tokens, paths and methods
//! that do not exist. Every answer is the API's error with the right code and a bounded
//! message (never an internal error, never HTTP 200 for a failure), and the process stays up
//! with flat memory.

use std::time::Duration;

use crate::support::{Server, seed_compute_image, seed_registry, start_seeded, write_iam};
use bytes::{Buf as _, BufMut as _};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

const FOLDER: &str = "b1gbadinput";
const REGISTRY: &str = "crpbadinput000000000";
const IMAGE: &str = "fd8badinputimage0000";
const TOKEN: &str = "editor-token";

fn start(dir: &std::path::Path) -> Server {
    let iam = dir.join("iam.json");
    write_iam(&iam, &[("ajeeditor00000000000", TOKEN, FOLDER, "editor")]);
    let seed = dir.join("seed");
    seed_registry(&seed, REGISTRY, FOLDER, "bad");
    seed_compute_image(&seed, IMAGE, FOLDER, "base");
    start_seeded(dir, &iam, &seed, &["--max-request-bytes", "1048576"])
}

/// Request bytes sent as they are, answers taken as they come.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.chunk().to_vec();
        src.advance(bytes.len());
        Ok(Some(bytes))
    }
}

/// Every unary RPC of the API's services, as gRPC paths.
fn grpc_methods() -> Vec<String> {
    let pool = yc_proto_types::descriptor_pool();
    let mut methods = Vec::new();
    for service in pool.services() {
        if !service.full_name().starts_with("yandex.cloud.") {
            continue;
        }
        for method in service.methods() {
            if !method.is_client_streaming() && !method.is_server_streaming() {
                methods.push(format!("/{}/{}", service.full_name(), method.name()));
            }
        }
    }
    assert!(methods.len() >= 14, "{methods:?}");
    methods
}

/// A varint, as protobuf writes it.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

/// Malformed and oversized protobuf requests.
fn bad_messages() -> Vec<(&'static str, Vec<u8>)> {
    let mut huge_string = vec![0x0a];
    huge_string.extend(varint(200_000));
    huge_string.extend(std::iter::repeat_n(b'a', 200_000));
    let mut nested = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0x0a];
        outer.extend(varint(nested.len() as u64));
        outer.extend(nested);
        nested = outer;
    }
    let mut many_fields = Vec::new();
    for n in 1..2000u64 {
        many_fields.extend(varint(n << 3 | 2));
        many_fields.extend([3, b'x', b'y', b'z']);
    }
    let noise: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        ("empty", Vec::new()),
        ("invalid UTF-8 in a string", vec![0x0a, 0x02, 0xff, 0xfe]),
        ("a truncated varint", vec![0x08, 0xff]),
        (
            "a length past the end",
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x07],
        ),
        ("a varint where a string goes", vec![0x08, 0x01]),
        ("a group", vec![0x0b, 0x0c]),
        ("field number 0", vec![0x02, 0x00]),
        ("a string of 200 kB", huge_string),
        ("messages nested 200 deep", nested),
        ("2,000 unknown fields", many_fields),
        ("noise", noise),
    ]
}

/// gRPC's checks on an error a caller gets: the API's code and a small message and details.
/// INTERNAL only where the gRPC spec says so (a request that is not protobuf: "Error parsing
/// request proto"), never UNKNOWN.
fn check_grpc_error(what: &str, status: &tonic::Status) {
    let unparsable = status.code() == tonic::Code::Internal
        && status
            .message()
            .starts_with("failed to decode Protobuf message");
    assert!(
        unparsable || !matches!(status.code(), tonic::Code::Internal | tonic::Code::Unknown),
        "{what}: {:?} {}",
        status.code(),
        status.message()
    );
    assert!(
        status.message().len() <= 1100,
        "{what}: {} bytes",
        status.message().len()
    );
    assert!(
        status.details().len() <= 4300,
        "{what}: {} bytes of details",
        status.details().len()
    );
}

async fn grpc_barrage(server: &Server) {
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let messages = bad_messages();
    for method in grpc_methods() {
        let path: tonic::codegen::http::uri::PathAndQuery =
            method.parse().unwrap_or_else(|e| panic!("{method}: {e}"));
        for (name, body) in &messages {
            for token in [
                Some(TOKEN),
                None,
                Some("forged-token"),
                Some(&*"t".repeat(4000)),
            ] {
                let mut grpc =
                    tonic::client::Grpc::new(channel.clone()).max_encoding_message_size(8 << 20);
                grpc.ready().await.unwrap();
                let mut request = tonic::Request::new(body.clone());
                if let Some(token) = token {
                    let value = format!("Bearer {token}").parse().unwrap();
                    request.metadata_mut().insert("authorization", value);
                }
                let what = format!(
                    "{method} with {name}, token {:?}",
                    token.map(|t| &t[..t.len().min(12)])
                );
                match grpc.unary(request, path.clone(), Raw).await {
                    // Only endpoint discovery, public and with no required field, takes these.
                    Ok(_) => assert!(method.contains("ApiEndpointService/List"), "{what}"),
                    Err(status) => {
                        check_grpc_error(&what, &status);
                        // Discovery and exchanging credentials need no token.
                        let public = method.contains("ApiEndpointService")
                            || method.ends_with("IamTokenService/Create")
                            || method.ends_with("IamTokenService/Revoke");
                        if token != Some(TOKEN) && !public {
                            assert_eq!(
                                status.code(),
                                tonic::Code::Unauthenticated,
                                "{what}: {status:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The REST routes, with `{id}` for an id in the path.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/compute/v1/images/{id}"),
    ("GET", "/compute/v1/images:latestByFamily"),
    ("GET", "/compute/v1/images"),
    ("POST", "/compute/v1/images"),
    ("PATCH", "/compute/v1/images/{id}"),
    ("DELETE", "/compute/v1/images/{id}"),
    ("GET", "/compute/v1/images/{id}/operations"),
    ("GET", "/container-registry/v1/images"),
    ("GET", "/container-registry/v1/images/{id}"),
    ("DELETE", "/container-registry/v1/images/{id}"),
    ("GET", "/operations/{id}"),
    ("GET", "/operations/{id}:cancel"),
    ("POST", "/operations/{id}:cancel"),
];

/// Answers of one REST call: the HTTP status, `x-request-id`, the body.
async fn rest(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, bool, Vec<u8>, bool) {
    let method: reqwest::Method = method.parse().unwrap();
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let answer = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = answer.status().as_u16();
    let has_id = answer.headers().contains_key("x-request-id");
    let json = answer
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = answer.bytes().await.unwrap_or_default().to_vec();
    (status, has_id, body, json)
}

async fn rest_barrage(server: &Server) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\xff not json".to_vec()),
        ("an open bracket", b"[".to_vec()),
        ("nested 100,000 deep", deep.into_bytes()),
        (
            "a number past f64",
            br#"{"folderId": 1e999, "minDiskSize": 1e999}"#.to_vec(),
        ),
        (
            "wrong types",
            br#"{"folderId": [], "labels": "x", "os": 7, "name": {}}"#.to_vec(),
        ),
        (
            "int64 past its range",
            br#"{"minDiskSize": "99999999999999999999999"}"#.to_vec(),
        ),
        (
            "a 700 kB name",
            format!(
                r#"{{"folderId": "{FOLDER}", "name": "{}"}}"#,
                "n".repeat(700_000)
            )
            .into_bytes(),
        ),
        ("10,000 labels", {
            let labels: serde_json::Map<String, serde_json::Value> = (0..10_000)
                .map(|n| (format!("BAD KEY {n}"), serde_json::Value::from("v")))
                .collect();
            serde_json::json!({"folderId": FOLDER, "labels": labels})
                .to_string()
                .into_bytes()
        }),
        ("2 MB", vec![b' '; 2 << 20]),
    ];
    let ids = [
        "fd8nosuchimage000000".to_owned(),
        "x".repeat(10_000),
        "%FF%FE".to_owned(),
        "..".to_owned(),
        "%2e%2e%2f%2e%2e".to_owned(),
        "ü🙂".to_owned(),
    ];
    let queries = [
        "",
        "folderId=b1gbadinput&pageSize=-1",
        "folderId=b1gbadinput&pageSize=99999999999999999999",
        "folderId=b1gbadinput&filter=%00%FF",
        "folderId=b1gbadinput&pageToken=forged",
        "folderId=b1gbadinput&orderBy=nope%20sideways",
        "folderId=b1gbadinput&filter=name%20IN%20(",
        "registryId=crpnosuchregistry000",
    ];
    let base = server.url();
    let mut checked = 0;
    for (method, route) in ROUTES {
        for id in &ids {
            let path = route.replace("{id}", id);
            let with_query: Vec<String> = if *method == "GET" && !route.contains("{id}") {
                queries
                    .iter()
                    .map(|q| format!("{base}{path}?{q}"))
                    .collect()
            } else {
                vec![format!("{base}{path}")]
            };
            let with_bodies: Vec<Option<(&str, Vec<u8>)>> = if matches!(*method, "POST" | "PATCH") {
                bodies.iter().map(|(n, b)| Some((*n, b.clone()))).collect()
            } else {
                vec![None]
            };
            for url in &with_query {
                for body in &with_bodies {
                    for token in [Some(TOKEN), Some("forged"), None] {
                        let (status, has_id, answer, json) = rest(
                            &http,
                            method,
                            url,
                            token,
                            body.as_ref().map(|(_, b)| b.clone()),
                        )
                        .await;
                        let what = format!(
                            "{method} {} with {:?}, token {token:?}: {status} {}",
                            &url[..url.len().min(120)],
                            body.as_ref().map(|(n, _)| *n),
                            String::from_utf8_lossy(&answer[..answer.len().min(200)])
                        );
                        assert!(has_id, "{what}");
                        assert!(status < 500, "{what}");
                        if token != Some(TOKEN) {
                            assert_eq!(status, 401, "{what}");
                        }
                        if status >= 400 {
                            assert!(json, "{what}");
                            let error: serde_json::Value = serde_json::from_slice(&answer)
                                .unwrap_or_else(|e| panic!("{what}: {e}"));
                            let code = error["code"].as_i64().unwrap_or_default();
                            assert!(code > 0, "{what}");
                            assert!(
                                error["message"].as_str().is_some_and(|m| m.len() <= 1100),
                                "{what}"
                            );
                            assert!(answer.len() <= 8 << 10, "{what}: {} bytes", answer.len());
                        } else {
                            assert!(
                                serde_json::from_slice::<serde_json::Value>(&answer).is_ok(),
                                "{what}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 500, "{checked}");
    // Paths and methods no route serves.
    for (method, path) in [
        ("GET", "/nope"),
        ("PUT", "/compute/v1/images"),
        ("GET", "/compute/v1/images/a/b/c"),
        ("TRACE", "/"),
    ] {
        let (status, has_id, answer, json) =
            rest(&http, method, &format!("{base}{path}"), Some(TOKEN), None).await;
        assert!(
            has_id && json && (404..=405).contains(&status),
            "{method} {path}: {status} {answer:?}"
        );
    }
}

/// The resident memory of a process, in kB.
fn resident_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_and_route_refuses_bad_input_in_the_api_format_and_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    // A first round warms the allocator and every cache; later rounds must not grow.
    grpc_barrage(&server).await;
    rest_barrage(&server).await;
    let warm = resident_kb(server.child.id());
    for _ in 0..2 {
        grpc_barrage(&server).await;
        rest_barrage(&server).await;
    }
    let after = resident_kb(server.child.id());
    assert!(
        after <= warm + 40 * 1024,
        "resident memory grew from {warm} kB to {after} kB"
    );
    let health = reqwest::get(format!("{}/healthz", server.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
