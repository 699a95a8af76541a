//! `yc-images registry`: registries, their images, and importing OCI layouts.

use super::*;

/// `yc-images registry`.
#[derive(Debug, clap::Args)]
pub(crate) struct RegistryArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum RegistryCommand {
    /// Creates a registry in a folder and waits until it is ACTIVE.
    Create {
        /// The folder to create the registry in.
        #[arg(long)]
        folder_id: String,
        /// Unique within the folder: 3-63 of `a-z`, `0-9`, `-`, starting with a letter.
        #[arg(long, default_value = "")]
        name: String,
        /// `key=value`; repeat for more.
        #[arg(long = "label", value_parser = label)]
        labels: Vec<(String, String)>,
    },
    /// Every registry of a folder, page after page.
    List {
        /// The folder whose registries to list.
        #[arg(long)]
        folder_id: String,
        /// e.g. `name = "main"`.
        #[arg(long, default_value = "")]
        filter: String,
    },
    /// One registry.
    Get {
        /// The registry's id.
        registry_id: String,
    },
    /// Changes the name or labels of a registry, and waits.
    Update {
        /// The registry's id.
        registry_id: String,
        /// The new name.
        #[arg(long)]
        name: Option<String>,
        /// `key=value`; repeat for more. Replaces every label.
        #[arg(long = "label", value_parser = label)]
        labels: Option<Vec<(String, String)>>,
    },
    /// Deletes a registry that holds no images, and waits until it is gone.
    Delete {
        /// The registry's id.
        registry_id: String,
    },
    /// Removes the blobs no image needs any more, from the store itself (not through a
    /// server): the embedded store of --data-dir (while no server uses it) or the PostgreSQL
    /// database of --database-url (also while servers run on it). Servers also collect on
    /// their own every --gc-interval.
    Gc {
        #[command(flatten)]
        store: crate::serve::StoreArgs,
        /// Seconds a blob pushed but named by no image yet is kept: a push in progress must
        /// get from its first blob to its manifest in that time.
        #[arg(long, default_value_t = 3600)]
        grace: u64,
    },
    /// Moves the stored blobs into the object storage of --blob-store (or back into the
    /// database), from the store itself like `gc`: each blob is copied, its copy's digest
    /// checked, then switched to. Stopped, it continues where it stopped when run again.
    MoveBlobs {
        #[command(flatten)]
        store: crate::serve::StoreArgs,
        /// Where the blobs go.
        #[arg(long, value_enum)]
        to: MoveTo,
    },
    /// Repositories: the images of a registry under one name.
    #[command(subcommand)]
    Repository(RepositoryCommand),
    /// Container Registry images.
    #[command(subcommand)]
    Image(RegistryImageCommand),
    /// Pushes the image of an OCI image layout (what `skopeo copy … oci:DIR:TAG` writes) into
    /// a repository, through the server's registry API, and shows the image. Blobs the
    /// registry has are not sent again.
    Import {
        /// The OCI image layout's directory.
        layout: PathBuf,
        /// `<registry id>/<repository>:<tag>`; without `:<tag>`, the layout's tag.
        target: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum RepositoryCommand {
    /// Every repository of a registry, or of a folder's registries, page after page.
    List {
        /// The registry whose repositories to list (or give --folder-id).
        #[arg(long, required_unless_present = "folder_id")]
        registry_id: Option<String>,
        /// The folder whose registries' repositories to list.
        #[arg(long)]
        folder_id: Option<String>,
        /// Conditions on `name`, e.g. `name = "crp…/app"`.
        #[arg(long, default_value = "")]
        filter: String,
        /// `name` or `id`, maybe with `desc`.
        #[arg(long, default_value = "")]
        order_by: String,
    },
    /// One repository, by id or by name (`<registry id>/<name>`).
    Get {
        /// The repository's id, or its name `<registry id>/<name>`.
        repository: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum RegistryImageCommand {
    /// Every image of a repository, registry or folder, page after page.
    List {
        /// `<registry id>/<repository>`.
        #[arg(long)]
        repository_name: Option<String>,
        /// The registry whose images to list.
        #[arg(long)]
        registry_id: Option<String>,
        /// The folder whose registries' images to list.
        #[arg(long)]
        folder_id: Option<String>,
        /// Conditions on `name`, e.g. `name = "crp…/app"`.
        #[arg(long, default_value = "")]
        filter: String,
        /// e.g. `created_at desc`.
        #[arg(long, default_value = "")]
        order_by: String,
    },
    /// One image.
    Get {
        /// The image's id.
        image_id: String,
    },
    /// Deletes an image and waits until it is gone.
    Delete {
        /// The image's id.
        image_id: String,
    },
}

/// Runs `yc-images registry …`.
pub(crate) async fn registry(args: RegistryArgs) -> Result<()> {
    if let RegistryCommand::Gc { store, grace } = &args.command {
        return gc(store, *grace, Output(args.connection.format)).await;
    }
    if let RegistryCommand::MoveBlobs { store, to } = &args.command {
        return move_blobs(store, *to, Output(args.connection.format)).await;
    }
    let (channel, token) = connect(&args.connection).await?;
    let out = Output(args.connection.format);
    let images =
        RegistryImageClient::new(ApiClient::grpc_with_token(channel.clone(), token.clone()));
    let source = operations(&channel, &token);
    let registries =
        RegistryClient::new(ApiClient::grpc_with_token(channel.clone(), token.clone()));
    let command = match args.command {
        RegistryCommand::Image(command) => command,
        RegistryCommand::Import { layout, target } => {
            let pushed = import(
                &channel,
                &registries,
                args.connection.token.as_deref(),
                &layout,
                &target,
            )
            .await?;
            return out.one(&images.get(&pushed.image_id).await.map_err(failed)?);
        }
        RegistryCommand::Create {
            folder_id,
            name,
            labels,
        } => {
            let request = registry::CreateRegistryRequest {
                folder_id,
                name,
                labels: labels.into_iter().collect(),
                ..Default::default()
            };
            let registry = registries
                .create_and_wait(request)
                .await
                .map_err(wait_failed)?;
            return out.one(&registry);
        }
        RegistryCommand::List { folder_id, filter } => {
            let request = registry::ListRegistriesRequest {
                folder_id,
                filter,
                ..Default::default()
            };
            let all: Vec<registry::Registry> = registries
                .list_all(request)
                .try_collect()
                .await
                .map_err(failed)?;
            return out.list(&all, &["ID", "NAME", "STATUS", "CREATED"], |r| {
                vec![
                    r.id.clone(),
                    r.name.clone(),
                    registry::registry::Status::try_from(r.status)
                        .unwrap_or_default()
                        .as_str_name()
                        .to_owned(),
                    time(r.created_at),
                ]
            });
        }
        RegistryCommand::Gc { .. } | RegistryCommand::MoveBlobs { .. } => return Ok(()),
        RegistryCommand::Repository(command) => {
            let repositories =
                RepositoryClient::new(ApiClient::grpc_with_token(channel.clone(), token.clone()));
            return match command {
                RepositoryCommand::List {
                    registry_id,
                    folder_id,
                    filter,
                    order_by,
                } => {
                    let request = registry::ListRepositoriesRequest {
                        registry_id: registry_id.unwrap_or_default(),
                        folder_id: folder_id.unwrap_or_default(),
                        filter,
                        order_by,
                        ..Default::default()
                    };
                    let all: Vec<registry::Repository> = repositories
                        .list_all(request)
                        .try_collect()
                        .await
                        .map_err(failed)?;
                    out.list(&all, &["ID", "NAME"], |r| {
                        vec![r.id.clone(), r.name.clone()]
                    })
                }
                RepositoryCommand::Get { repository } => {
                    let found = if repository.contains('/') {
                        repositories.get_by_name(&repository).await
                    } else {
                        repositories.get(&repository).await
                    };
                    out.one(&found.map_err(failed)?)
                }
            };
        }
        RegistryCommand::Get { registry_id } => {
            return out.one(&registries.get(&registry_id).await.map_err(failed)?);
        }
        RegistryCommand::Update {
            registry_id,
            name,
            labels,
        } => {
            let mut paths = Vec::new();
            let mut request = registry::UpdateRegistryRequest {
                registry_id,
                ..Default::default()
            };
            if let Some(name) = name {
                request.name = name;
                paths.push("name".to_owned());
            }
            if let Some(labels) = labels {
                request.labels = labels.into_iter().collect();
                paths.push("labels".to_owned());
            }
            if paths.is_empty() {
                bail!("nothing to change: give --name or --label");
            }
            request.update_mask = Some(FieldMask { paths });
            let registry = registries
                .update_and_wait(request)
                .await
                .map_err(wait_failed)?;
            return out.one(&registry);
        }
        RegistryCommand::Delete { registry_id } => {
            let op = registries.delete(&registry_id).await.map_err(failed)?;
            return out.one(&wait(&source, op, WaitPolicy::default()).await?);
        }
    };
    match command {
        RegistryImageCommand::List {
            repository_name,
            registry_id,
            folder_id,
            filter,
            order_by,
        } => {
            let request = registry::ListImagesRequest {
                repository_name: repository_name.unwrap_or_default(),
                registry_id: registry_id.unwrap_or_default(),
                folder_id: folder_id.unwrap_or_default(),
                filter,
                order_by,
                ..Default::default()
            };
            let all: Vec<registry::Image> = images
                .list_all(request)
                .try_collect()
                .await
                .map_err(failed)?;
            out.list(
                &all,
                &["ID", "NAME", "DIGEST", "TAGS", "SIZE", "CREATED"],
                |i| {
                    vec![
                        i.id.clone(),
                        i.name.clone(),
                        i.digest.clone(),
                        i.tags.join(","),
                        size(i.compressed_size),
                        time(i.created_at),
                    ]
                },
            )
        }
        RegistryImageCommand::Get { image_id } => {
            let image = images.get(&image_id).await.map_err(failed)?;
            out.one(&image)
        }
        RegistryImageCommand::Delete { image_id } => {
            let op = images.delete(&image_id).await.map_err(failed)?;
            let done = wait(&source, op, WaitPolicy::default()).await?;
            out.one(&done)
        }
    }
}

/// `yc-images registry gc`: one garbage collection of the store, and what it freed.
async fn gc(store: &crate::serve::StoreArgs, grace: u64, out: Output) -> Result<()> {
    let (db, _, _lock) = crate::serve::open_db(store).await?;
    // The image store's schema is set up first: it says which blobs images need.
    yc_registry_image::SqlImageStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let blobs = crate::serve::open_blobs(&db, store).await?;
    let (before, _) = blobs.stored().await.map_err(anyhow::Error::msg)?;
    let collected = blobs
        .collect_garbage(Duration::from_secs(grace))
        .await
        .map_err(anyhow::Error::msg)?;
    let (after, count) = blobs.stored().await.map_err(anyhow::Error::msg)?;
    db.close().await;
    out.one(&serde_json::json!({
        "linksRemoved": collected.links_removed,
        "blobsRemoved": collected.blobs_removed,
        "bytesFreed": collected.bytes_freed,
        "uploadsExpired": collected.uploads_expired,
        "storedBytesBefore": before,
        "storedBytes": after,
        "storedBlobs": count,
    }))
}

/// Where `registry move-blobs` moves blobs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum MoveTo {
    /// The object storage of --blob-store.
    ObjectStorage,
    /// The database.
    Database,
}

/// `yc-images registry move-blobs`: moves every blob, one line on stderr per blob, and what
/// it moved.
async fn move_blobs(store: &crate::serve::StoreArgs, to: MoveTo, out: Output) -> Result<()> {
    use yc_registry_image::blobs::Placement;
    if store.blob_store.blob_store.is_none() {
        anyhow::bail!(
            "move-blobs needs the object storage: give --blob-store s3://bucket[/prefix]"
        );
    }
    let (db, _, _lock) = crate::serve::open_db(store).await?;
    let blobs = crate::serve::open_blobs(&db, store).await?;
    let placement = match to {
        MoveTo::ObjectStorage => Placement::ObjectStorage,
        MoveTo::Database => Placement::Database,
    };
    let moved = blobs
        .move_blobs(placement, |blob| {
            eprintln!("moved {} ({} bytes)", blob.digest, blob.size);
        })
        .await
        .map_err(anyhow::Error::msg)?;
    db.close().await;
    out.one(&serde_json::json!({
        "blobsMoved": moved.blobs,
        "bytesMoved": moved.bytes,
        "blobsSkipped": moved.skipped,
    }))
}

/// `yc-images registry import`: pushes the layout with a progress bar of the bytes.
pub(super) async fn import(
    channel: &Channel,
    registries: &RegistryClient,
    token: Option<&str>,
    dir: &std::path::Path,
    target: &str,
) -> Result<Pushed> {
    use yc_registry_image::push::{Layout, LayoutPusher};
    // A tag has no `/`; a repository has no `:`.
    let (repository, tag) = match target.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
        _ => (target, None),
    };
    let Some((registry_id, _)) = repository.split_once('/') else {
        bail!("{target:?} is not <registry id>/<repository>[:<tag>]");
    };
    // Nothing is created on the way: a registry that does not exist is said so, with how to
    // make one.
    if let Err(status) = registries.get(registry_id).await {
        if status.grpc_code() == tonic::Code::NotFound {
            bail!(
                "NOT_FOUND: registry {registry_id} does not exist; create one with \
                 `yc-images registry create --folder-id <folder>` and push to the id it shows"
            );
        }
        return Err(failed(status));
    }
    let layout = Layout::open(dir, tag).map_err(failed)?;
    let pusher = LayoutPusher::new(channel.clone(), token).map_err(failed)?;
    let bar = indicatif::ProgressBar::new(layout.size());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("pushing {}", layout.digest()));
    let pushed = pusher
        .push_layout(&layout, repository, tag, &|bytes| bar.inc(bytes))
        .await;
    bar.finish_and_clear();
    pushed.map_err(failed)
}
