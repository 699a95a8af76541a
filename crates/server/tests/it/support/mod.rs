//! What the end-to-end tests share: the real `yc-images` binary, started and stopped.

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use tonic::transport::Channel;

/// A running `yc-images serve`, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: String,
    /// Lines printed before the address.
    pub(crate) preamble: Vec<String>,
}

impl Server {
    pub(crate) fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    pub(crate) fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_on("127.0.0.1:0", data_dir, extra)
    }

    pub(crate) fn start_on(listen: &str, data_dir: &Path, extra: &[&str]) -> Server {
        Self::launch(Self::command(listen, data_dir, extra).stderr(Stdio::inherit()))
    }

    /// `yc-images serve` on `listen` with `data_dir`, logging warnings only.
    pub(crate) fn command(listen: &str, data_dir: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_yc-images"));
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("YC_IMAGES_LOG", "warn")
            // The credentials of the tests' S3 server (moto's), for servers given --blob-store.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        command
    }

    /// Runs `yc-images serve` expecting it to refuse to start; returns what it said.
    pub(crate) fn refused(listen: &str, data_dir: &Path) -> String {
        let output = Self::command(listen, data_dir, &[]).output().unwrap();
        assert!(!output.status.success(), "the server started");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Starts `command` and waits for the address it serves; what it printed before that
    /// is in `preamble`.
    pub(crate) fn launch(command: &mut Command) -> Server {
        let child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting yc-images: {e}"));
        // Owned by a `Server` at once, whose drop stops it whatever happens below.
        let mut server = Server {
            child,
            address: String::new(),
            preamble: Vec::new(),
        };
        let stdout = server
            .child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("no stdout"));
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            let read = reader.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "yc-images ended before it listened: {:?}",
                server.preamble
            );
            if let Some(address) = line.trim().strip_prefix("yc-images listening on ") {
                server.address = address.to_owned();
                return server;
            }
            server.preamble.push(line.trim().to_owned());
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Sends SIGTERM, as a service manager stops a server.
    pub(crate) fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// `kill -9`: no shutdown at all.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `router` on a loopback port of its own; its base URL, `http://<address>`.
pub(crate) async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A gRPC channel to `server`.
pub(crate) async fn channel(server: &Server) -> Channel {
    Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Writes an OCI image layout with one image tagged `tag` into `dir`.
pub(crate) fn write_layout(dir: &Path, seed: &str, tag: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        digest
    };
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"seed":"{seed}"}}}}}}"#
    );
    let layer = format!("layer of {seed}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": write(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": write(layer.as_bytes()), "size": layer.len()}],
    })
    .to_string();
    let digest = write(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    digest
}

/// Writes an OCI image layout with one multi-platform image (an image index of an amd64 and
/// an arm64 image) tagged `tag` into `dir`; returns the index's digest and the platforms'
/// manifest digests.
pub(crate) fn write_multi_platform_layout(
    dir: &Path,
    seed: &str,
    tag: &str,
) -> (String, Vec<String>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write = |bytes: &[u8]| {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        digest
    };
    let mut platforms = Vec::new();
    let mut descriptors = Vec::new();
    for architecture in ["amd64", "arm64"] {
        let config = format!(
            r#"{{"architecture":"{architecture}","os":"linux","config":{{"Labels":{{"seed":"{seed}"}}}}}}"#
        );
        let layer = format!("{architecture} layer of {seed}");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": write(config.as_bytes()), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": write(layer.as_bytes()), "size": layer.len()}],
        })
        .to_string();
        let digest = write(manifest.as_bytes());
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
            "size": manifest.len(), "platform": {"architecture": architecture, "os": "linux"},
        }));
        platforms.push(digest);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descriptors,
    })
    .to_string();
    let digest = write(index.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layout_index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": index.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]});
    std::fs::write(dir.join("index.json"), layout_index.to_string()).unwrap();
    (digest, platforms)
}

/// The Python of the official SDK's environment (`YC_SDK_PYTHON`, which `cargo xtask ci`
/// sets), or `None` after saying on stderr that `test` is skipped (a failure instead when
/// `YC_REQUIRE_SDK=1`).
pub(crate) fn sdk_python(test: &str) -> Option<std::ffi::OsString> {
    let python = std::env::var_os("YC_SDK_PYTHON");
    if python.is_none() {
        assert!(
            !crate::support::required("YC_REQUIRE_SDK"),
            "YC_REQUIRE_SDK=1 or CI=true, but YC_SDK_PYTHON is not set"
        );
        eprintln!("SKIPPED: {test} needs YC_SDK_PYTHON; run `cargo xtask ci`");
    }
    python
}

/// The official Node SDK's `node_modules` (`YC_NODE_SDK`, which `cargo xtask ci` sets), or
/// `None` (the test is skipped, or fails where it must run).
pub(crate) fn node_sdk(test: &str) -> Option<std::ffi::OsString> {
    let modules = std::env::var_os("YC_NODE_SDK");
    if modules.is_none() {
        assert!(
            !crate::support::required("YC_REQUIRE_SDK"),
            "YC_REQUIRE_SDK=1 or CI=true, but YC_NODE_SDK is not set"
        );
        eprintln!("SKIPPED: {test} needs YC_NODE_SDK; run `cargo xtask ci`");
    }
    modules
}

