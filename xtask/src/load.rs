//! The server under load: `yc-images serve` on its embedded store, seeded with Compute images,
//! and the ceiling (`crates/server/examples/ceiling.rs`, a bare tonic and axum server that
//! answers the same calls with the same fixed images), driven the same way in one run by
//! h2load at a fixed concurrency: Get and List, over gRPC (HTTP/2) and REST (HTTP/1.1).

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use prost::Message;

use crate::{project_root, target_dir};

/// How many images the server is seeded with.
const IMAGES: usize = 1000;
const FOLDER: &str = "b1gbenchfolder";
/// Seconds measured per run, after the warm-up.
const DURATION: u32 = 8;
/// Runs of each call against each server, alternating; the median run is reported, since a
/// shared 2-core machine varies by a fifth from one run to the next.
const ROUNDS: usize = 5;
const WARM_UP: u32 = 2;
/// gRPC: connections × streams per connection; REST: connections.
const GRPC_CONNECTIONS: u32 = 4;
const GRPC_STREAMS: u32 = 8;
const REST_CONNECTIONS: u32 = 32;
/// The share of the ceiling's throughput gRPC Get must reach.
pub(crate) const GRPC_GET_TARGET: f64 = 0.90;
/// The shares of the ceiling's throughput each call is to reach, on paired runs: by call and
/// transport, as the scenarios name them.
const TARGETS: [(&str, &str, f64); 4] = [
    ("Get", "gRPC", GRPC_GET_TARGET),
    ("List (10 per page)", "gRPC", 0.50),
    ("Get", "REST", 0.85),
    ("List (10 per page)", "REST", 0.50),
];

#[derive(Clone, PartialEq, prost::Message)]
struct GetImageRequest {
    #[prost(string, tag = "1")]
    image_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListImagesRequest {
    #[prost(string, tag = "1")]
    folder_id: String,
    #[prost(int64, tag = "2")]
    page_size: i64,
}

/// One h2load run's figures.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Figures {
    pub(crate) requests_per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
}

/// A call measured against both servers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Scenario {
    pub(crate) call: String,
    pub(crate) transport: String,
    pub(crate) server: Figures,
    pub(crate) ceiling: Figures,
}

/// A call against both servers at once: the server's throughput as a share of the ceiling's
/// in each run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Paired {
    pub(crate) call: String,
    pub(crate) transport: String,
    pub(crate) shares: Vec<f64>,
}

/// A call measured against the server on PostgreSQL.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct OnPostgres {
    pub(crate) call: String,
    pub(crate) transport: String,
    pub(crate) server: Figures,
}

/// The database the PostgreSQL runs use, as the tests' (`cargo xtask ci`) and the registry
/// benchmark's.
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Runs per call on PostgreSQL.
const POSTGRES_ROUNDS: usize = 3;

/// Whether PostgreSQL answers at [`POSTGRES`].
fn postgres_reachable() -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], 5432)),
        std::time::Duration::from_secs(1),
    )
    .is_ok()
}

fn image_id(n: usize) -> String {
    format!("fd8bench{n:012}")
}

/// A Compute image as a real one looks, in its REST JSON form.
fn image_json(n: usize) -> serde_json::Value {
    serde_json::json!({
        "id": image_id(n),
        "folderId": FOLDER,
        "createdAt": "2026-01-02T03:04:05Z",
        "name": format!("ubuntu-22-04-lts-v{n:05}"),
        "description": "Ubuntu 22.04 LTS with the cloud tools",
        "labels": {"os": "ubuntu", "team": "images"},
        "family": "ubuntu-2204-lts",
        "storageSize": "4294967296",
        "minDiskSize": "8589934592",
        "productIds": ["f2e3ha0u4g1p0l7i6bsr"],
        "status": "READY",
        "os": {"type": "LINUX"},
        "pooled": false,
        "hardwareGeneration": {"legacyFeatures": {"pciTopology": "PCI_TOPOLOGY_V2"}}
    })
}

