//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `codegen [--check]`: regenerate the wire types from `proto/`, or check that they are fresh.
//! - `snapshots`: re-run the wire-format snapshot tests and accept every changed snapshot.
//! - `sdk-env`: set up the Python environment with the official SDK and print its interpreter.
//! - `bench`: run the benchmarks and write their figures to `docs/benchmarks.md`.
//! - `fuzz [--cases N]`: the property tests of every parser of outside input, with many cases.
//! - `ci`: every check CI runs, in order.

mod bench;
mod ci;
mod codegen;
mod deps;
mod load;
mod registry_load;
mod sdk;
mod snapshots;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  codegen [--check]  regenerate crates/proto-types/src/generated from proto/
                     (--check: fail if that would change anything)
  snapshots          re-run the snapshot tests, accepting changed snapshots
                     and removing unreferenced ones
  sdk-env            set up the official Python and Node SDKs, print their variables
  bench [--server | --report | --paired | --registry]
                     run the benchmarks, write docs/benchmarks.md, check their bounds;
                     --server runs only the server under load, --report runs nothing
                     (both reuse the last figures of what they do not run)
                     (--report: only rewrite the report from the last run's figures);
                     --paired runs only the paired gRPC Get (traced, and untraced)
                     and prints its shares;
                     --registry only the pushes and pulls against docker-registry
  fuzz [--cases N]   the property tests of every parser of outside input (tests named
                     fuzz_*) with N cases each (default 100000); CI runs them with 4096
  ci                 rustfmt, clippy, codegen --check, tests, SDK conformance
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["codegen"] => codegen::run(codegen::Mode::Write),
        ["codegen", "--check"] => codegen::run(codegen::Mode::Check),
        ["snapshots"] => snapshots::run(),
        ["sdk-env"] => {
            let python = sdk::ensure_env()?;
            let node = sdk::ensure_node_env()?;
            println!("YC_SDK_PYTHON={}", python.display());
            println!("YC_NODE_SDK={}", node.display());
            Ok(())
        }
        ["bench"] => bench::run(bench::Run::All),
        ["bench", "--server"] => bench::run(bench::Run::Server),
        ["bench", "--report"] => bench::run(bench::Run::Report),
        ["bench", "--paired"] => {
            let results = load::paired()?;
            println!(
                "bench: paired gRPC Get, share of the ceiling: {}",
                load::runs_text(&results.paired_get)
            );
            println!(
                "bench: the same, calls untraced (YC_IMAGES_LOG=warn): {}",
                load::runs_text(&results.paired_get_untraced)
            );
            Ok(())
        }
        ["bench", "--registry"] => {
            let results = registry_load::run()?;
            if let Some((push, pull)) = results.embedded_ratios() {
                println!(
                    "bench: embedded store vs docker-registry: push {push:.2}×, pull {pull:.2}×"
                );
            }
            Ok(())
        }
        ["fuzz"] => ci::fuzz(100_000),
        ["fuzz", "--cases", cases] => ci::fuzz(
            cases
                .parse()
                .map_err(|e| anyhow::anyhow!("--cases {cases:?}: {e}"))?,
        ),
        ["ci"] => ci::run(),
        ["help" | "--help" | "-h"] | [] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown task {:?}\n\n{USAGE}", args.join(" ")),
    }
}

/// The workspace root: the parent of this crate's directory.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory, honouring `CARGO_TARGET_DIR`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => project_root().join("target"),
    }
}
