//! Builds real OCI image layouts for tests: gzip tar layers, a config, a manifest, an index.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A gzip-compressed tar holding the given files.
pub fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_718_873_645);
        header.set_cksum();
        tar.append_data(&mut header, path, *content).unwrap();
    }
    tar.into_inner().and_then(|gz| gz.finish()).unwrap()
}

/// An image: its blobs by digest, and its manifest bytes.
pub struct TestImage {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
}

impl TestImage {
    /// An image whose layers hold `files`, one layer each; `seed` makes its config unique.
    pub fn new(seed: &str, files: &[(&str, &[u8])]) -> Self {
        let layers: Vec<Vec<u8>> = files.iter().map(|f| layer(&[*f])).collect();
        let diff_ids: Vec<String> = files.iter().map(|(_, c)| sha256(c)).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": { "seed": seed } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        })
        .to_string()
        .into_bytes();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(&config),
                "size": config.len(),
            },
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256(l),
                "size": l.len(),
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        Self {
            config,
            layers,
            manifest,
        }
    }

    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// The config and the layers.
    pub fn blobs(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.config.as_slice()).chain(self.layers.iter().map(Vec::as_slice))
    }

    /// Writes the image into an OCI layout at `dir`, tagged `tag`, next to what is there.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for blob in std::iter::once(&self.config)
            .chain(&self.layers)
            .chain([&self.manifest])
        {
            let name = sha256(blob);
            let name = name.trim_start_matches("sha256:");
            std::fs::write(blobs.join(name), blob).unwrap();
        }
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index_path = dir.join("index.json");
        let mut manifests: Vec<serde_json::Value> = std::fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["manifests"].as_array().cloned())
            .unwrap_or_default();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": self.digest(),
            "size": self.manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }));
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": manifests });
        std::fs::write(index_path, index.to_string()).unwrap();
    }

    /// The path of one of the image's blobs in a layout.
    pub fn blob_path(dir: &Path, blob: &[u8]) -> std::path::PathBuf {
        let name = sha256(blob);
        dir.join("blobs/sha256")
            .join(name.trim_start_matches("sha256:"))
    }
}