/// A gRPC message frame: no compression, the length, the message.
fn grpc_frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Everything `run` measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct LoadResults {
    /// Each call against each server in turn.
    pub(crate) scenarios: Vec<Scenario>,
    /// gRPC Get against both servers at once: the server's throughput as a share of the
    /// ceiling's in each run.
    pub(crate) paired_get: Vec<f64>,
    /// The same paired runs against a second server that makes no call span and writes no
    /// call line (`YC_IMAGES_LOG=warn`): what tracing every call costs.
    #[serde(default)]
    pub(crate) paired_get_untraced: Vec<f64>,
    /// Every other call paired the same way (none on `--paired`).
    #[serde(default)]
    pub(crate) paired: Vec<Paired>,
    /// Each call against the server on PostgreSQL (none when it is not reachable).
    #[serde(default)]
    pub(crate) postgres: Vec<OnPostgres>,
}

impl LoadResults {
    /// The median of the paired runs' shares: what the target is checked against.
    pub(crate) fn paired_share(&self) -> f64 {
        median_share(&self.paired_get)
    }
}

/// The median of some runs' shares.
pub(crate) fn median_share(shares: &[f64]) -> f64 {
    let mut shares = shares.to_vec();
    shares.sort_by(f64::total_cmp);
    shares.get(shares.len() / 2).copied().unwrap_or(0.0)
}

/// The CPU the servers run on, and the one h2load runs on, so that the load generator does
/// not take CPU time from the server it measures (and the figures vary less).
const SERVER_CPU: u32 = 0;
const LOAD_CPU: u32 = 1;

/// `program` pinned to `cpu` with taskset, where there are two CPUs and taskset; otherwise
/// unpinned.
fn on_cpu(cpu: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    static PIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let pin = *PIN.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
            && Command::new("taskset").arg("--version").output().is_ok()
    });
    if pin {
        let mut command = Command::new("taskset");
        command.arg("-c").arg(cpu.to_string()).arg(program);
        command
    } else {
        Command::new(program)
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

/// Starts `command` and reads the address from the first line it prints (`… on <address>`).
fn start(mut command: Command, what: &str) -> Result<(Running, String)> {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let address = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|a| a.contains(':'))
        .with_context(|| format!("{what} printed {line:?}, not its address"))?
        .to_owned();
    Ok((running, address))
}

/// `yc-images serve` of the release build in `release` on a port of its own, pinned to the
/// servers' CPU, seeded from `work/seed`, logging to `work/<log>`; the caller adds its store.
fn server_command(release: &Path, work: &Path, log: &str) -> Result<Command> {
    let mut command = on_cpu(SERVER_CPU, release.join("yc-images"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--seed"])
        .arg(work.join("seed"))
        .stderr(fs::File::create(work.join(log))?);
    Ok(command)
}

/// The body of a plain HTTP/1.1 GET (answered with a `content-length`).
fn http_get(address: &str, path: &str) -> Result<Vec<u8>> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("GET {path} from {address}: no HTTP answer"))?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path} from {address}: {head}");
    }
    Ok(answer[split + 4..].to_vec())
}

