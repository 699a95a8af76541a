//! `cargo xtask snapshots`: re-run the snapshot tests of every crate and accept what they write.
//!
//! Changed and new snapshots are written in place and snapshots that no fixture references
//! are removed; review the result with `git diff` before committing it. cargo-insta is not
//! needed.

use std::process::Command;

use anyhow::{Result, bail};

use crate::project_root;

pub(crate) fn run() -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .current_dir(project_root())
        .args(["test", "--workspace", "--tests"])
        .env("INSTA_UPDATE", "always")
        .env("INSTA_FORCE_PASS", "1")
        .env("YC_SNAPSHOTS_PRUNE", "1")
        .env_remove("CI")
        .status()?;
    if !status.success() {
        bail!("the snapshot tests failed for a reason other than a snapshot: {status}");
    }
    let changes = Command::new("git")
        .current_dir(project_root())
        .args([
            "status",
            "--short",
            "--",
            "crates/*/tests/snapshots",
            "crates/*/tests/it/snapshots",
        ])
        .output()?;
    let changes = String::from_utf8_lossy(&changes.stdout);
    if changes.trim().is_empty() {
        println!("snapshots: nothing changed");
    } else {
        println!("snapshots: review and commit these changes:\n{changes}");
    }
    Ok(())
}
