//! Pushing and pulling images through the registry API (`/v2/`) of a running server with an
//! IAM file: `yc-images registry import`, the raw API over HTTP with the answers a registry
//! client acts on, and skopeo (when installed) pushing and pulling unmodified.

use std::path::Path;
use std::process::Command;

use crate::support::{
    Server, seed_registry, sha256, start_seeded, write_iam, write_layout,
    write_multi_platform_layout,
};
use serde_json::Value;

const FOLDER: &str = "b1gteam";
pub(crate) const REGISTRY: &str = "crppushregistry00000";
const OTHER_REGISTRY: &str = "crpotherregistry0000";

pub(crate) fn start(dir: &Path) -> Server {
    start_with(dir, &[])
}

/// [`start`] with `extra` options.
pub(crate) fn start_with(dir: &Path, extra: &[&str]) -> Server {
    let iam = dir.join("iam.json");
    write_iam(
        &iam,
        &[
            ("ajeeditor00000000000", "editor-token", FOLDER, "editor"),
            ("ajeviewer00000000000", "viewer-token", FOLDER, "viewer"),
            (
                "ajestranger000000000",
                "stranger-token",
                "b1gother",
                "editor",
            ),
        ],
    );
    let seed = dir.join("seed");
    seed_registry(&seed, REGISTRY, FOLDER, "push");
    seed_registry(&seed, OTHER_REGISTRY, "b1gother", "other");
    start_seeded(dir, &iam, &seed, extra)
}

/// A layout whose layer is `size` bytes, so that it goes up in several pieces.
pub(crate) fn big_layout(dir: &Path, size: usize) -> (String, Vec<u8>) {
    let digest = write_layout(dir, "big", "latest");
    let manifest_path = dir.join("blobs/sha256").join(&digest[7..]);
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let layer: Vec<u8> = (0..size)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect();
    let layer_digest = sha256(&layer);
    std::fs::write(dir.join("blobs/sha256").join(&layer_digest[7..]), &layer).unwrap();
    manifest["layers"][0]["digest"] = layer_digest.into();
    manifest["layers"][0]["size"] = size.into();
    let bytes = manifest.to_string().into_bytes();
    let digest = sha256(&bytes);
    std::fs::write(dir.join("blobs/sha256").join(&digest[7..]), &bytes).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
        "size": bytes.len(), "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    (digest, layer)
}

fn cli(server: &Server, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_yc-images"))
        .args(args)
        .env("YC_IMAGES_ENDPOINT", server.url())
        .env("YC_IMAGES_TOKEN", token)
        .output()
        .unwrap()
}