/// The figures of one h2load run against `url`.
fn h2load(url: &str, args: &[&str], work: &Path, name: &str) -> Result<Figures> {
    let log = work.join(format!("{name}.tsv"));
    let output = on_cpu(LOAD_CPU, "h2load")
        .args(args)
        .args([
            "-t",
            "1",
            "-D",
            &DURATION.to_string(),
            "--warm-up-time",
            &WARM_UP.to_string(),
            "--log-file",
        ])
        .arg(&log)
        .arg(url)
        .output()
        .context("running h2load (install it with `apt-get install nghttp2-client`)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "h2load {url} failed:\n{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let field = |line_start: &str, index: usize| -> Option<f64> {
        text.lines()
            .find(|l| l.trim_start().starts_with(line_start))
            .and_then(|l| l.split([',', ' ']).filter(|w| !w.is_empty()).nth(index))
            .and_then(|w| w.parse::<f64>().ok())
    };
    // "finished in 10.00s, 12345.60 req/s, 1.23MB/s"
    let rps = field("finished in", 3).with_context(|| format!("no req/s in:\n{text}"))?;
    // "requests: 123 total, 123 started, 123 done, 123 succeeded, 0 failed, 0 errored, 0 timeout"
    let succeeded = field("requests:", 7).with_context(|| format!("no requests in:\n{text}"))?;
    let failed = field("requests:", 9).unwrap_or(0.0) + field("requests:", 11).unwrap_or(0.0);
    // "status codes: 123 2xx, 0 3xx, 0 4xx, 0 5xx"; a request cut off by the end of the run may
    // count as done without its status.
    let ok = field("status codes:", 2).unwrap_or(0.0);
    let others: f64 = [4, 6, 8]
        .iter()
        .map(|i| field("status codes:", *i).unwrap_or(0.0))
        .sum();
    if succeeded == 0.0 || failed > 0.0 || others > 0.0 || ok < succeeded * 0.999 {
        bail!("h2load {url}: not every request succeeded:\n{text}");
    }
    let mut micros: Vec<u64> = fs::read_to_string(&log)?
        .lines()
        .filter_map(|l| l.split('\t').nth(2).and_then(|d| d.parse().ok()))
        .collect();
    if micros.is_empty() {
        bail!("h2load logged no requests to {}", log.display());
    }
    micros.sort_unstable();
    let percentile = |p: f64| {
        let index = ((micros.len() as f64 - 1.0) * p).round() as usize;
        micros[index.min(micros.len() - 1)] as f64 / 1000.0
    };
    Ok(Figures {
        requests_per_second: rps,
        p50_ms: percentile(0.50),
        p90_ms: percentile(0.90),
        p99_ms: percentile(0.99),
    })
}

/// Builds `yc-images` (and what `extra` names) in release mode; the release directory.
pub(crate) fn build_release(extra: &[&str]) -> Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .current_dir(project_root())
        .args([
            "build",
            "--release",
            "-p",
            "yc-images",
            "--bin",
            "yc-images",
        ])
        .args(extra)
        .status()?;
    if !status.success() {
        bail!("building yc-images {} failed: {status}", extra.join(" "));
    }
    Ok(target_dir().join("release"))
}

/// Builds both servers, seeds the real one, and measures every scenario against both.
pub(crate) fn run() -> Result<LoadResults> {
    run_shapes(true)
}

/// Only the paired gRPC Get runs, for a quick look at the target while working: their shares
/// of the ceiling.
pub(crate) fn paired() -> Result<LoadResults> {
    run_shapes(false)
}

/// The load runs: the paired gRPC Get, and with `every_call` every call in turn.
fn run_shapes(every_call: bool) -> Result<LoadResults> {
    if Command::new("h2load").arg("--version").output().is_err() {
        bail!("the server benchmarks need h2load: apt-get install nghttp2-client");
    }
    let release = build_release(&["--example", "ceiling"])?;
    let work = tempfile::tempdir()?;
    let seed = work.path().join("seed/compute");
    fs::create_dir_all(&seed)?;
    let images: Vec<serde_json::Value> = (0..IMAGES).map(image_json).collect();
    for (n, image) in images.iter().enumerate() {
        fs::write(seed.join(format!("{n:05}.json")), image.to_string())?;
    }
    let all = work.path().join("images.json");
    fs::write(&all, serde_json::Value::Array(images).to_string())?;

    let mut server = server_command(&release, work.path(), "server.log")?;
    server.arg("--data-dir").arg(work.path().join("data"));
    let (_server, server_address) = start(server, "yc-images serve")?;
    let mut ceiling = on_cpu(SERVER_CPU, release.join("examples/ceiling"));
    ceiling.arg(&all);
    let (_ceiling, ceiling_address) = start(ceiling, "the ceiling")?;
    println!("bench: yc-images on {server_address}, the ceiling on {ceiling_address}");

    // Get answers the same image from both, byte for byte, or the runs are not comparable.
    let get_path = format!("/compute/v1/images/{}", image_id(0));
    let (from_server, from_ceiling) = (
        http_get(&server_address, &get_path)?,
        http_get(&ceiling_address, &get_path)?,
    );
    if from_server != from_ceiling {
        bail!(
            "Get answers differ:\nyc-images: {}\nceiling:   {}",
            String::from_utf8_lossy(&from_server),
            String::from_utf8_lossy(&from_ceiling)
        );
    }

    let get = work.path().join("get.bin");
    fs::write(
        &get,
        grpc_frame(&GetImageRequest {
            image_id: image_id(0),
        }),
    )?;
    let list = work.path().join("list.bin");
    fs::write(
        &list,
        grpc_frame(&ListImagesRequest {
            folder_id: FOLDER.into(),
            page_size: 10,
        }),
    )?;
    let grpc_args = |body: &Path| -> Vec<String> {
        vec![
            "-c".into(),
            GRPC_CONNECTIONS.to_string(),
            "-m".into(),
            GRPC_STREAMS.to_string(),
            "-d".into(),
            body.display().to_string(),
            "-H".into(),
            "content-type: application/grpc".into(),
            "-H".into(),
            "te: trailers".into(),
        ]
    };
    let rest_args = vec!["--h1".to_owned(), "-c".into(), REST_CONNECTIONS.to_string()];
    let scenarios: Vec<(&str, &str, Vec<String>, String)> = vec![
        (
            "Get",
            "gRPC",
            grpc_args(&get),
            "/yandex.cloud.compute.v1.ImageService/Get".into(),
        ),
        (
            "List (10 per page)",
            "gRPC",
            grpc_args(&list),
            "/yandex.cloud.compute.v1.ImageService/List".into(),
        ),
        (
            "Get",
            "REST",
            rest_args.clone(),
            format!("/compute/v1/images/{}", image_id(0)),
        ),
        (
            "List (10 per page)",
            "REST",
            rest_args,
            format!("/compute/v1/images?folderId={FOLDER}&pageSize=10"),
        ),
    ];
    // Paired: both servers under the same gRPC Get load at the same time, sharing CPU 0, so
    // that whatever else the machine does slows both alike.
    println!("bench: gRPC Get, both servers at once");
    let get_args = grpc_args(&get);
    let get_args: Vec<&str> = get_args.iter().map(String::as_str).collect();
    let grpc_get = "/yandex.cloud.compute.v1.ImageService/Get";
    let paired_get = paired_runs(
        [&server_address, &ceiling_address],
        grpc_get,
        &get_args,
        work.path(),
        "",
    )?;
    // Again against a server that traces no call: the span and line of every call, priced.
    println!("bench: gRPC Get, both servers at once, calls untraced");
    let mut untraced = server_command(&release, work.path(), "untraced.log")?;
    untraced
        .env("YC_IMAGES_LOG", "warn")
        .arg("--data-dir")
        .arg(work.path().join("data-untraced"));
    let (untraced, untraced_address) = start(untraced, "yc-images serve (untraced)")?;
    let paired_get_untraced = paired_runs(
        [&untraced_address, &ceiling_address],
        grpc_get,
        &get_args,
        work.path(),
        "untraced-",
    )?;
    drop(untraced);

    let mut results = Vec::new();
    let pg_scenarios = scenarios.clone();
    let scenarios = if every_call { scenarios } else { Vec::new() };
    // Every other call paired too: the targets' method.
    let mut paired = Vec::new();
    for (i, (call, transport, args, path)) in scenarios
        .iter()
        .enumerate()
        .filter(|(_, (_, _, _, path))| path != grpc_get)
    {
        println!("bench: {transport} {call}, both servers at once");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        paired.push(Paired {
            call: (*call).to_owned(),
            transport: (*transport).to_owned(),
            shares: paired_runs(
                [&server_address, &ceiling_address],
                path,
                &args,
                work.path(),
                &format!("{i}-"),
            )?,
        });
    }
    for (i, (call, transport, args, path)) in scenarios.into_iter().enumerate() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        println!("bench: {transport} {call}");
        let mut server = Vec::new();
        let mut ceiling = Vec::new();
        for round in 0..ROUNDS {
            server.push(h2load(
                &format!("http://{server_address}{path}"),
                &args,
                work.path(),
                &format!("server-{i}-{round}"),
            )?);
            ceiling.push(h2load(
                &format!("http://{ceiling_address}{path}"),
                &args,
                work.path(),
                &format!("ceiling-{i}-{round}"),
            )?);
        }
        let (server, ceiling) = (median(server), median(ceiling));
        results.push(Scenario {
            call: call.into(),
            transport: transport.into(),
            server,
            ceiling,
        });
    }
    // The same calls against the server on PostgreSQL (with the same seed), for where the
    // time goes there; no ceiling to compare with.
    let mut postgres = Vec::new();
    if every_call && postgres_reachable() {
        let mut command = server_command(&release, work.path(), "server-postgres.log")?;
        command.args(["--database-url", POSTGRES]);
        let (_on_postgres, address) = start(command, "yc-images serve on PostgreSQL")?;
        for (i, (call, transport, args, path)) in pg_scenarios.into_iter().enumerate() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            println!("bench: {transport} {call} on PostgreSQL");
            let mut runs = Vec::new();
            for round in 0..POSTGRES_ROUNDS {
                runs.push(h2load(
                    &format!("http://{address}{path}"),
                    &args,
                    work.path(),
                    &format!("postgres-{i}-{round}"),
                )?);
            }
            postgres.push(OnPostgres {
                call: call.into(),
                transport: transport.into(),
                server: median(runs),
            });
        }
    } else if every_call {
        println!("bench: PostgreSQL is not reachable at {POSTGRES}; its runs are skipped");
    }
    let results = LoadResults {
        scenarios: results,
        paired_get,
        paired_get_untraced,
        paired,
        postgres,
    };
    fs::write(results_path(), serde_json::to_string_pretty(&results)?)?;
    Ok(results)
}

