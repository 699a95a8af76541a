//! `cargo xtask ci`: every check, in the order that fails fastest. `.ci/run` runs exactly this.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{codegen, deps, project_root, sdk};

pub(crate) fn run() -> Result<()> {
    let started = Instant::now();

    step("rustfmt", || cargo(&["fmt", "--all", "--", "--check"], &[]))?;
    step("codegen --check", || codegen::run(codegen::Mode::Check))?;
    step("clippy", || {
        cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )
    })?;
    step("unused dependencies", deps::unused_dependencies)?;
    step("lean clients", deps::lean_clients)?;
    let python = step("SDK environment", sdk::ensure_env)?;
    let python = python.to_string_lossy().into_owned();
    let node = step("Node SDK environment", sdk::ensure_node_env)?;
    let node = node.to_string_lossy().into_owned();
    // Under CI (`CI=true`, as `.ci/run` sets), a suite that cannot run fails instead of
    // being skipped.
    let strict = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let postgres = postgres_url();
    let mut test_env = vec![
        ("YC_SDK_PYTHON", python.as_str()),
        ("YC_NODE_SDK", node.as_str()),
        ("YC_REQUIRE_SDK", "1"),
        // Snapshot mismatches fail and nothing is written beside them.
        ("INSTA_UPDATE", "no"),
        // The fuzz_* property tests: a bounded run; `cargo xtask fuzz` runs them long.
        ("PROPTEST_CASES", "4096"),
        ("CI", "true"),
    ];
    match &postgres {
        Some(url) => {
            println!("ci: PostgreSQL at {url}: its tests run and may not be skipped");
            test_env.extend([
                ("YC_POSTGRES_URL", url.as_str()),
                ("YC_REQUIRE_POSTGRES", "1"),
            ]);
        }
        None if strict => bail!(
            "CI=true and no PostgreSQL listens on {DEFAULT_POSTGRES_ADDR} (set YC_POSTGRES_URL \
             to use another server): its tests cannot run"
        ),
        None => println!(
            "ci: SKIPPING the PostgreSQL tests: nothing listens on {DEFAULT_POSTGRES_ADDR} \
             (set YC_POSTGRES_URL to use another server)"
        ),
    }
    if has_tool("qemu-img") {
        println!("ci: qemu-img found: the tests of real qcow2 images run and may not be skipped");
        test_env.push(("YC_REQUIRE_QEMU_IMG", "1"));
    } else if strict {
        bail!("CI=true and qemu-img is not installed (apt-get install qemu-utils)");
    } else {
        println!(
            "ci: SKIPPING the tests of qcow2 images made by qemu-img: it is not installed \
             (apt-get install qemu-utils)"
        );
    }
    if has_tool("skopeo") {
        println!(
            "ci: skopeo found: the registry interoperability test runs and may not be skipped"
        );
        test_env.push(("YC_REQUIRE_SKOPEO", "1"));
    } else if strict {
        bail!("CI=true and skopeo is not installed (apt-get install skopeo; .ci/run installs it)");
    } else {
        println!(
            "ci: SKIPPING the skopeo interoperability test: skopeo is not installed \
             (apt-get install skopeo; .ci/run installs it)"
        );
    }
    let test_env = test_env.as_slice();
    step("doc tests", || {
        cargo(&["test", "--workspace", "--doc", "--locked"], test_env)
    })?;
    step("tests", || {
        if has_nextest() {
            cargo(
                &[
                    "nextest",
                    "run",
                    "--workspace",
                    "--locked",
                    "--no-fail-fast",
                ],
                test_env,
            )
        } else {
            eprintln!("cargo-nextest is not installed; running cargo test");
            cargo(
                &["test", "--workspace", "--locked", "--no-fail-fast"],
                test_env,
            )
        }
    })?;

    println!("ci: all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// `cargo xtask fuzz`: the property tests of every parser of outside input (their names start
/// with `fuzz_`), `cases` cases each instead of the 256 of a normal run.
pub(crate) fn fuzz(cases: u64) -> Result<()> {
    let cases = cases.to_string();
    step("fuzz", || {
        cargo(
            &[
                "test",
                "--workspace",
                "--locked",
                "--release",
                "--",
                "fuzz_",
            ],
            &[
                ("PROPTEST_CASES", cases.as_str()),
                // Optimised, but without the server binary's link-time optimisation, which
                // would take minutes for each test binary.
                ("CARGO_PROFILE_RELEASE_LTO", "off"),
                ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
            ],
        )
    })
}

fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("ci: {name}");
    let started = Instant::now();
    let result = f().with_context(|| format!("ci step `{name}` failed"));
    println!("ci: {name}: {:.1?}", started.elapsed());
    result
}

fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(project_root()).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let status = command
        .status()
        .with_context(|| format!("starting cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed: {status}", args.join(" "));
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(env!("CARGO"))
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn has_tool(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

const DEFAULT_POSTGRES_ADDR: &str = "127.0.0.1:5432";

/// The PostgreSQL the tests use: `YC_POSTGRES_URL` if set, else the local server every
/// developer and CI machine has, if something listens on its port.
fn postgres_url() -> Option<String> {
    if let Ok(url) = std::env::var("YC_POSTGRES_URL") {
        return Some(url);
    }
    let addr: std::net::SocketAddr = DEFAULT_POSTGRES_ADDR.parse().ok()?;
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .ok()
        .map(|_| format!("postgres://postgres@{DEFAULT_POSTGRES_ADDR}/test"))
}
