//! Dependency checks of `cargo xtask ci`:
//!
//! - **lean clients**: the client crates, as a program that only calls the APIs depends on
//!   them (no features), compile and pull in no SQL driver, no SQLite C code and no HTTP
//!   server;
//! - **no unused dependencies**: every dependency a crate declares is named in its code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::project_root;

/// The crates a program that only calls the APIs depends on.
pub(crate) const CLIENT_CRATES: &[&str] =
    &["yc-operations", "yc-compute-image", "yc-registry-image"];

/// Packages a client must not compile.
const SERVER_ONLY: &[&str] = &[
    "sqlx",
    "sqlx-core",
    "sqlx-postgres",
    "rusqlite",
    "libsqlite3-sys",
    "axum",
    "yc-sql",
    "yc-api-runtime",
    "tonic-health",
    "tonic-reflection",
];

/// Features of shared packages that only a server needs.
const SERVER_FEATURES: &[(&str, &str)] = &[
    ("hyper", "server"),
    ("hyper-util", "server"),
    ("tonic", "server"),
    ("tonic", "router"),
];

/// The client crates' dependency trees hold nothing of a server, and they compile so.
pub(crate) fn lean_clients() -> Result<()> {
    for krate in CLIENT_CRATES {
        let output = Command::new(env!("CARGO"))
            .current_dir(project_root())
            .args(["tree", "--locked", "-p", krate, "-e", "normal,build"])
            .args(["--prefix", "none", "--format", "{p} [{f}]"])
            .output()
            .context("running cargo tree")?;
        if !output.status.success() {
            bail!(
                "cargo tree -p {krate} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&output.stdout);
        let mut found = BTreeSet::new();
        for line in tree.lines() {
            let mut words = line.split_whitespace();
            let (Some(name), Some(_version)) = (words.next(), words.next()) else {
                continue;
            };
            if SERVER_ONLY.contains(&name) {
                found.insert(name.to_owned());
            }
            let features = line
                .split_once('[')
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(features, _)| features)
                .unwrap_or_default();
            for (package, feature) in SERVER_FEATURES {
                if name == *package && features.split(',').any(|f| f == *feature) {
                    found.insert(format!("{package} with feature {feature}"));
                }
            }
        }
        if !found.is_empty() {
            bail!(
                "{krate} without features (what a program that only calls the APIs depends on) \
                 pulls in server code: {}",
                found.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        println!("deps: {krate} as a client: no SQL driver, no HTTP server");
    }
    let mut check = Command::new(env!("CARGO"));
    check
        .current_dir(project_root())
        .args(["check", "--locked"]);
    for krate in CLIENT_CRATES {
        check.args(["-p", krate]);
    }
    let status = check.status().context("running cargo check")?;
    if !status.success() {
        bail!("the client crates do not compile without their server features");
    }
    Ok(())
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    rename: Option<String>,
}

/// Every dependency of every workspace crate is named in its code (`src/`, `tests/`,
/// `benches/`, `examples/`, `build.rs`), as `the_crate` in a path; a crate's dependency on
/// itself (which turns on features for its tests) counts as used.
pub(crate) fn unused_dependencies() -> Result<()> {
    let output = Command::new(env!("CARGO"))
        .current_dir(project_root())
        .args(["metadata", "--locked", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)?;
    let mut unused = Vec::new();
    for package in &metadata.packages {
        let dir = package.manifest_path.parent().unwrap_or(Path::new("."));
        let mut code = String::new();
        for sub in ["src", "tests", "benches", "examples", "build.rs"] {
            read_rust(&dir.join(sub), &mut code)?;
        }
        let mut seen = BTreeSet::new();
        for dependency in &package.dependencies {
            let name = dependency.rename.as_ref().unwrap_or(&dependency.name);
            if name == &package.name || !seen.insert(name.clone()) {
                continue;
            }
            let ident = name.replace('-', "_");
            if !names(&code, &ident) {
                unused.push(format!("{}: {name}", package.name));
            }
        }
    }
    if !unused.is_empty() {
        bail!(
            "dependencies declared but never named in the code (remove them from Cargo.toml):\n  {}",
            unused.join("\n  ")
        );
    }
    println!("deps: every declared dependency is used");
    Ok(())
}

fn read_rust(path: &Path, out: &mut String) -> Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            read_rust(&entry?.path(), out)?;
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push_str(&std::fs::read_to_string(path)?);
        out.push('\n');
    }
    Ok(())
}

/// Whether `code` names `ident` as a whole word.
fn names(code: &str, ident: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(ident).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + ident.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn names_are_whole_words() {
        assert!(names("use serde::Deserialize;", "serde"));
        assert!(!names("use serde_json::Value;", "serde"));
        assert!(!names("my_serde::x", "serde"));
        assert!(names("tonic_prost::ProstCodec", "tonic_prost"));
    }
}