/// The call at `path` against the server and the ceiling (`[server, ceiling]`) at the same
/// time, [`ROUNDS`] times: the server's throughput as a share of the ceiling's in each run.
fn paired_runs(
    [server, ceiling]: [&str; 2],
    path: &str,
    args: &[&str],
    work: &Path,
    name: &str,
) -> Result<Vec<f64>> {
    let mut shares = Vec::new();
    for round in 0..ROUNDS {
        let (server, ceiling) = std::thread::scope(|scope| {
            let server = scope.spawn(|| {
                h2load(
                    &format!("http://{server}{path}"),
                    args,
                    work,
                    &format!("paired-{name}server-{round}"),
                )
            });
            let ceiling = h2load(
                &format!("http://{ceiling}{path}"),
                args,
                work,
                &format!("paired-{name}ceiling-{round}"),
            );
            let server = server
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the h2load thread panicked")));
            (server, ceiling)
        });
        shares.push(server?.requests_per_second / ceiling?.requests_per_second);
    }
    Ok(shares)
}

/// The run with the median throughput.
fn median(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
    runs.swap_remove(runs.len() / 2)
}

/// Where the last run's figures are kept, for `cargo xtask bench --report`.
pub(crate) fn results_path() -> PathBuf {
    target_dir().join("yc-images-load.json")
}

