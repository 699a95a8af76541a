//! `--seed DIR`: known data loaded at start, idempotently, so that a test suite can start the
//! server with it.
//!
//! ```text
//! DIR/container-registry/<registry id>/registry.json   optional: {"folderId": "…", "name": "…"}
//! DIR/container-registry/<registry id>/<repository>/…  an OCI image layout (it has `oci-layout`);
//!                                                      every tagged image in it is imported
//!                                                      into <registry id>/<repository>
//! DIR/compute/*.json                                   compute images in the REST JSON form
//! DIR/compute/disks/*.json                             disks in the REST JSON form
//! DIR/compute/snapshots/*.json                         snapshots in the REST JSON form
//! ```
//!
//! A disk or snapshot without an id, a creation time or a status gets a new id, now, and
//! READY; one whose id is stored already is left as it is.
//!
//! A registry without `registry.json` goes into the folder `b1gseedfolder`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use yc_compute_image::sources::SourceKind;
use yc_compute_image::{ComputeImages, ComputeSources, SqlSources};
use yc_proto_types::yandex::cloud::compute::v1::{Disk, Image, Snapshot};
use yc_registry_image::RegistryImages;
use yc_registry_image::blobs::SqlBlobStore;
use yc_registry_image::store::Registry;

/// The folder of a seeded registry that names none.
pub(crate) const DEFAULT_FOLDER: &str = "b1gseedfolder";

/// What a seeding loaded.
#[derive(Debug, Default)]
pub(crate) struct Seeded {
    pub(crate) registry_images: usize,
    pub(crate) compute_images: usize,
    pub(crate) disks: usize,
    pub(crate) snapshots: usize,
}

pub(crate) async fn load(
    dir: &Path,
    registry: &RegistryImages,
    blobs: &SqlBlobStore,
    compute: &ComputeImages,
    sources: &ComputeSources,
) -> Result<Seeded> {
    if !dir.is_dir() {
        bail!("the seed directory {} does not exist", dir.display());
    }
    let mut seeded = Seeded::default();
    let registries = dir.join("container-registry");
    for entry in read_dir(&registries)? {
        if !entry.is_dir() {
            continue;
        }
        let id = file_name(&entry);
        let (folder_id, name) = match std::fs::read(entry.join("registry.json")) {
            Ok(bytes) => {
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}/registry.json is not JSON", entry.display()))?;
                let text = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
                (
                    text("folderId").unwrap_or_else(|| DEFAULT_FOLDER.into()),
                    text("name").unwrap_or_else(|| id.clone()),
                )
            }
            Err(_) => (DEFAULT_FOLDER.into(), id.clone()),
        };
        registry
            .ensure_registry(&Registry {
                id: id.clone(),
                folder_id,
                name,
                ..Default::default()
            })
            .await
            .map_err(anyhow::Error::msg)?;
        let mut layouts = Vec::new();
        find_layouts(&entry, &mut layouts)?;
        for layout in layouts {
            let repository = layout
                .strip_prefix(&entry)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let repository = format!("{id}/{repository}");
            for tag in layout_tags(&layout)? {
                // Blobs stored with the image, so that it pulls.
                registry
                    .import_layout(&layout, &repository, tag.as_deref(), Some(blobs))
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("seeding {repository} from {}: {e}", layout.display())
                    })?;
                seeded.registry_images += 1;
            }
        }
    }
    for file in read_dir(&dir.join("compute"))? {
        if file.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let image: Image = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a compute Image in JSON", file.display()))?;
        if compute
            .seed(image)
            .await
            .map_err(|e| anyhow::anyhow!("seeding {}: {e}", file.display()))?
        {
            seeded.compute_images += 1;
        }
    }
    seeded.disks = seed_sources::<Disk>(&dir.join("compute/disks"), sources.store()).await?;
    seeded.snapshots =
        seed_sources::<Snapshot>(&dir.join("compute/snapshots"), sources.store()).await?;
    Ok(seeded)
}

/// Seeds the `*.json` files of `dir` as disks or snapshots; how many were new.
async fn seed_sources<K: SourceKind + serde::de::DeserializeOwned>(
    dir: &Path,
    store: &SqlSources,
) -> Result<usize> {
    let mut new = 0;
    for file in read_dir(dir)? {
        if file.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let source: K = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a compute {} in JSON", file.display(), K::NOUN))?;
        if store
            .seed(source)
            .await
            .map_err(|e| anyhow::anyhow!("seeding {}: {}", file.display(), e.message))?
        {
            new += 1;
        }
    }
    Ok(new)
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every directory below `dir` that is an OCI image layout.
fn find_layouts(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if dir.join("oci-layout").is_file() {
        out.push(dir.to_owned());
        return Ok(());
    }
    for entry in read_dir(dir)? {
        if entry.is_dir() {
            find_layouts(&entry, out)?;
        }
    }
    Ok(())
}

/// The tags of a layout's images; `None` for a layout holding one untagged image.
fn layout_tags(layout: &Path) -> Result<Vec<Option<String>>> {
    let index = layout.join("index.json");
    let bytes = std::fs::read(&index).with_context(|| format!("reading {}", index.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", index.display()))?;
    let manifests = value
        .get("manifests")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let tags: Vec<Option<String>> = manifests
        .iter()
        .filter_map(|m| {
            m.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(|t| t.as_str())
        })
        .map(|t| Some(t.to_owned()))
        .collect();
    Ok(if tags.is_empty() && manifests.len() == 1 {
        vec![None]
    } else {
        tags
    })
}