/// What `yc-images <args> --format json` printed; it must succeed.
fn cli_json(server: &Server, token: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let output = cli(server, token, &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The images of a repository, as the ImageService lists them to a viewer.
fn listed(server: &Server, repository: &str) -> Value {
    cli_json(
        server,
        "viewer-token",
        &["registry", "image", "list", "--repository-name", repository],
    )
}

/// `GET url` with `token` as a bearer token.
async fn get(http: &reqwest::Client, url: impl reqwest::IntoUrl, token: &str) -> reqwest::Response {
    http.get(url).bearer_auth(token).send().await.unwrap()
}

/// The spec's error code of an answer.
async fn error_code(response: reqwest::Response) -> String {
    let bytes = response.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_owned()
}

#[tokio::test]
async fn import_pushes_a_layout_that_pulls_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let layout = dir.path().join("layout");
    // Larger than a piece of the push (4 MiB) and of the store (1 MiB).
    let (digest, layer) = big_layout(&layout, 9 * 1024 * 1024 + 17);
    let layout_arg = layout.to_string_lossy().into_owned();
    let target = format!("{REGISTRY}/team/app:v2");

    let import = ["registry", "import", layout_arg.as_str(), target.as_str()];
    let image = cli_json(&server, "editor-token", &import);
    assert_eq!(image["digest"], digest.as_str());
    assert_eq!(image["name"], format!("{REGISTRY}/team/app").as_str());
    assert_eq!(image["tags"], serde_json::json!(["v2"]));
    assert_eq!(
        image["layers"][0]["size"],
        (layer.len()).to_string().as_str()
    );
    let image_id = image["id"].as_str().unwrap_or_default().to_owned();

    // The ImageService lists it.
    let repository = format!("{REGISTRY}/team/app");
    assert_eq!(listed(&server, &repository)[0]["id"], image_id.as_str());

    // Importing again stores nothing new: the same image.
    let again = cli_json(&server, "editor-token", &import);
    assert_eq!(again["id"], image_id.as_str());

    // A viewer pulls it back over plain HTTP, with docker's Basic credentials.
    let http = reqwest::Client::new();
    let base = server.url();
    let manifest = http
        .get(format!("{base}/v2/{REGISTRY}/team/app/manifests/v2"))
        .basic_auth("iam", Some("viewer-token"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(manifest.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(
        manifest.headers()["content-type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let manifest_bytes = manifest.bytes().await.unwrap();
    assert_eq!(sha256(&manifest_bytes), digest);
    let pulled = http
        .get(format!(
            "{base}/v2/{REGISTRY}/team/app/blobs/{}",
            sha256(&layer)
        ))
        .bearer_auth("viewer-token")
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    let pulled = pulled.bytes().await.unwrap();
    assert_eq!(pulled.len(), layer.len());
    assert!(pulled.as_ref() == layer.as_slice(), "the layer changed");

    // Tags list in pages, as registry clients read them.
    for tag in ["v3", "v1"] {
        let target = format!("{REGISTRY}/team/app:{tag}");
        cli_json(
            &server,
            "editor-token",
            &["registry", "import", layout_arg.as_str(), target.as_str()],
        );
    }
    let page = get(
        &http,
        format!("{base}/v2/{REGISTRY}/team/app/tags/list?n=2"),
        "viewer-token",
    )
    .await;
    assert_eq!(page.status(), 200);
    let next = page.headers()["link"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        next,
        format!("</v2/{REGISTRY}/team/app/tags/list?n=2&last=v2>; rel=\"next\"")
    );
    let page: Value = serde_json::from_slice(&page.bytes().await.unwrap_or_default()).unwrap();
    assert_eq!(page["tags"], serde_json::json!(["v1", "v2"]));
    let next_url = next
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default();
    let last = get(&http, format!("{base}{next_url}"), "viewer-token").await;
    assert!(!last.headers().contains_key("link"));
    let last: Value = serde_json::from_slice(&last.bytes().await.unwrap_or_default()).unwrap();
    assert_eq!(last["tags"], serde_json::json!(["v3"]));

    // The image the server was seeded with pulls too.
    let seeded = listed(&server, &format!("{REGISTRY}/app"));
    let seeded_digest = seeded[0]["digest"].as_str().unwrap_or_default().to_owned();
    let seeded_manifest = get(
        &http,
        format!("{base}/v2/{REGISTRY}/app/manifests/v1"),
        "viewer-token",
    )
    .await;
    assert_eq!(seeded_manifest.status(), 200);
    let seeded_manifest = seeded_manifest.bytes().await.unwrap_or_default();
    assert_eq!(sha256(&seeded_manifest), seeded_digest);
    let seeded_layer = seeded[0]["layers"][0]["digest"]
        .as_str()
        .unwrap_or_default();
    let layer_back = get(
        &http,
        format!("{base}/v2/{REGISTRY}/app/blobs/{seeded_layer}"),
        "viewer-token",
    )
    .await;
    assert_eq!(layer_back.status(), 200);
    assert_eq!(
        sha256(&layer_back.bytes().await.unwrap_or_default()),
        seeded_layer
    );

    // Who may not: a viewer pushing, another folder's editor, no credentials.
    let viewer = cli(
        &server,
        "viewer-token",
        &["registry", "import", &layout_arg, &target],
    );
    assert!(!viewer.status.success());
    let said = String::from_utf8_lossy(&viewer.stderr);
    assert!(said.starts_with("yc-images: PERMISSION_DENIED: "), "{said}");
    let stranger = get(
        &http,
        format!("{base}/v2/{REGISTRY}/team/app/manifests/v2"),
        "stranger-token",
    )
    .await;
    assert_eq!(stranger.status(), 403);
    assert_eq!(error_code(stranger).await, "DENIED");
    let anonymous = http.get(format!("{base}/v2/")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Basic realm=\"yc-images\""
    );
    assert_eq!(error_code(anonymous).await, "UNAUTHORIZED");
    let version = http
        .get(format!("{base}/v2/"))
        .basic_auth("iam", Some("viewer-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 200);
    assert_eq!(
        version.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // The ImageService deletes it; then it does not pull.
    let deleted = cli(
        &server,
        "editor-token",
        &["registry", "image", "delete", &image_id],
    );
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let gone = get(
        &http,
        format!("{base}/v2/{REGISTRY}/team/app/manifests/v2"),
        "viewer-token",
    )
    .await;
    assert_eq!(gone.status(), 404);
    assert_eq!(error_code(gone).await, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn bad_pushes_are_refused_with_the_code_a_client_acts_on_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let http = reqwest::Client::new();
    let base = server.url();
    let repo = format!("{base}/v2/{REGISTRY}/app");

    // An upload finished with the wrong digest.
    let started = http
        .post(format!("{repo}/blobs/uploads/"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    assert_eq!(started.headers()["range"], "0-0");
    let location = started.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let patched = http
        .patch(format!("{base}{location}"))
        .bearer_auth("editor-token")
        .header("content-range", "0-9")
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 202);
    assert_eq!(patched.headers()["range"], "0-9");
    // Bytes that do not continue the upload.
    let out_of_order = http
        .patch(format!("{base}{location}"))
        .bearer_auth("editor-token")
        .header("content-range", "5-9")
        .body("56789")
        .send()
        .await
        .unwrap();
    assert_eq!(out_of_order.status(), 416);
    let claimed = sha256(b"something else");
    let finished = http
        .put(format!("{base}{location}?digest={claimed}"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 400);
    assert_eq!(error_code(finished).await, "DIGEST_INVALID");
    for digest in [claimed.as_str(), &sha256(b"0123456789")] {
        let head = http
            .head(format!("{repo}/blobs/{digest}"))
            .bearer_auth("editor-token")
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 404, "{digest}");
    }

    // A monolithic upload with the right digest lands.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = sha256(config);
    let monolithic = http
        .post(format!("{repo}/blobs/uploads/?digest={config_digest}"))
        .bearer_auth("editor-token")
        .body(config.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(monolithic.status(), 201);
    assert_eq!(
        monolithic.headers()["docker-content-digest"],
        config_digest.as_str()
    );

    // A manifest naming a layer never pushed.
    let missing = sha256(b"never pushed");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": missing, "size": 12}],
    })
    .to_string();
    let put = |body: String, reference: &str| {
        http.put(format!("{repo}/manifests/{reference}"))
            .bearer_auth("editor-token")
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
    };
    let refused = put(manifest.clone(), "v9").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused).await, "MANIFEST_BLOB_UNKNOWN");
    // The config is there but the manifest says another size.
    let wrong_size = serde_json::json!({
        "schemaVersion": 2,
        "config": {"digest": config_digest, "size": 3},
        "layers": [],
    })
    .to_string();
    let refused = put(wrong_size, "v9").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused).await, "MANIFEST_INVALID");
    let refused = put("not json".to_owned(), "v9").await.unwrap();
    assert_eq!(error_code(refused).await, "MANIFEST_INVALID");
    // Pushed by a digest that is not its own.
    let good = serde_json::json!({
        "schemaVersion": 2,
        "config": {"digest": config_digest, "size": config.len()},
        "layers": [],
    })
    .to_string();
    let refused = put(good.clone(), &missing).await.unwrap();
    assert_eq!(error_code(refused).await, "DIGEST_INVALID");
    let refused = put(good.clone(), "-bad-tag").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused).await, "TAG_INVALID");
    // No registry.
    let refused = http
        .put(format!("{base}/v2/crpnosuchregistry000/app/manifests/v1"))
        .bearer_auth("editor-token")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        404,
        "no such registry, for anyone signed in"
    );
    assert_eq!(error_code(refused).await, "NAME_UNKNOWN");

    // Nothing of the refused pushes is an image.
    let listed = cli_json(
        &server,
        "editor-token",
        &["registry", "image", "list", "--registry-id", REGISTRY],
    );
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "only the seeded one: {listed}"
    );

    // The good one by its digest: untagged, and it pulls by digest.
    let digest = sha256(good.as_bytes());
    let stored = put(good.clone(), &digest).await.unwrap();
    assert_eq!(stored.status(), 201);
    assert!(stored.headers().contains_key("yc-image-id"));
    let pulled = get(&http, format!("{repo}/manifests/{digest}"), "editor-token").await;
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap_or_default(), good.as_bytes());
    // A blob of the other folder's registry is not mounted for a caller who cannot read it.
    let mounted = http
        .post(format!(
            "{repo}/blobs/uploads/?mount={config_digest}&from={OTHER_REGISTRY}/app"
        ))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(mounted.status(), 202, "an upload instead of a mount");
}

/// skopeo copies a layout into the server and back out, as it would with any registry.
/// The distribution spec's names and refusals: a repository name it does not allow (`..`
/// among them) is `NAME_INVALID`, the tags of a repository that does not exist
/// `NAME_UNKNOWN`, and a refused manifest leaves nothing behind, not even its bytes.
#[tokio::test]
async fn names_and_refusals_follow_the_distribution_spec() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let http = reqwest::Client::new();
    let base = server.url();

    let refused = get(
        &http,
        format!("{base}/v2/{REGISTRY}/App/tags/list"),
        "editor-token",
    )
    .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused).await, "NAME_INVALID");
    let (status, _, body) = raw_request(
        &server,
        &format!(
            "POST /v2/{REGISTRY}/../x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer editor-token\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("NAME_INVALID"), "{body}");

    let unknown = get(
        &http,
        format!("{base}/v2/{REGISTRY}/never-pushed/tags/list"),
        "editor-token",
    )
    .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(error_code(unknown).await, "NAME_UNKNOWN");
    let known = get(
        &http,
        format!("{base}/v2/{REGISTRY}/app/tags/list"),
        "editor-token",
    )
    .await;
    assert_eq!(known.status(), 200);

    // A manifest refused for its tag: its bytes are not a blob of the registry afterwards.
    let manifest = serde_json::json!({"schemaVersion": 2, "config": {"digest": sha256(b"{}"), "size": 2}, "layers": []})
        .to_string();
    let refused = http
        .put(format!("{base}/v2/{REGISTRY}/app/manifests/-bad-tag"))
        .bearer_auth("editor-token")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused).await, "TAG_INVALID");
    let blob = get(
        &http,
        format!(
            "{base}/v2/{REGISTRY}/app/blobs/{}",
            sha256(manifest.as_bytes())
        ),
        "editor-token",
    )
    .await;
    assert_eq!(blob.status(), 404);
}