/// Where a call's time goes, from a profile (the figures are not remeasured by the bench).
const CALL_PROFILE: &str = "\
### Where a call's time goes

`perf record -a -C 0` on the servers' CPU for 5 s while h2load loads one server alone (as
above), the samples of CPU 0 divided by the calls served, grouped by what the code does
(commit d04181c, on the machine below). A List page has 10 images.

| per call, µs of CPU 0 | REST Get | ceiling | REST List | ceiling | gRPC List | ceiling |
|---|---|---|---|---|---|---|
| kernel: the socket's sends, receives and other system calls | 4.80 | 4.93 | 6.13 | 5.22 | 4.39 | 5.39 |
| kernel: waking h2load on the other CPU | 0.90 | 0.61 | 1.24 | 0.60 | 2.40 | 2.01 |
| SQLite (the index, ten rows, their columns) and its two `fcntl` locks | 0 | 0 | 3.55 | 0 | 3.52 | 0 |
| HTTP/2 and HPACK (h2) | 0 | 0 | 0 | 0 | 3.51 | 3.01 |
| allocator | 0.99 | 0.77 | 1.49 | 0.68 | 1.62 | 2.25 |
| copying | 0.41 | 0.16 | 0.96 | 0.32 | 1.91 | 1.53 |
| the call's span and log line | 0.92 | 0 | 1.04 | 0 | 0.86 | 0.09 |
| hyper, tokio | 1.56 | 0.88 | 1.79 | 0.84 | 1.25 | 0.80 |
| the REST transcoder (routing, query, JSON answer) | 0.50 | 0 | 0.75 | 0 | 0 | 0 |
| List plumbing, page token (SHA-256, HMAC), store, validation | 0.23 | 0 | 1.16 | 0 | 1.21 | 0 |
| the rest (header maps, clock reads, protobuf encoding in the ceiling, ...) | 1.64 | 1.21 | 2.90 | 1.00 | 4.25 | 5.43 |
| **total** | **11.98** | **8.58** | **21.01** | **8.68** | **24.93** | **20.52** |

