//! The registry API under load: a push and a pull of a 200 MiB image with skopeo (the copy a
//! user makes), against `yc-images serve` on its embedded store, on PostgreSQL when one is
//! reachable, and with blobs in S3-compatible object storage (moto's S3 server on loopback,
//! from the SDK venv), and against Debian's `docker-registry` (the distribution project's
//! reference server) with filesystem storage and with the same S3 server, in turn in one run
//! on this machine. The memory each server takes on during a push is measured too (its peak
//! resident set over what it held before).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::target_dir;

/// The size of the image's one layer: random, so that nothing compresses it.
const LAYER_MIB: usize = 200;
/// Pushes and pulls against each server; the median is reported.
const ROUNDS: usize = 3;
/// The registry every push goes to on yc-images (seeded).
const REGISTRY: &str = "crpbenchregistry0000";
/// Where `cargo xtask bench` finds PostgreSQL (as the tests do).
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The pause before each transfer.
const QUIET: Duration = Duration::from_secs(3);
/// The target: yc-images at least as fast as the reference, push and pull.
pub(crate) const TARGET: f64 = 1.0;

/// The seconds of each server's pushes and pulls.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Transfers {
    pub(crate) server: String,
    pub(crate) push_seconds: Vec<f64>,
    pub(crate) pull_seconds: Vec<f64>,
    /// MiB the server's resident set rose to over what it was before each push.
    #[serde(default)]
    pub(crate) push_memory_mib: Vec<f64>,
}

impl Transfers {
    fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
    }

    pub(crate) fn push(&self) -> f64 {
        Self::median(&self.push_seconds)
    }

    pub(crate) fn pull(&self) -> f64 {
        Self::median(&self.pull_seconds)
    }
}

/// Everything [`run`] measured: the reference first.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct RegistryResults {
    pub(crate) servers: Vec<Transfers>,
    /// yc-images with blobs in S3: its peak resident set (MiB) after the rounds' pushes, and
    /// after one more push of a layer [`LARGE`] times as large.
    #[serde(default)]
    pub(crate) s3_peak_mib: Option<(f64, f64)>,
}

/// How many times larger the last layer pushed to yc-images on S3 is.
const LARGE: usize = 4;

impl RegistryResults {
    /// The reference's median time over yc-images' on its embedded store, push and pull:
    /// 1.0 is as fast, more is faster.
    pub(crate) fn embedded_ratios(&self) -> Option<(f64, f64)> {
        let reference = self.servers.first()?;
        let embedded = self.servers.get(1)?;
        Some((
            reference.push() / embedded.push(),
            reference.pull() / embedded.pull(),
        ))
    }
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_listening(address: &str, what: &str) -> Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(address).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {address}")
}

/// `yc-images serve` with the registry seeded; its address.
fn start_yc_images(
    binary: &Path,
    work: &Path,
    name: &str,
    extra: &[&str],
) -> Result<(Running, String)> {
    let seed = work.join(format!("seed-{name}/container-registry/{REGISTRY}"));
    fs::create_dir_all(&seed)?;
    fs::write(
        seed.join("registry.json"),
        r#"{"folderId": "b1gbenchfolder", "name": "bench"}"#,
    )?;
    let address = format!("127.0.0.1:{}", free_port()?);
    let child = Command::new(binary)
        .args(["serve", "--listen", &address, "--data-dir"])
        .arg(work.join(format!("data-{name}")))
        .arg("--seed")
        .arg(work.join(format!("seed-{name}")))
        .args(extra)
        .env("YC_IMAGES_LOG", "warn")
        // Credentials for the S3 server (moto takes any).
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .stdout(Stdio::null())
        .spawn()
        .context("starting yc-images serve")?;
    let running = Running(child);
    wait_listening(&address, "yc-images serve")?;
    Ok((running, address))
}

