//! Hostile and broken clients against the real binary, with nothing but a socket: slow and
//! silent connections beyond the open-files limit, bodies that stop, idle keep-alive
//! connections, and a shutdown while such clients hold connections. The server keeps
//! answering fresh calls within a second, closes what holds it, and stops within its grace
//! period.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Server, seed_compute_image};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use yc_proto_types::yandex::cloud::compute::v1::GetImageRequest;
use yc_proto_types::yandex::cloud::compute::v1::image_service_client::ImageServiceClient;

const FOLDER: &str = "b1ghostile";
const IMAGE: &str = "fd8hostileimage00000";

/// `yc-images serve` with `args`, seeded with one image, under an open-files limit of
/// `files` (as a service manager may set it).
fn start(dir: &std::path::Path, files: u32, args: &[&str]) -> Server {
    let seed = dir.join("seed");
    seed_compute_image(&seed, IMAGE, FOLDER, "base");
    let binary = env!("CARGO_BIN_EXE_yc-images");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--seed")
        .arg(&seed)
        .args(args)
        .env("YC_IMAGES_LOG", "warn")
        .stderr(std::process::Stdio::inherit());
    Server::launch(&mut command)
}

/// A connection that sends the start of a request and then one header line every `every`,
/// never finishing its headers; or, with `every` of `None`, nothing at all.
async fn slow_client(address: String, every: Option<Duration>) {
    let Ok(mut socket) = TcpStream::connect(&address).await else {
        return;
    };
    let Some(every) = every else {
        let mut buffer = [0u8; 64];
        let _ = socket.read(&mut buffer).await;
        return;
    };
    if socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        .await
        .is_err()
    {
        return;
    }
    for n in 0.. {
        tokio::time::sleep(every).await;
        if socket
            .write_all(format!("X-Slow-{n}: still here\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// How long a fresh `GET /healthz` and a fresh gRPC Get take, each on a new connection.
async fn fresh_calls(server: &Server) -> (Duration, Duration) {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health = http
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /healthz: {e}"));
    assert_eq!(health.status(), 200);
    let rest = started.elapsed();
    let started = Instant::now();
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("gRPC connect: {e}"));
    let image = ImageServiceClient::new(channel)
        .get(GetImageRequest {
            image_id: IMAGE.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("gRPC Get: {e}"));
    assert_eq!(image.into_inner().id, IMAGE);
    (rest, started.elapsed())
}

/// More slow and silent connections than the process has file descriptors: fresh calls are
/// answered within a second all along, because the connections idle longest make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_silent_clients_beyond_the_file_limit_do_not_hold_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 256, &["--max-connections", "150"]);
    let mut attackers = Vec::new();
    for n in 0..400 {
        let every = (n % 2 == 0).then_some(Duration::from_millis(700));
        attackers.push(tokio::spawn(slow_client(server.address.clone(), every)));
        if n % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for round in 0..4 {
        let (rest, grpc) = fresh_calls(&server).await;
        assert!(
            rest < Duration::from_secs(1) && grpc < Duration::from_secs(1),
            "round {round}: /healthz took {rest:?}, gRPC Get {grpc:?}"
        );
        // More arrive meanwhile.
        for _ in 0..50 {
            attackers.push(tokio::spawn(slow_client(
                server.address.clone(),
                Some(Duration::from_millis(500)),
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for attacker in attackers {
        attacker.abort();
    }
}

/// Reads until the server closes the connection; how long that took, or `None` if it did not
/// within `limit`.
async fn closed_within(socket: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Headers that never end, a body that stops, and a keep-alive connection left idle are each
/// closed after their time limit.
#[tokio::test]
async fn every_connection_has_time_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        1024,
        &[
            "--header-timeout",
            "1",
            "--body-timeout",
            "1",
            "--idle-timeout",
            "2",
        ],
    );

    // Headers, one line at a time, never finished.
    let mut socket = TcpStream::connect(&server.address).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        .await
        .unwrap();
    let writer = {
        let (_, mut half) = socket.into_split();
        tokio::spawn(async move {
            for n in 0..20 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if half
                    .write_all(format!("X-{n}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return n;
                }
            }
            20
        })
    };
    let lines = writer.await.unwrap();
    assert!(
        lines < 10,
        "the server took header lines for {lines} × 300 ms"
    );

    // A body that stops: the call fails and the connection is closed.
    let mut socket = TcpStream::connect(&server.address).await.unwrap();
    socket
        .write_all(
            b"POST /compute/v1/images HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"folderId\": \"b1ghostile\"",
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("a stalled body held the call for 5 s"))
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(
        read == 0 || !answer.starts_with("HTTP/1.1 2"),
        "a stalled body got {answer}"
    );

    // A keep-alive connection after its answer waits for the next request's headers: closed
    // after the header time limit.
    assert_idle_closed(&server, Duration::from_millis(800)).await;
    drop(server);
    // With a longer header limit, the idle time limit closes it.
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        1024,
        &["--header-timeout", "30", "--idle-timeout", "2"],
    );
    assert_idle_closed(&server, Duration::from_millis(1800)).await;
}

/// A keep-alive connection left idle after one answer is closed, after `at_least`.
async fn assert_idle_closed(server: &Server, at_least: Duration) {
    let mut socket = TcpStream::connect(&server.address).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = socket.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
    let closed = closed_within(&mut socket, Duration::from_secs(6)).await;
    assert!(
        closed.is_some_and(|t| t >= at_least),
        "idle connection closed after {closed:?}"
    );
}

/// SIGTERM while clients hold connections with unfinished headers and bodies: a call whose
/// body arrives within the grace period is answered, and the server exits once the grace
/// period is over, whatever the rest still hold.
#[tokio::test]
async fn sigterm_waits_for_calls_in_flight_only_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), 1024, &["--shutdown-grace", "2"]);
    let holders: Vec<_> = (0..20)
        .map(|n| {
            tokio::spawn(slow_client(
                server.address.clone(),
                (n % 2 == 0).then_some(Duration::from_millis(300)),
            ))
        })
        .collect();
    // A body that never ends, and one that ends a moment after SIGTERM.
    let mut stalled = TcpStream::connect(&server.address).await.unwrap();
    stalled
        .write_all(
            b"POST /compute/v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 5000\r\n\r\n{",
        )
        .await
        .unwrap();
    let body =
        format!(r#"{{"folderId": "{FOLDER}", "name": "during-shutdown", "imageId": "{IMAGE}"}}"#);
    let mut finishing = TcpStream::connect(&server.address).await.unwrap();
    finishing
        .write_all(
            format!(
                "POST /compute/v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{}",
                body.len(),
                &body[..10]
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    server.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    finishing.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = vec![0u8; 8192];
    let read = tokio::time::timeout(Duration::from_secs(5), finishing.read(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer"))
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut exited = None;
    while started.elapsed() < Duration::from_secs(8) {
        if let Some(status) = server.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    assert!(
        exited.is_some_and(|s| s.success()),
        "the server did not exit within 8 s of SIGTERM: {exited:?}"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "it exited after {took:?}"
    );
    drop(stalled);
    for holder in holders {
        holder.abort();
    }
}

/// A page token made without the server's key (the token format, a check of the caller's
/// making, and the id of an image to locate) is refused, never answered with a page.
#[tokio::test]
async fn forged_page_tokens_are_refused() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 1024, &[]);
    let mut images = ImageServiceClient::new(crate::support::channel(&server).await);
    for version in [1u8, 2] {
        let mut bytes = vec![version, 1];
        bytes.extend_from_slice(&[0x5a; 12]);
        bytes.extend_from_slice(IMAGE.as_bytes());
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let refused = images
            .list(
                yc_proto_types::yandex::cloud::compute::v1::ListImagesRequest {
                    folder_id: FOLDER.into(),
                    page_token: forged,
                    ..Default::default()
                },
            )
            .await
            .err()
            .unwrap_or_else(|| panic!("a forged token got a page"));
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().contains("page_token"),
            "{}",
            refused.message()
        );
    }
}

/// A raw HTTP/1.1 exchange: the request as bytes, the answer's status, headers and body.
async fn raw(server: &Server, request: &[u8]) -> (u16, String, String) {
    let mut socket = TcpStream::connect(&server.address).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Every REST answer that is not a success is the API's JSON error with the right HTTP
/// status and a request id: unknown paths (404, never 200), wrong methods (405), bodies over
/// the limit (413), paths that do not decode, and query parameters that do not read, named.
#[tokio::test]
async fn every_rest_error_is_the_api_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 1024, &["--max-request-bytes", "65536"]);
    let big = format!(
        r#"{{"folderId": "{FOLDER}", "description": "{}"}}"#,
        "x".repeat(100_000)
    );
    let cases: Vec<(String, u16, i64)> = vec![
        (
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            404,
            5,
        ),
        (
            "GET /compute/v2/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            404,
            5,
        ),
        (
            "GET /no/such/route HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            404,
            5,
        ),
        (
            "DELETE /compute/v1/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            405,
            12,
        ),
        (
            format!(
                "POST /compute/v1/images HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{big}",
                big.len()
            ),
            413,
            8,
        ),
        (
            "GET /compute/v1/images/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
            400,
            3,
        ),
        (
            format!(
                "GET /compute/v1/images?folderId={FOLDER}&pageSize=abc HTTP/1.1\r\nHost: x\r\n\
                 Connection: close\r\n\r\n"
            ),
            400,
            3,
        ),
    ];
    for (request, http, code) in cases {
        let (status, head, body) = raw(&server, request.as_bytes()).await;
        let line = request.lines().next().unwrap_or_default().to_owned();
        assert_eq!(status, http, "{line}: {head}\n{body}");
        assert!(
            head.contains("content-type: application/json"),
            "{line}: {head}"
        );
        assert!(head.contains("x-request-id: "), "{line}: {head}");
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{line}: not JSON ({e}): {body}"));
        assert_eq!(json["code"], code, "{line}: {json}");
        assert!(
            json["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && m.len() < 1100),
            "{line}: {json}"
        );
        if line.contains("pageSize=abc") {
            assert!(
                json["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("page_size")),
                "{json}"
            );
        }
    }
}

/// curl passes quotes in a query unencoded (`?filter=name="x"`): the call is served as if
/// they were encoded, with its request id, rather than refused by the HTTP parser.
#[tokio::test]
async fn unencoded_quotes_in_a_query_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 1024, &[]);
    let (status, head, body) = raw(
        &server,
        format!(
            "GET /compute/v1/images?folderId={FOLDER}&filter=name=\"base\" HTTP/1.1\r\nHost: x\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(head.contains("x-request-id: "), "{head}");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["images"][0]["id"], IMAGE, "{json}");
}

/// gRPC errors stay small whatever the request: a request full of invalid labels gets its
/// real error, bounded, and a message over the size limit is RESOURCE_EXHAUSTED.
#[tokio::test]
async fn grpc_errors_are_bounded_and_large_messages_are_resource_exhausted() {
    use yc_proto_types::google::protobuf::FieldMask;
    use yc_proto_types::yandex::cloud::compute::v1::UpdateImageRequest;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 1024, &[]);
    let mut images = ImageServiceClient::new(crate::support::channel(&server).await)
        .max_encoding_message_size(64 << 20);
    let labels = (0..10_000)
        .map(|n| (format!("BAD KEY {n} {}", "k".repeat(40)), "v".repeat(40)))
        .collect();
    let refused = images
        .update(UpdateImageRequest {
            image_id: IMAGE.into(),
            update_mask: Some(FieldMask {
                paths: vec!["labels".into(), "x".repeat(10_000)],
            }),
            labels,
            ..Default::default()
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("invalid labels were taken"));
    assert_eq!(
        refused.code(),
        tonic::Code::InvalidArgument,
        "{}",
        refused.message()
    );
    assert!(
        refused.message().len() <= 1100,
        "{}",
        refused.message().len()
    );
    assert!(
        refused.details().len() <= 4200,
        "{} bytes of details",
        refused.details().len()
    );
    let status = yc_proto_types::google::rpc::Status::from(&refused);
    let info: yc_proto_types::google::rpc::RequestInfo = status
        .detail()
        .unwrap_or_else(|| panic!("no RequestInfo in {status:?}"));
    let request_id = refused
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(info.request_id, request_id);

    // An error quotes at most 128 characters of any input.
    let long_path = images
        .update(UpdateImageRequest {
            image_id: IMAGE.into(),
            update_mask: Some(FieldMask {
                paths: vec!["ü".repeat(10_000)],
            }),
            ..Default::default()
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("a 10 kB mask path was taken"));
    assert_eq!(long_path.code(), tonic::Code::InvalidArgument);
    assert!(
        long_path.message().chars().count() < 400,
        "{}",
        long_path.message()
    );

    let huge = images
        .update(UpdateImageRequest {
            image_id: IMAGE.into(),
            description: "d".repeat(10 << 20),
            ..Default::default()
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("a 10 MB request was taken"));
    assert_eq!(
        huge.code(),
        tonic::Code::ResourceExhausted,
        "{}",
        huge.message()
    );
    // The server is still there.
    let (rest, grpc) = fresh_calls(&server).await;
    assert!(rest < Duration::from_secs(1) && grpc < Duration::from_secs(1));
}

/// Uploads without credentials over TLS and HTTP/1.1, refused before their bodies are read,
/// as oras-py sends them first: Python's `requests` gets every 401 with its challenge (20 kB
/// and 300 kB bodies 20 times each, 4 MB bodies 5 times), never a broken connection.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_reaches_the_client_over_tls() {
    let Some(python) = crate::support::sdk_python("a_refusal_before_the_body_is_read") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let iam = dir.path().join("iam.json");
    crate::support::write_iam(
        &iam,
        &[("ajeeditor00000000000", "editor-token", FOLDER, "editor")],
    );
    let seed = dir.path().join("seed");
    crate::support::seed_registry(&seed, "crphostile0000000000", FOLDER, "hostile");
    let server = crate::support::start_seeded(dir.path(), &iam, &seed, &["--tls"]);
    let ca = dir.path().join("data/tls/ca.pem");
    let base = format!("https://{}", server.address);
    crate::support::run_sdk_script(
        python,
        "tls_early_refusal.py",
        &[
            std::ffi::OsStr::new(&base),
            ca.as_os_str(),
            std::ffi::OsStr::new("crphostile0000000000/app"),
        ],
        "early refusals answered: 135",
    )
    .await;
}