A gRPC List costs the server a fifth more than the ceiling's: the ceiling encodes its ten
images for every call, the server copies their stored protobuf bytes, and that saving pays
for most of SQLite's work. Over REST the ceiling sends a fixed body (no database, no
encoding), so a REST List page costs the server 12 µs more than the ceiling: SQLite's
reading of the rows (3.5 µs), what every call pays (span and line 1 µs, the transcoder
0.75 µs, the allocator and copies of a 5 KB page 1.5 µs, the page token 0.4 µs), and the
socket's wake-ups of a client that, answered more slowly, sleeps more often. Half the
ceiling's REST List throughput would leave 17.4 µs a page: less than the socket's work and
SQLite's together leave room for beside the rest of a call, short of answering pages from a
cache.

Why REST Get stays near 60 % of the ceiling (commit dee1b39, this machine: `perf record -a
-C 0` and `mpstat` under the same REST Get load on each server alone). The ceiling spends
1.9 µs a call in user space, the server 4.9 µs: the call's span and log line, its ids and
metrics, the transcoder reading the request by the schema's rules, the access check, the
stored answer's copy. The kernel costs the server 1.1 µs a call more than the ceiling, and
nearly all of that is waking h2load (`sock_def_readable`: 1.05 µs a call against 0.39 µs):
answered more slowly, the client's CPU runs out of work between answers (idle a third of
the time, against a twentieth under the ceiling), and each answer that finds it asleep pays
an inter-processor interrupt, an exit to the hypervisor under KVM. Every microsecond of the
server's own work so costs more than a microsecond of CPU 0. 85 % of the ceiling would need a
REST Get in about 7.9 µs of CPU 0 instead of 11, which leaves about 1 µs of user space a call
beside a bare axum handler answering fixed bytes for all of the above. Tracing is the
largest of them, and not enough: a server that traces no call (`YC_IMAGES_LOG=warn`) serves
11 % more REST Gets than the traced one (paired: 110.1, 111.1, 111.4 %), which would still
leave REST Get near 64 % of the ceiling. Holding answers back
longer does not help: two and three turns of the scheduler instead of one served the same
(103.6k, 106.7k, 106.6k req/s in one round; 113.6k, 110.1k, 109.9k in the next). Routing a
REST call once, as it comes in (its span named at birth, no second look at the rules), gave
REST Get 1.3 % more on paired runs against the server before it (101.0, 100.8, 102.0 %),
REST List nothing measurable (99.3, 99.0, 99.3 %).
";