/// Debian's `docker-registry` with filesystem storage in `work`, or with the bucket `s3`
/// names; its address.
fn start_reference(work: &Path, s3: Option<(&str, &str)>) -> Result<(Running, String)> {
    let address = format!("127.0.0.1:{}", free_port()?);
    let storage = match s3 {
        None => format!(
            "  filesystem: {{rootdirectory: {}}}\n",
            work.join("docker-registry").display()
        ),
        // Streamed through the server, as yc-images does by default.
        Some((endpoint, bucket)) => format!(
            "  s3: {{accesskey: bench, secretkey: bench, region: us-east-1, \
             regionendpoint: \"{endpoint}\", bucket: {bucket}, secure: false, v4auth: true, \
             chunksize: {PART_SIZE}}}\n  redirect: {{disable: true}}\n"
        ),
    };
    let config = work.join(format!("docker-registry-{}.yml", s3.is_some()));
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n{storage}  delete: {{enabled: true}}\nhttp: {{addr: \"{address}\"}}\n",
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        // Its AWS SDK refuses to start with a CA bundle for an endpoint that is plain HTTP.
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting docker-registry (apt-get install docker-registry)")?;
    let running = Running(child);
    wait_listening(&address, "docker-registry")?;
    Ok((running, address))
}

/// The multipart part size of both servers on S3 (yc-images' default).
const PART_SIZE: usize = 16 << 20;

/// moto's S3 server (from the SDK venv) with the buckets `buckets`; its endpoint.
fn start_s3(buckets: &[&str]) -> Result<(Running, String)> {
    use std::io::{Read as _, Write as _};
    let python = crate::sdk::ensure_env()?;
    let address = format!("127.0.0.1:{}", free_port()?);
    let port = address.rsplit(':').next().unwrap_or_default().to_owned();
    let child = Command::new(python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting moto's S3 server")?;
    let running = Running(child);
    wait_listening(&address, "moto's S3 server")?;
    for bucket in buckets {
        let mut socket = std::net::TcpStream::connect(&address)?;
        write!(
            socket,
            "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        socket.read_to_string(&mut answer)?;
        if !answer.starts_with("HTTP/1.1 200") {
            bail!(
                "making the bucket {bucket}: {}",
                answer.lines().next().unwrap_or_default()
            );
        }
    }
    Ok((running, format!("http://{address}")))
}

/// A process's resident set and its peak since the last reset, in MiB (Linux).
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the process's peak resident set to its current one (Linux, `clear_refs`).
fn reset_peak(pid: u32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// A little generator of bytes nothing compresses.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Writes an OCI layout of one image whose layer is new (`seed` makes it so) into `dir`.
fn write_layout(dir: &Path, seed: u64, mib: usize) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let write = |bytes: &[u8]| -> Result<String> {
        let digest = sha256(bytes);
        fs::write(blobs.join(&digest[7..]), bytes)?;
        Ok(digest)
    };
    let mut layer = vec![0u8; mib << 20];
    Noise(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).fill(&mut layer);
    let layer_digest = write(&layer)?;
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": write(config)?, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let manifest_digest = write(manifest.as_bytes())?;
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }]});
    fs::write(dir.join("index.json"), index.to_string())?;
    Ok(())
}