/// A raw HTTP/1.1 exchange (for paths a client library would normalize): status, head, body.
async fn raw_request(server: &Server, request: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(&server.address)
        .await
        .unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    (status, head.to_owned(), body.to_owned())
}

/// Starts an upload in the test registry; its `Location`.
pub(crate) async fn start_upload(http: &reqwest::Client, base: &str) -> String {
    let started = http
        .post(format!("{base}/v2/{REGISTRY}/app/blobs/uploads/"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    started.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_owned()
}

/// A `PATCH` of `body` at `range` (`<start>-<end>`); its status and error code, if any.
pub(crate) async fn patch(
    http: &reqwest::Client,
    url: String,
    range: String,
    body: Vec<u8>,
) -> (u16, String) {
    let answer = http
        .patch(url)
        .bearer_auth("editor-token")
        .header("content-range", range.as_str())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let code = if status >= 400 {
        error_code(answer).await
    } else {
        String::new()
    };
    (status, code)
}

/// A slow client's `PATCH` over a raw socket: the headers and `first` bytes now, the rest when
/// `finish` is called; it returns the status line.
pub(crate) struct SlowPatch {
    socket: tokio::net::TcpStream,
}

impl SlowPatch {
    pub(crate) async fn start(
        address: &str,
        location: &str,
        whole: usize,
        first: &[u8],
    ) -> SlowPatch {
        use tokio::io::AsyncWriteExt as _;
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer editor-token\r\n\
             Content-Type: application/octet-stream\r\nContent-Range: 0-{}\r\n\
             Content-Length: {whole}\r\n\r\n",
            whole - 1
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(first).await.unwrap();
        SlowPatch { socket }
    }

    async fn finish(mut self, rest: &[u8]) -> String {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        self.socket.write_all(rest).await.unwrap();
        let mut reader = tokio::io::BufReader::new(self.socket);
        let mut status = String::new();
        reader.read_line(&mut status).await.unwrap();
        status.trim().to_owned()
    }
}

/// Concurrent requests on one upload never lose bytes another was answered for: while a slow
/// client streams, other PATCHes (and a PUT) are refused with 416 and change nothing; of eight
/// PATCHes at once exactly one is taken and its digest finishes; a body whose length is not
/// its Content-Range's is refused.
#[tokio::test]
async fn an_upload_has_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    // A refusal answered before the body is read closes its HTTP/1.1 connection; a pooled
    // connection could be taken just as it closes. Each request here has its own.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = server.url();
    let repo = format!("{base}/v2/{REGISTRY}/app");
    let data: Vec<u8> = (0..(1 << 20) + 5000).map(|i| (i % 253) as u8).collect();
    let digest = sha256(&data);

    let location = start_upload(&http, &base).await;
    let slow = SlowPatch::start(
        &server.address,
        &location,
        data.len(),
        &data[..(1 << 20) + 7],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let intruders: Vec<_> = (0..8)
        .map(|_| {
            patch(
                &http,
                format!("{base}{location}"),
                "0-7".into(),
                b"intruder".to_vec(),
            )
        })
        .collect();
    for (status, code) in futures_util::future::join_all(intruders).await {
        assert_eq!((status, code.as_str()), (416, "BLOB_UPLOAD_INVALID"));
    }
    let early_put = http
        .put(format!("{base}{location}?digest={digest}"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(early_put.status(), 416);
    let status = slow.finish(&data[(1 << 20) + 7..]).await;
    assert!(status.starts_with("HTTP/1.1 202"), "{status}");
    let finished = http
        .put(format!("{base}{location}?digest={digest}"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 201);
    let pulled = http
        .get(format!("{repo}/blobs/{digest}"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(pulled[..] == data[..]);

    // Eight PATCHes at once from 0: exactly one is taken, and its content finishes.
    let location = start_upload(&http, &base).await;
    let url = format!("{base}{location}");
    let bodies: Vec<Vec<u8>> = (0..8u8)
        .map(|n| vec![n; 300_000 + usize::from(n)])
        .collect();
    let racers: Vec<_> = bodies
        .iter()
        .map(|b| patch(&http, url.clone(), format!("0-{}", b.len() - 1), b.clone()))
        .collect();
    let answers = futures_util::future::join_all(racers).await;
    let taken: Vec<&Vec<u8>> = answers
        .iter()
        .zip(&bodies)
        .filter(|((status, _), _)| *status == 202)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(taken.len(), 1, "{answers:?}");
    for (status, code) in &answers {
        assert!(
            *status == 202 || (*status == 416 && code == "BLOB_UPLOAD_INVALID"),
            "{status} {code}"
        );
    }
    let finished = http
        .put(format!("{url}?digest={}", sha256(taken[0])))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 201);

    // A Content-Range whose length is not the body's: refused, the upload unchanged.
    let location = start_upload(&http, &base).await;
    let url = format!("{base}{location}");
    assert_eq!(
        patch(&http, url.clone(), "0-9".into(), b"short".to_vec()).await,
        (416, "BLOB_UPLOAD_INVALID".to_owned())
    );
    assert_eq!(
        patch(&http, url.clone(), "0-1".into(), b"too long".to_vec()).await,
        (416, "BLOB_UPLOAD_INVALID".to_owned())
    );
    assert_eq!(
        patch(&http, url.clone(), "0-4".into(), b"right".to_vec())
            .await
            .0,
        202
    );
}

#[tokio::test]
async fn skopeo_pushes_and_pulls() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        assert!(
            !crate::support::required("YC_REQUIRE_SKOPEO"),
            "YC_REQUIRE_SKOPEO=1 or CI=true, but skopeo does not run"
        );
        eprintln!("SKIPPED: skopeo_pushes_and_pulls needs skopeo (apt-get install skopeo)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let layout = dir.path().join("layout");
    let (digest, layer) = big_layout(&layout, 3 * 1024 * 1024 + 5);
    let address = server.url().trim_start_matches("http://").to_owned();
    let run = |args: &[&str]| {
        let output = Command::new("skopeo").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let remote = format!("docker://{address}/{REGISTRY}/skopeo/app:s1");
    // Digests preserved: skopeo would otherwise compress the test's uncompressed layer.
    run(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "iam:editor-token",
        &format!("oci:{}:latest", layout.display()),
        &remote,
    ]);
    let back = dir.path().join("back");
    run(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        "iam:viewer-token",
        &remote,
        &format!("oci:{}:s1", back.display()),
    ]);
    let layer_back = std::fs::read(back.join("blobs/sha256").join(&sha256(&layer)[7..])).unwrap();
    assert!(layer_back == layer, "the layer changed on the way");
    let tags = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            "--creds",
            "iam:viewer-token",
            &format!("docker://{address}/{REGISTRY}/skopeo/app"),
        ])
        .output()
        .unwrap();
    assert!(
        tags.status.success(),
        "{}",
        String::from_utf8_lossy(&tags.stderr)
    );
    let tags: Value = serde_json::from_slice(&tags.stdout).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["s1"]), "{tags}");
    let listed = listed(&server, &format!("{REGISTRY}/skopeo/app"));
    assert_eq!(listed[0]["tags"], serde_json::json!(["s1"]), "{listed}");
    // skopeo sends the layout's manifest as it is.
    assert_eq!(listed[0]["digest"], digest.as_str());
}

/// The rest of what registry clients use: the catalog (paged, only what the caller may read),
/// `Range` reads of a blob (206, resuming a pull at any byte across the store's pieces), and
/// deletes of a tag and of a manifest (the image is gone from the ImageService too).
#[tokio::test]
async fn catalog_ranges_and_deletes_work_as_registry_clients_expect() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let http = reqwest::Client::new();
    let base = server.url();
    let layout = dir.path().join("layout");
    let (digest, layer) = big_layout(&layout, 3 * 1024 * 1024 + 5);
    let layout_arg = layout.to_string_lossy().into_owned();
    for repository in ["web", "app", "tools/cli"] {
        cli_json(
            &server,
            "editor-token",
            &[
                "registry",
                "import",
                &layout_arg,
                &format!("{REGISTRY}/{repository}:v1"),
            ],
        );
    }

    // The catalog: the team's repositories (`app` was seeded too) by name, two at a time;
    // the other folder's registry is not in it.
    let mut names = Vec::new();
    let mut next = format!("{base}/v2/_catalog?n=2");
    loop {
        let page = get(&http, &next, "viewer-token").await;
        assert_eq!(page.status(), 200);
        let link = page
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_owned());
        let body: Value = serde_json::from_slice(&page.bytes().await.unwrap()).unwrap();
        let repositories = body["repositories"].as_array().unwrap();
        assert!(repositories.len() <= 2, "{body}");
        names.extend(repositories.iter().map(|r| r.as_str().unwrap().to_owned()));
        match link {
            Some(link) => {
                let path = link.trim_start_matches('<').split('>').next().unwrap();
                next = format!("{base}{path}");
            }
            None => break,
        }
    }
    let expected: Vec<String> = ["app", "tools/cli", "web"]
        .iter()
        .map(|r| format!("{REGISTRY}/{r}"))
        .collect();
    assert_eq!(names, expected);
    let theirs: Value = serde_json::from_slice(
        &get(&http, format!("{base}/v2/_catalog"), "stranger-token")
            .await
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        theirs["repositories"],
        serde_json::json!([format!("{OTHER_REGISTRY}/app")])
    );
    let anonymous = http
        .get(format!("{base}/v2/_catalog"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Ranges of the layer: within a piece, across pieces, to the end, the last bytes; a
    // range past the end is 416; a whole read says ranges are accepted.
    let layer_digest = sha256(&layer);
    let blob = format!("{base}/v2/{REGISTRY}/app/blobs/{layer_digest}");
    let size = layer.len();
    for (range, start, end) in [
        ("bytes=0-99".to_owned(), 0, 99),
        (
            format!("bytes={}-{}", (1 << 20) - 10, (1 << 20) + 10),
            (1 << 20) - 10,
            (1 << 20) + 10,
        ),
        (format!("bytes={}-", size - 1000), size - 1000, size - 1),
        ("bytes=-7".to_owned(), size - 7, size - 1),
        (format!("bytes=5-{}", size + 100), 5, size - 1),
    ] {
        let response = http
            .get(&blob)
            .bearer_auth("viewer-token")
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {start}-{end}/{size}").as_str(),
            "{range}"
        );
        let bytes = response.bytes().await.unwrap();
        assert_eq!(&bytes[..], &layer[start..=end], "{range}");
    }
    let past = http
        .get(&blob)
        .bearer_auth("viewer-token")
        .header("range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    let whole = get(&http, &blob, "viewer-token").await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.unwrap().len(), size);

    // Deletes: a viewer may not; a tag goes off its image; a manifest takes the image with it.
    let manifest = |repository: &str, reference: &str| {
        format!("{base}/v2/{REGISTRY}/{repository}/manifests/{reference}")
    };
    let denied = http
        .delete(manifest("web", "v1"))
        .bearer_auth("viewer-token")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let untagged = http
        .delete(manifest("web", "v1"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(untagged.status(), 202);
    assert_eq!(
        get(&http, manifest("web", "v1"), "viewer-token")
            .await
            .status(),
        404
    );
    assert_eq!(
        get(&http, manifest("web", &digest), "viewer-token")
            .await
            .status(),
        200
    );
    let web = listed(&server, &format!("{REGISTRY}/web"));
    assert_eq!(web[0]["tags"], serde_json::json!(null), "{web}");
    let gone = http
        .delete(manifest("web", &digest))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 202);
    let again = http
        .delete(manifest("web", &digest))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(error_code(again).await, "MANIFEST_UNKNOWN");
    assert_eq!(
        get(&http, manifest("web", &digest), "viewer-token")
            .await
            .status(),
        404
    );
    assert_eq!(
        listed(&server, &format!("{REGISTRY}/web"))
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    // Its repository is gone from the catalog; the others' images are untouched.
    let catalog: Value = serde_json::from_slice(
        &get(&http, format!("{base}/v2/_catalog"), "viewer-token")
            .await
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        !catalog["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == &Value::from(format!("{REGISTRY}/web"))),
        "{catalog}"
    );
    assert_eq!(
        get(&http, manifest("app", "v1"), "viewer-token")
            .await
            .status(),
        200
    );
}

/// A multi-platform image (an OCI image index) goes up with `skopeo copy --all` and comes
/// back byte for byte: every platform's manifest and blobs, and the index itself. It is one
/// image of the ImageService whose digest is the index's, with every platform's layers; each
/// platform's manifest is an image too. An index whose platforms were not pushed is refused.
#[tokio::test]
async fn skopeo_copies_a_multi_platform_image_in_and_out() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        assert!(
            !crate::support::required("YC_REQUIRE_SKOPEO"),
            "YC_REQUIRE_SKOPEO=1 or CI=true, but skopeo does not run"
        );
        eprintln!("SKIPPED: the multi-platform test needs skopeo (apt-get install skopeo)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let layout = dir.path().join("multi");
    let (index_digest, platforms) = write_multi_platform_layout(&layout, "multi", "v1");
    let address = server.url().trim_start_matches("http://").to_owned();
    let run = |args: &[&str]| {
        let output = Command::new("skopeo").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let remote = format!("docker://{address}/{REGISTRY}/multi:v1");
    run(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "iam:editor-token",
        &format!("oci:{}:v1", layout.display()),
        &remote,
    ]);
    let back = dir.path().join("back");
    run(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        "iam:viewer-token",
        &remote,
        &format!("oci:{}:v1", back.display()),
    ]);
    // Every blob of the layout, the index and the platforms' manifests among them, came back
    // with the same bytes.
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let returned = std::fs::read(back.join("blobs/sha256").join(entry.file_name()))
            .unwrap_or_else(|e| panic!("{:?} did not come back: {e}", entry.file_name()));
        assert!(
            returned == std::fs::read(entry.path()).unwrap(),
            "{:?} changed on the way",
            entry.file_name()
        );
    }
    let back_index: Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(back_index["manifests"][0]["digest"], index_digest.as_str());

    // In the ImageService: the index, tagged, with both platforms' layers and no config; and
    // each platform's image.
    let images = listed(&server, &format!("{REGISTRY}/multi"));
    let images = images.as_array().unwrap();
    assert_eq!(images.len(), 3, "{images:?}");
    let index = images
        .iter()
        .find(|i| i["digest"] == index_digest.as_str())
        .unwrap();
    assert_eq!(index["tags"], serde_json::json!(["v1"]));
    assert_eq!(index["layers"].as_array().map(Vec::len), Some(2), "{index}");
    assert!(index.get("config").is_none(), "{index}");
    for platform in &platforms {
        assert!(images.iter().any(|i| i["digest"] == platform.as_str()));
    }

    // The index is served as it was pushed, with its media type.
    let http = reqwest::Client::new();
    let pulled = get(
        &http,
        format!("{}/v2/{REGISTRY}/multi/manifests/v1", server.url()),
        "viewer-token",
    )
    .await;
    assert_eq!(pulled.status(), 200);
    assert_eq!(
        pulled.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(sha256(&pulled.bytes().await.unwrap()), index_digest);

    // An index whose platforms are not in the repository is refused.
    let index_bytes = std::fs::read(layout.join("blobs/sha256").join(&index_digest[7..])).unwrap();
    let refused = http
        .put(format!(
            "{}/v2/{REGISTRY}/elsewhere/manifests/v1",
            server.url()
        ))
        .bearer_auth("editor-token")
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(index_bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(error_code(refused).await, "MANIFEST_BLOB_UNKNOWN");
}

/// A manifest that refers to another (a signature, an SBOM) is found through the referrers
/// API, filtered by artifact type; its push answers `OCI-Subject`.
#[tokio::test]
async fn referrers_of_a_manifest_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let http = reqwest::Client::new();
    let base = server.url();
    let layout = dir.path().join("layout");
    let subject = write_layout(&layout, "signed", "v1");
    cli_json(
        &server,
        "editor-token",
        &[
            "registry",
            "import",
            &layout.to_string_lossy(),
            &format!("{REGISTRY}/signed:v1"),
        ],
    );
    let subject_size = std::fs::read(layout.join("blobs/sha256").join(&subject[7..]))
        .unwrap()
        .len();
    // The empty config artifacts use, and one blob each.
    let empty = b"{}";
    let upload = |bytes: Vec<u8>| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let digest = sha256(&bytes);
            let response = http
                .post(format!(
                    "{base}/v2/{REGISTRY}/signed/blobs/uploads/?digest={digest}"
                ))
                .bearer_auth("editor-token")
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            digest
        }
    };
    let empty_digest = upload(empty.to_vec()).await;
    let mut pushed = Vec::new();
    for (artifact_type, content) in [
        (
            "application/vnd.dev.cosign.simplesigning.v1+json",
            "a signature",
        ),
        ("application/spdx+json", "an sbom"),
    ] {
        let blob = upload(content.as_bytes().to_vec()).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": content.len()}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_size},
            "annotations": {"org.opencontainers.image.created": "2026-12-05T00:00:00Z"},
        })
        .to_string();
        let digest = sha256(manifest.as_bytes());
        let response = http
            .put(format!("{base}/v2/{REGISTRY}/signed/manifests/{digest}"))
            .bearer_auth("editor-token")
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["oci-subject"], subject.as_str());
        pushed.push((digest, artifact_type, manifest.len()));
    }
    pushed.sort();

    let referrers = |query: &str| {
        let http = http.clone();
        let url = format!("{base}/v2/{REGISTRY}/signed/referrers/{subject}{query}");
        async move {
            let response = get(&http, url, "viewer-token").await;
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"],
                "application/vnd.oci.image.index.v1+json"
            );
            let filtered = response.headers().contains_key("oci-filters-applied");
            let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            (body, filtered)
        }
    };
    let (all, filtered) = referrers("").await;
    assert!(!filtered);
    assert_eq!(all["schemaVersion"], 2);
    let listed: Vec<(String, String, usize)> = all["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(
                m["annotations"]["org.opencontainers.image.created"],
                "2026-12-05T00:00:00Z"
            );
            (
                m["digest"].as_str().unwrap().to_owned(),
                m["artifactType"].as_str().unwrap().to_owned(),
                m["size"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let expected: Vec<(String, String, usize)> = pushed
        .iter()
        .map(|(d, t, n)| (d.clone(), (*t).to_owned(), *n))
        .collect();
    assert_eq!(listed, expected);
    let (sboms, filtered) = referrers("?artifactType=application%2Fspdx%2Bjson").await;
    assert!(filtered);
    assert_eq!(sboms["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        sboms["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    // No referrers: an empty index, not 404.
    let (none, _) = {
        let response = get(
            &http,
            format!("{base}/v2/{REGISTRY}/signed/referrers/{}", pushed[0].0),
            "viewer-token",
        )
        .await;
        assert_eq!(response.status(), 200);
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        (body, ())
    };
    assert_eq!(none["manifests"], serde_json::json!([]));
    // Deleting a referrer takes it off the list.
    let deleted = http
        .delete(format!(
            "{base}/v2/{REGISTRY}/signed/manifests/{}",
            pushed[0].0
        ))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    let (after, _) = referrers("").await;
    assert_eq!(after["manifests"].as_array().map(Vec::len), Some(1));
}

/// Storage goes down after images are deleted: the server's own collection (every second
/// here, with no grace period) removes a deleted image's blobs while the other images pull
/// whole; `yc-images registry gc` on the stopped server's data directory collects on demand
/// and says how much it freed.
#[tokio::test]
async fn garbage_collection_frees_the_blobs_of_deleted_images() {
    let dir = tempfile::tempdir().unwrap();
    let iam = dir.path().join("iam.json");
    write_iam(
        &iam,
        &[("ajeeditor00000000000", "editor-token", FOLDER, "editor")],
    );
    let seed = dir.path().join("seed");
    seed_registry(&seed, REGISTRY, FOLDER, "kept");
    let server = start_seeded(
        dir.path(),
        &iam,
        &seed,
        &["--gc-interval", "1", "--gc-grace", "0"],
    );
    let http = reqwest::Client::new();
    let base = server.url();
    let push = |name: &str, size: usize| {
        let layout = dir.path().join(name);
        let (digest, layer) = big_layout(&layout, size);
        let listed = cli_json(
            &server,
            "editor-token",
            &[
                "registry",
                "import",
                &layout.to_string_lossy(),
                &format!("{REGISTRY}/{name}:v1"),
            ],
        );
        (
            digest,
            sha256(&layer),
            listed["id"].as_str().unwrap().to_owned(),
        )
    };
    let (_, first_layer, first_image) = push("first", 2 * 1024 * 1024 + 3);
    let blob =
        |layer: &str, repository: &str| format!("{base}/v2/{REGISTRY}/{repository}/blobs/{layer}");
    assert_eq!(
        get(&http, blob(&first_layer, "first"), "editor-token")
            .await
            .status(),
        200
    );
    cli_json(
        &server,
        "editor-token",
        &["registry", "image", "delete", &first_image],
    );
    let mut collected = false;
    for _ in 0..100 {
        if get(&http, blob(&first_layer, "first"), "editor-token")
            .await
            .status()
            == 404
        {
            collected = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(collected, "the deleted image's layer is still stored");
    // The seeded image pulls whole.
    let kept = get(
        &http,
        format!("{base}/v2/{REGISTRY}/app/manifests/v1"),
        "editor-token",
    )
    .await;
    assert_eq!(kept.status(), 200);
    let manifest: Value = serde_json::from_slice(&kept.bytes().await.unwrap()).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        assert_eq!(
            get(&http, blob(digest, "app"), "editor-token")
                .await
                .status(),
            200
        );
    }

    // On demand, on the stopped server's data.
    let (_, _, second_image) = push("second", 1024 * 1024 + 9);
    cli_json(
        &server,
        "editor-token",
        &["registry", "image", "delete", &second_image],
    );
    drop(server);
    let output = Command::new(env!("CARGO_BIN_EXE_yc-images"))
        .args([
            "registry",
            "gc",
            "--grace",
            "0",
            "--format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let freed = report["bytesFreed"].as_i64().unwrap();
    assert!(freed > 1024 * 1024, "{report}");
    assert_eq!(
        report["storedBytes"].as_i64().unwrap(),
        report["storedBytesBefore"].as_i64().unwrap() - freed,
        "{report}"
    );
}

/// Two servers on one PostgreSQL database: a registry created through one (REST) takes a push
/// through the other (the CLI, over `/v2/`), pulls through the first byte for byte, lists its
/// repository through the second, and is deleted through the second once its image is deleted
/// through the first.
#[tokio::test]
async fn replicas_on_postgres_share_registries() {
    let Some(pg) = yc_sql::TestPostgres::fresh().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = ["--database-url", pg.url.as_str()];
    let one = Server::start_with(&dir.path().join("one"), &shared);
    let two = Server::start_with(&dir.path().join("two"), &shared);
    let registries =
        yc_registry_image::RegistryClient::new(yc_operations::ApiClient::rest(&one.url()).unwrap());
    let registry = registries
        .create_and_wait(
            yc_proto_types::yandex::cloud::containerregistry::v1::CreateRegistryRequest {
                folder_id: "b1gshared".into(),
                name: "shared".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let layout = dir.path().join("layout");
    let (digest, layer) = big_layout(&layout, 1024 * 1024 + 1);
    let output = Command::new(env!("CARGO_BIN_EXE_yc-images"))
        .args(["registry", "import", "--format", "json"])
        .arg(&layout)
        .arg(format!("{}/app:v1", registry.id))
        .env("YC_IMAGES_ENDPOINT", two.url())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let image: Value = serde_json::from_slice(&output.stdout).unwrap();
    let http = reqwest::Client::new();
    let pulled = http
        .get(format!(
            "{}/v2/{}/app/blobs/{}",
            one.url(),
            registry.id,
            sha256(&layer)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert!(pulled.bytes().await.unwrap() == layer, "the layer changed");
    let manifest = http
        .get(format!("{}/v2/{}/app/manifests/v1", one.url(), registry.id))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&manifest.bytes().await.unwrap()), digest);
    let repositories = yc_registry_image::RepositoryClient::new(
        yc_operations::ApiClient::connect_grpc(&two.url())
            .await
            .unwrap(),
    );
    let repository = repositories
        .get_by_name(&format!("{}/app", registry.id))
        .await
        .unwrap();
    assert_eq!(repository.name, format!("{}/app", registry.id));
    let refused = registries.delete(&registry.id).await.unwrap_err();
    assert_eq!(refused.grpc_code(), tonic::Code::FailedPrecondition);
    yc_registry_image::RegistryImageClient::new(
        yc_operations::ApiClient::rest(&one.url()).unwrap(),
    )
    .delete_and_wait(image["id"].as_str().unwrap())
    .await
    .unwrap();
    let through_two = yc_registry_image::RegistryClient::new(
        yc_operations::ApiClient::connect_grpc(&two.url())
            .await
            .unwrap(),
    );
    through_two.delete_and_wait(&registry.id).await.unwrap();
    assert_eq!(
        registries.get(&registry.id).await.unwrap_err().grpc_code(),
        tonic::Code::NotFound
    );
    drop((one, two));
    pg.drop_schema().await;
}

/// The registry workflow with unmodified clients: the official Python SDK and python-dxf
/// from PyPI (see `registry_client.py`), single- and multi-platform images, the catalog and
/// tags, deletes, garbage collection. It needs the Python environment `cargo xtask ci`
/// provides.
#[tokio::test]
async fn python_registry_clients_push_pull_list_and_delete() {
    let Some(python) = crate::support::sdk_python("the python-dxf registry client test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--gc-interval", "1", "--gc-grace", "0"]);
    crate::support::run_sdk_script(
        python,
        "registry_client.py",
        &[server.address.as_ref()],
        "python-dxf and the official Python SDK agree with yc-images",
    )
    .await;
}