/// The report's section on the server under load.
pub(crate) fn section(load: &LoadResults) -> Result<String> {
    let results = &load.scenarios;
    let mut table = String::from(
        "| call | transport | yc-images req/s | p50 | p90 | p99 | ceiling req/s | p50 | p90 | p99 | share of the ceiling |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in results {
        writeln!(
            table,
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} % |",
            s.call,
            s.transport,
            s.server.requests_per_second,
            s.server.p50_ms,
            s.server.p90_ms,
            s.server.p99_ms,
            s.ceiling.requests_per_second,
            s.ceiling.p50_ms,
            s.ceiling.p90_ms,
            s.ceiling.p99_ms,
            100.0 * share(s)
        )?;
    }
    Ok(format!(
        "## The server under load\n\n\
         `yc-images serve` (release build, embedded store, one log line per call written to a\n\
         file from the server's log buffer) seeded with {IMAGES} Compute images, and the ceiling\n\
         (`crates/server/examples/ceiling.rs`: a bare tonic and axum server answering the same\n\
         calls with the same fixed images, on the same allocator (mimalloc), so the most this\n\
         stack serves on this machine), each\n\
         driven in turn by h2load on the same machine (the servers pinned to CPU {SERVER_CPU},\n\
         h2load to CPU {LOAD_CPU}) for {DURATION} s after {WARM_UP} s of\n\
         warm-up, {ROUNDS} times each, alternating (the run with the median throughput is\n\
         shown): gRPC with {GRPC_CONNECTIONS} HTTP/2 connections × {GRPC_STREAMS} streams,\n\
         REST with {REST_CONNECTIONS} HTTP/1.1 connections. Latencies are per request, from\n\
         h2load's log. Get answers the same image from both (checked byte for byte). The server\n\
         holds each connection's first write after a flush back a turn of its scheduler, so that\n\
         answers ready together leave together (`crates/server/src/coalesce.rs`: eight gRPC\n\
         answers a write instead of one); the ceiling, bare tonic and axum, writes each answer\n\
         on its own. A share above 100 % means that this saves more than the server's own work\n\
         per call costs; what that work costs is in \"Where a call's time goes\" below.\n\n\
         {table}\n\
         Run after run, this machine's speed varies by a tenth or more, so the shares above move\n\
         by several points between runs of the same code. The targets (gRPC Get at\n\
         {:.0} % of the ceiling or more, the others below) are therefore checked on paired\n\
         runs: the same load on both servers at the same time, {ROUNDS} runs of {DURATION} s, each server\n\
         on its half of CPU {SERVER_CPU} and both h2load on CPU {LOAD_CPU}, so that whatever\n\
         slows the machine slows both alike; the share of a run is the server's throughput over\n\
         the ceiling's in that run.\n\n\
         | paired gRPC Get runs | share of the ceiling |\n|---|---|\n\
         | {} | **{:.0} %** (median) |\n{}{}\n{}{}",
        100.0 * GRPC_GET_TARGET,
        runs_text(&load.paired_get),
        100.0 * load.paired_share(),
        untraced_section(load),
        paired_section(load)?,
        CALL_PROFILE,
        postgres_section(load)?
    ))
}

