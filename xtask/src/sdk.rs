//! The Python environment with the official Yandex Cloud SDK, for the conformance suite.
//!
//! A venv under the cargo target directory, holding exactly `xtask/sdk-requirements.txt`. It
//! is made once and reused while the requirements stay the same.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{project_root, target_dir};

/// Makes sure the venv exists and matches the pinned requirements; returns its interpreter.
pub(crate) fn ensure_env() -> Result<PathBuf> {
    let requirements_path = project_root().join("xtask/sdk-requirements.txt");
    let requirements = fs::read_to_string(&requirements_path)
        .with_context(|| format!("reading {}", requirements_path.display()))?;
    let venv = target_dir().join("sdk-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("yc-requirements.txt");

    if python.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == requirements) {
        return Ok(python);
    }

    let base = std::env::var("YC_PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("sdk-env: creating {} with {base}", venv.display());
    run(Command::new(&base)
        .args(["-m", "venv", "--clear"])
        .arg(&venv))
    .with_context(|| format!("creating a venv with {base}; is Python 3 with venv installed?"))?;
    eprintln!("sdk-env: installing {}", requirements_path.display());
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            "-r",
        ])
        .arg(&requirements_path))
    .context("installing the SDK from the package registry")?;
    run(Command::new(&python).args(["-c", "import yandex.cloud.compute.v1.image_service_pb2"]))
        .context("the SDK installed but does not import")?;
    fs::write(&stamp, requirements)?;
    Ok(python)
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