/// How long `skopeo copy from to` takes.
fn skopeo_copy(from: &str, to: &str) -> Result<f64> {
    let started = Instant::now();
    let output = Command::new("skopeo")
        .args([
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ])
        .output()
        .context("running skopeo (apt-get install skopeo)")?;
    let seconds = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!(
            "skopeo copy {from} {to}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(seconds)
}

/// Whether PostgreSQL answers where the tests look for it.
fn postgres_reachable() -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 5432)),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Builds the server and measures the pushes and pulls of every server, in turn.
pub(crate) fn run() -> Result<RegistryResults> {
    for (tool, package) in [("skopeo", "skopeo"), ("docker-registry", "docker-registry")] {
        if !Command::new("which")
            .arg(tool)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            bail!("the registry benchmark needs {tool}: apt-get install {package}");
        }
    }
    let binary = crate::load::build_release(&[])?.join("yc-images");
    let work = tempfile::tempdir()?;
    let (reference_process, reference) = start_reference(work.path(), None)?;
    let (embedded_process, embedded) = start_yc_images(&binary, work.path(), "embedded", &[])?;
    let (_s3, endpoint) = start_s3(&["reference", "yc-images"])?;
    let (reference_s3_process, reference_s3) =
        start_reference(work.path(), Some((&endpoint, "reference")))?;
    let part_size = PART_SIZE.to_string();
    let (s3_process, s3) = start_yc_images(
        &binary,
        work.path(),
        "s3",
        &[
            "--blob-store",
            "s3://yc-images/registry",
            "--blob-store-endpoint",
            &endpoint,
            "--blob-store-part-size",
            &part_size,
        ],
    )?;
    let mut pids = vec![
        reference_process.0.id(),
        embedded_process.0.id(),
        reference_s3_process.0.id(),
        s3_process.0.id(),
    ];
    let mut servers = vec![
        (
            "docker-registry (filesystem)".to_owned(),
            reference,
            "bench".to_owned(),
        ),
        (
            "yc-images (embedded store)".to_owned(),
            embedded,
            REGISTRY.to_owned(),
        ),
        (
            "docker-registry (S3: moto)".to_owned(),
            reference_s3,
            "bench".to_owned(),
        ),
        (
            "yc-images (embedded store, blobs in S3: moto)".to_owned(),
            s3,
            REGISTRY.to_owned(),
        ),
    ];
    let _postgres = if postgres_reachable() {
        let (running, address) = start_yc_images(
            &binary,
            work.path(),
            "postgres",
            &["--database-url", POSTGRES],
        )?;
        servers.push((
            "yc-images (PostgreSQL)".to_owned(),
            address,
            REGISTRY.to_owned(),
        ));
        pids.push(running.0.id());
        Some(running)
    } else {
        println!("bench: no PostgreSQL on 127.0.0.1:5432; the registry benchmark skips it");
        None
    };
    let mut results: Vec<Transfers> = servers
        .iter()
        .map(|(name, _, _)| Transfers {
            server: name.clone(),
            push_seconds: Vec::new(),
            pull_seconds: Vec::new(),
            push_memory_mib: Vec::new(),
        })
        .collect();
    let layout = work.path().join("layout");
    let pulled = work.path().join("pulled");
    // Layers no earlier run pushed either (a PostgreSQL database outlives a run).
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    for round in 0..ROUNDS {
        for (((name, address, prefix), figures), pid) in
            servers.iter().zip(results.iter_mut()).zip(&pids)
        {
            // A new layer every time: no server has it, no client cache can mount it.
            seed += 1;
            write_layout(&layout, seed, LAYER_MIB)?;
            // Each transfer starts on a quiet machine: whatever a server does after the last
            // (yc-images copies its log into its database) is not charged to the next one.
            std::thread::sleep(QUIET);
            let remote = format!("docker://{address}/{prefix}/bench{round}-{seed}:v1");
            reset_peak(*pid);
            let before = memory_mib(*pid);
            let push = skopeo_copy(&format!("oci:{}:v1", layout.display()), &remote)?;
            let held = match (before, memory_mib(*pid)) {
                (Some((rss, _)), Some((_, peak))) => (peak - rss).max(0.0),
                _ => f64::NAN,
            };
            let _ = fs::remove_dir_all(&pulled);
            let pull = skopeo_copy(&remote, &format!("oci:{}:v1", pulled.display()))?;
            println!("bench: {name}: push {push:.2} s (+{held:.0} MiB), pull {pull:.2} s");
            let _ = std::io::stdout().flush();
            figures.push_seconds.push(push);
            figures.pull_seconds.push(pull);
            figures.push_memory_mib.push(held);
        }
    }
    // Memory held does not grow with the layer: the peak after the rounds, then after a layer
    // several times as large.
    let s3_pid = s3_process.0.id();
    let before = memory_mib(s3_pid).map(|(_, peak)| peak);
    seed += 1;
    write_layout(&layout, seed, LAYER_MIB * LARGE)?;
    std::thread::sleep(QUIET);
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/{REGISTRY}/large-{seed}:v1", servers[3].1),
    )?;
    let _ = fs::remove_dir_all(&layout);
    let after = memory_mib(s3_pid).map(|(_, peak)| peak);
    let s3_peak_mib = before.zip(after);
    if let Some((before, after)) = s3_peak_mib {
        println!(
            "bench: yc-images on S3: peak resident set {before:.0} MiB, {after:.0} MiB after a {} MiB layer",
            LAYER_MIB * LARGE
        );
    }
    let results = RegistryResults {
        servers: results,
        s3_peak_mib,
    };
    fs::write(results_path(), serde_json::to_string_pretty(&results)?)?;
    Ok(results)
}