/// Writes an IAM file giving each `(subject, token, folder, role)` its token and role.
pub(crate) fn write_iam(path: &Path, grants: &[(&str, &str, &str, &str)]) {
    let subjects: Vec<serde_json::Value> = grants
        .iter()
        .map(|(subject, token, _, _)| serde_json::json!({"id": subject, "tokens": [token]}))
        .collect();
    let bindings: Vec<serde_json::Value> = grants
        .iter()
        .map(|(subject, _, folder, role)| {
            serde_json::json!({"folderId": folder, "subjectId": subject, "roleId": role})
        })
        .collect();
    std::fs::write(
        path,
        serde_json::json!({"subjects": subjects, "accessBindings": bindings}).to_string(),
    )
    .unwrap();
}

/// Runs `tests/<script>` with the SDK's `python` and `args`, and checks it succeeded and said
/// `said`.
pub(crate) async fn run_sdk_script(
    python: std::ffi::OsString,
    script: &str,
    args: &[&std::ffi::OsStr],
    said: &str,
) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running the SDK: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK run failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(said), "{stdout}");
}

/// Writes into the seed directory `seed` a registry `id` of `folder` holding one image layout
/// (repository `app`, tag `v1`, made from `layer`).
pub(crate) fn seed_registry(seed: &Path, id: &str, folder: &str, layer: &str) {
    let registry = seed.join("container-registry").join(id);
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(
        registry.join("registry.json"),
        serde_json::json!({"folderId": folder, "name": layer}).to_string(),
    )
    .unwrap();
    write_layout(&registry.join("app"), layer, "v1");
}

/// Writes into the seed directory `seed` a READY compute image `id` of family `base` in
/// `folder`, named `name`.
pub(crate) fn seed_compute_image(seed: &Path, id: &str, folder: &str, name: &str) {
    let images = seed.join("compute");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(
        images.join(format!("{id}.json")),
        serde_json::json!({
            "id": id, "folderId": folder, "name": name, "family": "base",
            "status": "READY", "storageSize": "4194304", "minDiskSize": "4194304",
            "os": {"type": "LINUX"}, "createdAt": "2026-01-02T03:04:05Z",
        })
        .to_string(),
    )
    .unwrap();
}

/// Writes into the seed directory `seed` a READY disk `id` of `folder` named `name`, 8 GiB,
/// with `extra` fields (REST JSON) on top.
pub(crate) fn seed_disk(seed: &Path, id: &str, folder: &str, name: &str, extra: serde_json::Value) {
    let mut disk = serde_json::json!({
        "id": id, "folderId": folder, "name": name, "status": "READY",
        "size": "8589934592", "typeId": "network-ssd", "zoneId": "ru-central1-a",
        "createdAt": "2026-01-02T03:04:05Z",
    });
    merge(&mut disk, extra);
    write_seed(&seed.join("compute/disks"), id, &disk);
}

/// Writes into the seed directory `seed` a READY snapshot `id` of `folder` named `name` of an
/// 8 GiB disk, taking 1 GiB, with `extra` fields (REST JSON) on top.
pub(crate) fn seed_snapshot(
    seed: &Path,
    id: &str,
    folder: &str,
    name: &str,
    extra: serde_json::Value,
) {
    let mut snapshot = serde_json::json!({
        "id": id, "folderId": folder, "name": name, "status": "READY",
        "diskSize": "8589934592", "storageSize": "1073741824",
        "createdAt": "2026-01-02T03:04:05Z",
    });
    merge(&mut snapshot, extra);
    write_seed(&seed.join("compute/snapshots"), id, &snapshot);
}

fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

fn write_seed(dir: &Path, id: &str, value: &serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{id}.json")), value.to_string()).unwrap();
}

/// A server with the IAM file `iam`, seeded from `seed`, its data in `dir/data`, and `extra`
/// options.
pub(crate) fn start_seeded(dir: &Path, iam: &Path, seed: &Path, extra: &[&str]) -> Server {
    let (iam, seed) = (iam.to_string_lossy(), seed.to_string_lossy());
    let mut args = vec!["--iam", &iam, "--seed", &seed];
    args.extend_from_slice(extra);
    Server::start_with(&dir.join("data"), &args)
}

/// Whether a test that needs an outside tool must run rather than skip: `var=1` (which
/// `cargo xtask ci` sets when it finds the tool) or `CI=true`.
pub(crate) fn required(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| v == "true")
}

/// Whether skopeo runs here; if not, says on stderr that `test` is skipped (a failure instead
/// under `CI=true` or `YC_REQUIRE_SKOPEO=1`).
pub(crate) fn skopeo(test: &str) -> bool {
    if Command::new("skopeo").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        !required("YC_REQUIRE_SKOPEO"),
        "YC_REQUIRE_SKOPEO=1 or CI=true, but skopeo does not run"
    );
    eprintln!("SKIPPED: {test} needs skopeo (apt-get install skopeo)");
    false
}
