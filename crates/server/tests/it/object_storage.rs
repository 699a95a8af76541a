//! Registry blobs in S3-compatible object storage (`--blob-store`), against an S3 server on
//! loopback (moto's): skopeo pushing through one replica and pulling through another that
//! shares the PostgreSQL database and the bucket (and redirects pulls to pre-signed URLs); an
//! upload started on one replica and continued on the other; `kill -9` during a multipart
//! upload, then the upload continued or cancelled; `registry move-blobs` and `registry gc`.

use std::process::Command;
use std::time::Duration;

use crate::registry_push::{REGISTRY, SlowPatch, big_layout, patch, start_upload, start_with};
use crate::support::{Server, sha256, skopeo};
use yc_registry_image::blobs::{MIN_PART_SIZE, TestS3};

/// The options of a server keeping blobs in the test bucket under `prefix`.
fn blob_store(s3: &TestS3, prefix: &str) -> Vec<String> {
    vec![
        "--blob-store".into(),
        format!("s3://{}/{prefix}", s3.bucket),
        "--blob-store-endpoint".into(),
        s3.endpoint.clone(),
        "--blob-store-part-size".into(),
        MIN_PART_SIZE.to_string(),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn run_skopeo(args: &[&str]) {
    let output = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Content of `len` bytes that differs from the tests' other blobs.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 241) as u8 ^ (i >> 12) as u8 ^ seed)
        .collect()
}

async fn pull(http: &reqwest::Client, base: &str, repo: &str, digest: &str) -> Vec<u8> {
    let pulled = http
        .get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200, "{pulled:?}");
    pulled.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_through_two_replicas_sharing_postgres_and_a_bucket() {
    if !skopeo("skopeo_through_two_replicas_sharing_postgres_and_a_bucket") {
        return;
    }
    let Some(pg) = yc_sql::TestPostgres::fresh().await else {
        return;
    };
    let Some(s3) = TestS3::start("skopeo_through_two_replicas_sharing_postgres_and_a_bucket").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut shared = vec!["--database-url".to_owned(), pg.url.clone()];
    shared.extend(blob_store(&s3, "shared"));
    let one = Server::start_with(&dir.path().join("one"), &strs(&shared));
    shared.extend(["--blob-store-redirect".to_owned(), "60".to_owned()]);
    let two = Server::start_with(&dir.path().join("two"), &strs(&shared));
    let registry =
        yc_registry_image::RegistryClient::new(yc_operations::ApiClient::rest(&one.url()).unwrap())
            .create_and_wait(
                yc_proto_types::yandex::cloud::containerregistry::v1::CreateRegistryRequest {
                    folder_id: "b1gshared".into(),
                    name: "shared".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();

    // skopeo pushes through one and pulls through two (redirected to the bucket).
    let layout = dir.path().join("layout");
    let (_, layer) = big_layout(&layout, 2 * MIN_PART_SIZE + 12_345);
    let address = |server: &Server| server.url().trim_start_matches("http://").to_owned();
    run_skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{}/{}/app:v1", address(&one), registry.id),
    ]);
    let back = dir.path().join("back");
    run_skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{}/{}/app:v1", address(&two), registry.id),
        &format!("oci:{}:v1", back.display()),
    ]);
    let layer_back = std::fs::read(back.join("blobs/sha256").join(&sha256(&layer)[7..])).unwrap();
    assert!(layer_back == layer, "the layer changed on the way");

    // Pulls through two are redirected to a pre-signed URL that reads the object.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirected = plain
        .get(format!(
            "{}/v2/{}/app/blobs/{}",
            two.url(),
            registry.id,
            sha256(&layer)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 307);
    let location = redirected.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(location.starts_with(&s3.endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");

    // An upload started on one and continued on two; finished on two, read back through
    // one, whole and by range.
    let http = reqwest::Client::new();
    let repo = format!("{}/app", registry.id);
    let data = content(MIN_PART_SIZE + 3 * 1024 * 1024 + 17, 1);
    let digest = sha256(&data);
    let started = http
        .post(format!("{}/v2/{repo}/blobs/uploads/", one.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let cut = MIN_PART_SIZE - 100;
    for (server, from, to) in [(&one, 0, cut), (&two, cut, data.len())] {
        let (status, code) = patch(
            &http,
            format!("{}{location}", server.url()),
            format!("{from}-{}", to - 1),
            data[from..to].to_vec(),
        )
        .await;
        assert_eq!(status, 202, "{code}");
    }
    let finished = http
        .put(format!("{}{location}?digest={digest}", two.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 201);
    assert!(pull(&http, &one.url(), &repo, &digest).await == data);
    let ranged = http
        .get(format!("{}/v2/{repo}/blobs/{digest}", one.url()))
        .header("range", format!("bytes={}-{}", cut - 10, cut + 9))
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), data[cut - 10..cut + 10]);

    // Every blob is an object (layer, config, manifest, the raw upload), nothing is left
    // open, and the database holds no content.
    assert_eq!(s3.keys("shared/blobs/").await.len(), 4);
    assert_eq!(s3.incomplete_uploads().await, Vec::<String>::new());
    let db = yc_sql::Db::Postgres(pg.pool.clone());
    let pieces: Option<i64> = db
        .fetch_scalar(&yc_sql::query("SELECT COUNT(*) FROM cr_blob_data"))
        .await
        .unwrap();
    assert_eq!(pieces, Some(0));
    drop((one, two));
    pg.drop_schema().await;
}

/// Waits until the bucket has no multipart upload open (the server aborts them in the
/// background once an upload is cancelled).
async fn wait_no_incomplete_uploads(s3: &TestS3) {
    for _ in 0..100 {
        if s3.incomplete_uploads().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "multipart uploads left open: {:?}",
        s3.incomplete_uploads().await
    );
}

/// `kill -9` while a request streams into a multipart upload: after the restart the upload
/// holds exactly the bytes acknowledged before (the request cut off counts for nothing), and
/// continues from there to the right blob; another upload cut off the same way is cancelled,
/// and its multipart upload aborted; one abandoned is removed (aborted) after the upload
/// lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_multipart_upload_then_continue_or_cancel() {
    let Some(s3) = TestS3::start("kill_9_during_a_multipart_upload_then_continue_or_cancel").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = blob_store(&s3, "k");
    let data = content(3 * MIN_PART_SIZE + 4321, 2);
    let digest = sha256(&data);
    let acknowledged = MIN_PART_SIZE + 1024 * 1024;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let mut server = start_with(dir.path(), &strs(&args));
    // The seeded images' blobs.
    let seeded = s3.keys("k/blobs/").await.len();
    let mut locations = Vec::new();
    for _ in 0..2 {
        let base = server.url();
        let location = start_upload(&http, &base).await;
        let (status, code) = patch(
            &http,
            format!("{base}{location}"),
            format!("0-{}", acknowledged - 1),
            data[..acknowledged].to_vec(),
        )
        .await;
        assert_eq!(status, 202, "{code}");
        locations.push(location);
    }
    // A request that sends more than a part, and is cut off by kill -9 half-way.
    let cut_off = SlowPatch::start(
        &server.address,
        &locations[0],
        data.len() - acknowledged,
        &data[acknowledged..acknowledged + MIN_PART_SIZE + 1000],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill();
    drop(cut_off);
    server = start_with(dir.path(), &strs(&args));
    let base = server.url();

    // The upload holds what was acknowledged, no more.
    let status = http
        .get(format!("{base}{}", locations[0]))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(
        status.headers()["range"].to_str().unwrap(),
        format!("0-{}", acknowledged - 1)
    );
    let (status, code) = patch(
        &http,
        format!("{base}{}", locations[0]),
        format!("{acknowledged}-{}", data.len() - 1),
        data[acknowledged..].to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{code}");
    let finished = http
        .put(format!("{base}{}?digest={digest}", locations[0]))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), 201);
    let repo = format!("{REGISTRY}/app");
    assert!(pull(&http, &base, &repo, &digest).await == data);

    // The other upload is cancelled: its multipart upload is aborted.
    let cancelled = http
        .delete(format!("{base}{}", locations[1]))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 204);
    wait_no_incomplete_uploads(&s3).await;
    assert_eq!(
        s3.keys("k/blobs/").await.len(),
        seeded + 1,
        "the seeded blobs and the one finished"
    );

    // An upload abandoned by a killed server: once past the upload lifetime, the restarted
    // server's collection removes it and aborts its multipart upload.
    let location = start_upload(&http, &base).await;
    let (status, _) = patch(
        &http,
        format!("{base}{location}"),
        format!("0-{}", acknowledged - 1),
        data[..acknowledged].to_vec(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(s3.incomplete_uploads().await.len(), 1);
    server.kill();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut expiring = strs(&args);
    expiring.extend(["--upload-lifetime", "1", "--gc-interval", "1"]);
    let server = start_with(dir.path(), &expiring);
    wait_no_incomplete_uploads(&s3).await;
    let gone = http
        .get(format!("{}{location}", server.url()))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert!(pull(&http, &server.url(), &repo, &digest).await == data);
}

/// `registry move-blobs` moves the blobs of an embedded store to the bucket and back, each
/// verified, while they stay pullable; `registry gc` removes the objects of blobs no image
/// needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_blobs_and_gc_through_the_command_line() {
    let Some(s3) = TestS3::start("move_blobs_and_gc_through_the_command_line").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let data = content(MIN_PART_SIZE + 99, 3);
    let digest = sha256(&data);
    let repo = format!("{REGISTRY}/app");
    // Pushed while blobs go to the database.
    let server = start_with(dir.path(), &[]);
    let pushed = http
        .post(format!(
            "{}/v2/{repo}/blobs/uploads/?digest={digest}",
            server.url()
        ))
        .bearer_auth("editor-token")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    drop(server);

    let args = blob_store(&s3, "mv");
    let cli = |command: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_yc-images"))
            .args(["registry"])
            .args(command)
            .args(["--data-dir"])
            .arg(dir.path().join("data"))
            .args(&args)
            .args(["--format", "json"])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let moved = cli(&["move-blobs", "--to", "object-storage"]);
    // The seeded image's blobs and the pushed one.
    assert!(moved["blobsMoved"].as_u64().unwrap() >= 2, "{moved}");
    assert_eq!(moved["blobsSkipped"], 0);
    let objects = s3.keys("mv/blobs/").await.len() as u64;
    assert_eq!(objects, moved["blobsMoved"].as_u64().unwrap());

    let server = start_with(dir.path(), &strs(&args));
    assert!(pull(&http, &server.url(), &repo, &digest).await == data);
    drop(server);

    // No image needs the pushed blob: gc removes its object.
    let collected = cli(&["gc", "--grace", "0"]);
    assert_eq!(collected["blobsRemoved"], 1, "{collected}");
    assert_eq!(s3.keys("mv/blobs/").await.len() as u64, objects - 1);

    let back = cli(&["move-blobs", "--to", "database"]);
    assert_eq!(back["blobsMoved"].as_u64().unwrap(), objects - 1, "{back}");
    assert_eq!(s3.keys("mv/blobs/").await, Vec::<String>::new());
}

/// The object storage goes down: pushes and pulls of content there are refused with 503
/// `UNAVAILABLE` (in seconds, not hanging), nothing half-pushed becomes visible, the rest of
/// the server keeps answering; once the storage is back, pushes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_storage_outage_is_503_and_passes() {
    let Some(mut s3) = TestS3::start("an_object_storage_outage_is_503_and_passes").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &strs(&blob_store(&s3, "o")));
    let base = server.url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let repo = format!("{REGISTRY}/app");
    let push = |data: Vec<u8>| {
        let (http, url) = (
            http.clone(),
            format!("{base}/v2/{repo}/blobs/uploads/?digest={}", sha256(&data)),
        );
        async move {
            http.post(url)
                .bearer_auth("editor-token")
                .body(data)
                .send()
                .await
                .unwrap()
        }
    };
    let before = content(MIN_PART_SIZE + 7, 4);
    assert_eq!(push(before.clone()).await.status(), 201);

    s3.stop();
    let during = content(MIN_PART_SIZE + 9, 5);
    let refused = push(during.clone()).await;
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{body}");
    let pulled = http
        .get(format!("{base}/v2/{repo}/blobs/{}", sha256(&before)))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert!(
        pulled.status() == 503 || pulled.bytes().await.is_err(),
        "a pull with the storage down is refused or cut off"
    );
    // Nothing of the refused push is visible; the rest of the server answers.
    let head = http
        .head(format!("{base}/v2/{repo}/blobs/{}", sha256(&during)))
        .bearer_auth("editor-token")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    let listed = http
        .get(format!(
            "{base}/container-registry/v1/images?registryId={REGISTRY}"
        ))
        .bearer_auth("viewer-token")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    s3.restart().await;
    assert_eq!(push(during.clone()).await.status(), 201);
    assert!(pull(&http, &base, &repo, &sha256(&during)).await == during);
}