/// Where the last run's figures are kept, for `cargo xtask bench --report`.
pub(crate) fn results_path() -> std::path::PathBuf {
    target_dir().join("yc-images-registry-load.json")
}

/// The report's section on pushes and pulls.
pub(crate) fn section(results: &RegistryResults) -> Result<String> {
    let large = match results.s3_peak_mib {
        Some((before, after)) => format!(
            " yc-images on S3, its peak resident set: {before:.0} MiB after the\n\
             {LAYER_MIB} MiB pushes, {after:.0} MiB after one more push of a {} MiB layer.",
            LAYER_MIB * LARGE
        ),
        None => String::new(),
    };
    let mut table = String::from(
        "| server | push (median) | push MiB/s | pull (median) | pull MiB/s | push, pull vs the reference | memory taken on by a push (most) |\n|---|---|---|---|---|---|---|\n",
    );
    for s in &results.servers {
        // Each server against the reference on the same storage: the filesystem one for the
        // database backends, the S3 one for S3.
        let on_s3 = s.server.contains("S3");
        let reference = results
            .servers
            .iter()
            .find(|r| r.server.starts_with("docker-registry") && r.server.contains("S3") == on_s3);
        let vs = match reference {
            Some(r) if r.server != s.server => {
                format!("{:.2}×, {:.2}×", r.push() / s.push(), r.pull() / s.pull())
            }
            _ => "1×, 1×".to_owned(),
        };
        let memory = s.push_memory_mib.iter().copied().fold(f64::NAN, f64::max);
        writeln!(
            table,
            "| {} | {:.2} s | {:.0} | {:.2} s | {:.0} | {vs} | {} |",
            s.server,
            s.push(),
            LAYER_MIB as f64 / s.push(),
            s.pull(),
            LAYER_MIB as f64 / s.pull(),
            if memory.is_nan() {
                "–".to_owned()
            } else {
                format!("{memory:.0} MiB")
            },
        )?;
    }
    Ok(format!(
        "## Pushing and pulling images\n\n\
         `skopeo copy --preserve-digests` of an image with one {LAYER_MIB} MiB layer of random\n\
         bytes from an OCI layout to each server (push) and back into a new layout (pull), each\n\
         a new layer, {ROUNDS} times in turn after {} s of quiet each, the median shown:\n\
         yc-images (release build, no\n\
         IAM) on its embedded store, on PostgreSQL at 127.0.0.1:5432 and with blobs in\n\
         S3-compatible object storage (moto's S3 server, from the SDK venv, on loopback; parts\n\
         of {} MiB), and Debian's `docker-registry` (the distribution project's reference\n\
         server) with filesystem storage and on the same S3 server (same part size, pulls\n\
         streamed through it), on the same machine. \"vs the reference\" is the reference's\n\
         time over yc-images' on the same kind of storage: 1× is as fast, more is faster; the\n\
         target is {TARGET:.1}× or more for both on the embedded store. The S3 rows are bound by\n\
         moto (Python): they compare the two servers' S3 paths, not S3's speed. Memory: the\n\
         most the server's resident set rose during a push over what it held before\n\
         (`VmHWM` after resetting it, minus `VmRSS`; the allocator keeps what it freed, so the\n\
         first push shows the most): bounded by the upload's buffers (on S3, two parts), not\n\
         by the layer.{large}\n\n{table}",
        QUIET.as_secs(),
        PART_SIZE >> 20
    ))
}
