//! An S3-compatible server on loopback for tests: moto's, from the Python environment
//! `cargo xtask ci` makes (`YC_SDK_PYTHON`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BlobError, ObjectStorage, ObjectStorageConfig};

/// An S3 server of its own (moto in server mode) with one bucket, stopped when dropped.
#[derive(Debug)]
pub struct TestS3 {
    child: Child,
    python: std::ffi::OsString,
    port: u16,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The bucket made for the test.
    pub bucket: String,
}

impl TestS3 {
    /// Starts the server and makes a bucket, or `None` after saying on stderr that `test` is
    /// skipped because there is no Python with moto (`YC_SDK_PYTHON`); under `CI=true` or
    /// `YC_REQUIRE_SDK=1` that fails the test instead.
    pub async fn start(test: &str) -> Option<TestS3> {
        let required = std::env::var_os("YC_REQUIRE_SDK").is_some_and(|v| v == "1")
            || std::env::var_os("CI").is_some_and(|v| v == "true");
        let Some(python) = std::env::var_os("YC_SDK_PYTHON") else {
            assert!(
                !required,
                "CI=true or YC_REQUIRE_SDK=1, but YC_SDK_PYTHON (with moto) is not set"
            );
            eprintln!("SKIPPED: {test} needs an S3 server: YC_SDK_PYTHON; run `cargo xtask ci`");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = moto(&python, port);
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut server = TestS3 {
            child,
            python,
            port,
            endpoint,
            bucket: format!("yc-test-{port}"),
        };
        server.wait_ready().await;
        server.make_bucket().await;
        Some(server)
    }

    async fn make_bucket(&self) {
        let made = reqwest::Client::new()
            .put(format!("{}/{}", self.endpoint, self.bucket))
            .send()
            .await
            .expect("making the test bucket");
        assert!(made.status().is_success(), "making the bucket: {made:?}");
    }

    /// Stops the server (an outage of the object storage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, with the bucket made again (empty: moto keeps
    /// nothing across a restart).
    pub async fn restart(&mut self) {
        self.stop();
        self.child = moto(&self.python, self.port);
        self.wait_ready().await;
        self.make_bucket().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto's S3 server exited: {status} (is moto in YC_SDK_PYTHON's venv?)");
            }
            if reqwest::get(&self.endpoint).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "moto's S3 server did not answer at {}",
                self.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Configuration for the bucket under `prefix`, with S3's smallest part size.
    pub fn config(&self, prefix: &str) -> ObjectStorageConfig {
        ObjectStorageConfig {
            url: format!("s3://{}/{prefix}", self.bucket),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            part_size: super::MIN_PART_SIZE,
            ..ObjectStorageConfig::default()
        }
    }

    /// The object storage of [`config`](Self::config).
    pub fn storage(&self, prefix: &str) -> Result<ObjectStorage, BlobError> {
        ObjectStorage::open(&self.config(prefix))
    }

    /// The keys of the objects in the bucket under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let listing = self.get(&format!("?list-type=2&prefix={prefix}")).await;
        tags(&listing, "Key")
    }

    /// The multipart uploads in the bucket not completed or aborted.
    pub async fn incomplete_uploads(&self) -> Vec<String> {
        tags(&self.get("?uploads").await, "UploadId")
    }

    async fn get(&self, query: &str) -> String {
        reqwest::get(format!("{}/{}{query}", self.endpoint, self.bucket))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("listing the bucket")
            .text()
            .await
            .expect("reading the bucket's listing")
    }
}

/// moto's S3 server on `port`.
fn moto(python: &std::ffi::OsStr, port: u16) -> Child {
    Command::new(python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting moto's S3 server with {python:?}: {e}"))
}

/// The texts of `<tag>…</tag>` in an S3 listing.
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(text, _)| text.to_owned()))
        .collect()
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