/// Shares of runs, as the report lists them.
pub(crate) fn runs_text(shares: &[f64]) -> String {
    shares
        .iter()
        .map(|s| format!("{:.1} %", 100.0 * s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every call's paired runs, against its target.
fn paired_section(load: &LoadResults) -> Result<String> {
    if load.paired.is_empty() {
        return Ok(String::new());
    }
    let mut table = String::from(
        "| call | transport | paired runs | share of the ceiling (median) | target |\n\
         |---|---|---|---|---|\n",
    );
    let get = Paired {
        call: "Get".into(),
        transport: "gRPC".into(),
        shares: load.paired_get.clone(),
    };
    for paired in std::iter::once(&get).chain(&load.paired) {
        let share = median_share(&paired.shares);
        let target = TARGETS
            .iter()
            .find(|(call, transport, _)| *call == paired.call && *transport == paired.transport)
            .map_or(String::new(), |(_, _, target)| {
                let met = if share >= *target { "met" } else { "not met" };
                format!("{:.0} % ({met})", 100.0 * target)
            });
        writeln!(
            table,
            "| {} | {} | {} | **{:.0} %** | {target} |",
            paired.call,
            paired.transport,
            runs_text(&paired.shares),
            100.0 * share
        )?;
    }
    Ok(format!(
        "\nEvery call paired the same way (both servers under the same load at once on CPU\n\
         {SERVER_CPU}), against the targets:\n\n{table}"
    ))
}

/// The paired runs against a server that traces no call, beside the others.
fn untraced_section(load: &LoadResults) -> String {
    if load.paired_get_untraced.is_empty() {
        return String::new();
    }
    let untraced = median_share(&load.paired_get_untraced);
    format!(
        "\nWhat tracing every call costs: the same paired runs against a second server started\n\
         with `YC_IMAGES_LOG=warn`, which makes no call span and writes no call line (every\n\
         answer still carries its ids, and metrics still count the call):\n\n\
         | paired gRPC Get runs, calls untraced | share of the ceiling |\n|---|---|\n\
         | {} | **{:.0} %** (median; {:.0} points above the traced server) |\n",
        runs_text(&load.paired_get_untraced),
        100.0 * untraced,
        100.0 * (untraced - load.paired_share()),
    )
}

/// The runs on PostgreSQL, beside the embedded store's.
fn postgres_section(load: &LoadResults) -> Result<String> {
    if load.postgres.is_empty() {
        return Ok(String::new());
    }
    let mut table = String::from(
        "| call | transport | on PostgreSQL req/s | p50 | p99 | embedded req/s | p50 | p99 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for pg in &load.postgres {
        let embedded = load
            .scenarios
            .iter()
            .find(|s| s.call == pg.call && s.transport == pg.transport);
        let (rps, p50, p99) = embedded.map_or((0.0, 0.0, 0.0), |s| {
            (
                s.server.requests_per_second,
                s.server.p50_ms,
                s.server.p99_ms,
            )
        });
        writeln!(
            table,
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms |",
            pg.call,
            pg.transport,
            pg.server.requests_per_second,
            pg.server.p50_ms,
            pg.server.p99_ms,
            rps,
            p50,
            p99
        )?;
    }
    Ok(format!(
        "\n### On PostgreSQL\n\n\
         The same calls against `yc-images serve --database-url {POSTGRES}` (seeded alike;\n\
         PostgreSQL on the same machine, unpinned), {POSTGRES_ROUNDS} runs each (the median\n\
         shown), beside the embedded store's figures above. There is no target yet. Each call\n\
         is a round trip to PostgreSQL over a pooled connection: a Get reads one row by primary\n\
         key (the embedded store's Get cache is not used with a shared database, since another\n\
         replica may change the image), a List page one index range; the server waits on the\n\
         database's process, which shares the two cores with it and the load generator.\n\n\
         {table}"
    ))
}

/// The server's throughput as a share of the ceiling's.
pub(crate) fn share(s: &Scenario) -> f64 {
    s.server.requests_per_second / s.ceiling.requests_per_second
}
