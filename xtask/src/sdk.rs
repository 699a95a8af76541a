//! The environments with the official Yandex Cloud SDKs, for the conformance suite and the
//! end-to-end tests.
//!
//! A Python venv under the cargo target directory, holding exactly
//! `xtask/sdk-requirements.txt`, and the Node SDK as `xtask/node-sdk/package-lock.json` pins
//! it. Each is made once and reused while its pins stay the same.

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
    run(Command::new(&python).args([
        "-c",
        "import yandex.cloud.compute.v1.image_service_pb2, moto.server",
    ]))
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

/// Makes sure the Node SDK is installed as `xtask/node-sdk/package-lock.json` pins it; returns
/// its `node_modules` directory (for `NODE_PATH`).
pub(crate) fn ensure_node_env() -> Result<PathBuf> {
    let pins = project_root().join("xtask/node-sdk");
    let lock = fs::read_to_string(pins.join("package-lock.json"))
        .with_context(|| format!("reading {}", pins.join("package-lock.json").display()))?;
    let dir = target_dir().join("node-sdk");
    let modules = dir.join("node_modules");
    let stamp = dir.join("yc-package-lock.json");
    if modules.join("@yandex-cloud/nodejs-sdk").exists()
        && fs::read_to_string(&stamp).is_ok_and(|s| s == lock)
    {
        return Ok(modules);
    }
    fs::create_dir_all(&dir)?;
    for file in ["package.json", "package-lock.json"] {
        fs::copy(pins.join(file), dir.join(file))
            .with_context(|| format!("copying {file} to {}", dir.display()))?;
    }
    eprintln!("sdk-env: installing the Node SDK into {}", dir.display());
    run(Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(&dir))
    .context("installing the Node SDK from npm (is Node.js with npm installed?)")?;
    run(Command::new("node")
        .args(["-e", "require('@yandex-cloud/nodejs-sdk')"])
        .env("NODE_PATH", &modules))
    .context("the Node SDK installed but does not load")?;
    fs::write(&stamp, lock)?;
    Ok(modules)
}
