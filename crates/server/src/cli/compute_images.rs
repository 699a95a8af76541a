//! `yc-images compute`: Compute images.

use super::*;
use yc_compute_image::ComputeSourcesClient;
use yc_proto_types::yandex::cloud::access::{self, AccessBinding};

/// `yc-images compute`.
#[derive(Debug, clap::Args)]
pub(crate) struct ComputeArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: ComputeCommand,
}

// Parsed once per run: the size of a command does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub(super) enum ComputeCommand {
    /// Compute images: list, get, latest-by-family, create, update, delete, operations, and
    /// their access bindings.
    #[command(subcommand)]
    Image(ComputeImageCommand),
    /// Disks, the sources images are made from: list, get.
    #[command(subcommand)]
    Disk(SourceCommand),
    /// Snapshots, the sources images are made from: list, get.
    #[command(subcommand)]
    Snapshot(SourceCommand),
}

/// `yc-images compute disk|snapshot`.
#[derive(Debug, clap::Subcommand)]
pub(super) enum SourceCommand {
    /// Every disk (or snapshot) of a folder, page after page.
    List {
        /// The folder whose disks (or snapshots) to list.
        #[arg(long)]
        folder_id: String,
        /// Conditions on `name`, `status` and `id`, e.g. `name = "boot"`.
        #[arg(long, default_value = "")]
        filter: String,
        /// e.g. `createdAt desc`.
        #[arg(long, default_value = "")]
        order_by: String,
    },
    /// One disk (or snapshot).
    Get {
        /// Its id.
        id: String,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub(super) enum ComputeImageCommand {
    /// Every image of a folder, page after page.
    List {
        /// The folder whose images to list.
        #[arg(long)]
        folder_id: String,
        /// Conditions on `name`, `family`, `status` and `id`, e.g. `family = "ubuntu"`.
        #[arg(long, default_value = "")]
        filter: String,
        /// e.g. `createdAt desc`.
        #[arg(long, default_value = "")]
        order_by: String,
    },
    /// One image.
    Get {
        /// The image's id.
        image_id: String,
    },
    /// The newest READY image of a family.
    LatestByFamily {
        /// The folder the family's images are in.
        #[arg(long)]
        folder_id: String,
        /// The family, e.g. `ubuntu-2204-lts`.
        #[arg(long)]
        family: String,
    },
    /// Creates an image from another image, a disk, a snapshot or a URL and waits until it is
    /// READY.
    #[command(group(
        clap::ArgGroup::new("source")
            .required(true)
            .args([
                "source_image_id", "source_image_name", "source_family",
                "source_disk_id", "source_disk_name",
                "source_snapshot_id", "source_snapshot_name",
                "source_uri",
            ])
    ))]
    Create {
        /// The folder to create the image in.
        #[arg(long)]
        folder_id: String,
        /// Unique within the folder: 1-63 of `a-z`, `0-9`, `-`, starting with a letter.
        #[arg(long)]
        name: String,
        /// Up to 256 characters.
        #[arg(long, default_value = "")]
        description: String,
        /// The family the image joins; `latest-by-family` finds its newest.
        #[arg(long, default_value = "")]
        family: String,
        /// Bytes; at least the image's size.
        #[arg(long, default_value_t = 0)]
        min_disk_size: i64,
        /// `key=value`; repeat for more.
        #[arg(long = "label", value_parser = label)]
        labels: Vec<(String, String)>,
        /// Copy this image (or give another --source-…).
        #[arg(long)]
        source_image_id: Option<String>,
        /// Copy the image of this name in --source-folder-id.
        #[arg(long)]
        source_image_name: Option<String>,
        /// Copy the newest READY image of this family in --source-folder-id.
        #[arg(long)]
        source_family: Option<String>,
        /// Make the image from this disk.
        #[arg(long)]
        source_disk_id: Option<String>,
        /// Make the image from the disk of this name in --source-folder-id.
        #[arg(long)]
        source_disk_name: Option<String>,
        /// Make the image from this snapshot.
        #[arg(long)]
        source_snapshot_id: Option<String>,
        /// Make the image from the snapshot of this name in --source-folder-id.
        #[arg(long)]
        source_snapshot_name: Option<String>,
        /// Where the --source-…-name and --source-family flags look (default: --folder-id).
        #[arg(long)]
        source_folder_id: Option<String>,
        /// Fetch the image (qcow2 or raw) from this URL.
        #[arg(long)]
        source_uri: Option<String>,
    },
    /// Changes the name, description, minimum disk size or labels of an image, and waits.
    Update {
        /// The image's id.
        image_id: String,
        /// The new name.
        #[arg(long)]
        name: Option<String>,
        /// The new description.
        #[arg(long)]
        description: Option<String>,
        /// The new minimum disk size, in bytes.
        #[arg(long)]
        min_disk_size: Option<i64>,
        /// `key=value`; repeat for more. Replaces every label.
        #[arg(long = "label", value_parser = label)]
        labels: Option<Vec<(String, String)>>,
    },
    /// Deletes an image and waits until it is gone.
    Delete {
        /// The image's id.
        image_id: String,
    },
    /// The image's operations, newest first.
    Operations {
        /// The image's id.
        image_id: String,
    },
    /// Every access binding of an image.
    ListAccessBindings {
        /// The image's id.
        image_id: String,
    },
    /// Replaces every access binding of an image (none given: removes them all), and waits.
    SetAccessBindings {
        /// The image's id.
        image_id: String,
        /// `role=<role>,subject=<type>:<id>`, e.g.
        /// `role=compute.images.user,subject=userAccount:ajebob`; repeat for more.
        #[arg(long = "access-binding", value_parser = access_binding)]
        access_bindings: Vec<AccessBinding>,
    },
    /// Grants a role on an image to a subject, and waits.
    AddAccessBinding {
        /// The image's id.
        image_id: String,
        /// The role: viewer, compute.images.user, editor, admin, ….
        #[arg(long)]
        role: String,
        /// `<type>:<id>`: `userAccount:aje…`, `serviceAccount:aje…`,
        /// `system:allAuthenticatedUsers`.
        #[arg(long)]
        subject: String,
    },
    /// Takes a role on an image from a subject, and waits.
    RemoveAccessBinding {
        /// The image's id.
        image_id: String,
        /// The role.
        #[arg(long)]
        role: String,
        /// `<type>:<id>`, as for add-access-binding.
        #[arg(long)]
        subject: String,
    },
}

/// A subject as `<type>:<id>`.
fn subject(text: &str) -> Result<access::Subject, String> {
    match text.split_once(':') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => Ok(access::Subject {
            id: id.to_owned(),
            r#type: kind.to_owned(),
        }),
        _ => Err(format!(
            "{text:?} is not <type>:<id>, e.g. userAccount:ajebob or system:allAuthenticatedUsers"
        )),
    }
}

/// An access binding as `role=<role>,subject=<type>:<id>`.
fn access_binding(text: &str) -> Result<AccessBinding, String> {
    let mut role = None;
    let mut who = None;
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("role", value)) if !value.is_empty() => role = Some(value.to_owned()),
            Some(("subject", value)) => who = Some(subject(value)?),
            _ => {
                return Err(format!("{text:?} is not role=<role>,subject=<type>:<id>"));
            }
        }
    }
    match (role, who) {
        (Some(role_id), Some(subject)) => Ok(AccessBinding {
            role_id,
            subject: Some(subject),
        }),
        _ => Err(format!("{text:?} is not role=<role>,subject=<type>:<id>")),
    }
}

/// Runs `yc-images compute …`.
pub(crate) async fn compute(args: ComputeArgs) -> Result<()> {
    let (channel, token) = connect(&args.connection).await?;
    let out = Output(args.connection.format);
    let images =
        ComputeImageClient::new(ApiClient::grpc_with_token(channel.clone(), token.clone()));
    let sources =
        ComputeSourcesClient::new(ApiClient::grpc_with_token(channel.clone(), token.clone()));
    let source = operations(&channel, &token);
    let command = match args.command {
        ComputeCommand::Image(command) => command,
        ComputeCommand::Disk(command) => return disks(&sources, command, out).await,
        ComputeCommand::Snapshot(command) => return snapshots(&sources, command, out).await,
    };
    let columns = ["ID", "NAME", "FAMILY", "STATUS", "SIZE", "CREATED"];
    let row = |i: &compute::Image| {
        vec![
            i.id.clone(),
            i.name.clone(),
            i.family.clone(),
            compute::image::Status::try_from(i.status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| i.status.to_string()),
            size(i.storage_size),
            time(i.created_at),
        ]
    };
    match command {
        ComputeImageCommand::List {
            folder_id,
            filter,
            order_by,
        } => {
            let request = compute::ListImagesRequest {
                folder_id,
                filter,
                order_by,
                ..Default::default()
            };
            let all: Vec<compute::Image> = images
                .list_all(request)
                .try_collect()
                .await
                .map_err(failed)?;
            out.list(&all, &columns, row)
        }
        ComputeImageCommand::Get { image_id } => {
            out.one(&images.get(&image_id).await.map_err(failed)?)
        }
        ComputeImageCommand::LatestByFamily { folder_id, family } => out.one(
            &images
                .latest_by_family(&folder_id, &family)
                .await
                .map_err(failed)?,
        ),
        ComputeImageCommand::Create {
            folder_id,
            name,
            description,
            family,
            min_disk_size,
            labels,
            source_image_id,
            source_image_name,
            source_family,
            source_disk_id,
            source_disk_name,
            source_snapshot_id,
            source_snapshot_name,
            source_folder_id,
            source_uri,
        } => {
            use compute::create_image_request::Source;
            let source_folder = source_folder_id.unwrap_or_else(|| folder_id.clone());
            let from = if let Some(id) = source_image_id {
                Source::ImageId(id)
            } else if let Some(family) = source_family {
                let latest = images
                    .latest_by_family(&source_folder, &family)
                    .await
                    .map_err(failed)?;
                Source::ImageId(latest.id)
            } else if let Some(wanted) = source_image_name {
                Source::ImageId(image_named(&images, &source_folder, &wanted).await?)
            } else if let Some(id) = source_disk_id {
                Source::DiskId(id)
            } else if let Some(wanted) = source_disk_name {
                Source::DiskId(disk_named(&sources, &source_folder, &wanted).await?)
            } else if let Some(id) = source_snapshot_id {
                Source::SnapshotId(id)
            } else if let Some(wanted) = source_snapshot_name {
                Source::SnapshotId(snapshot_named(&sources, &source_folder, &wanted).await?)
            } else if let Some(uri) = source_uri {
                Source::Uri(uri)
            } else {
                bail!(
                    "give a source: --source-image-id, --source-image-name, --source-family, \
                     --source-disk-id, --source-disk-name, --source-snapshot-id, \
                     --source-snapshot-name or --source-uri"
                );
            };
            let request = compute::CreateImageRequest {
                folder_id,
                name,
                description,
                family,
                min_disk_size,
                labels: labels.into_iter().collect(),
                source: Some(from),
                ..Default::default()
            };
            let op = images.create(&request).await.map_err(failed)?;
            out.done(&wait(&source, op, WaitPolicy::default()).await?)
        }
        ComputeImageCommand::Update {
            image_id,
            name,
            description,
            min_disk_size,
            labels,
        } => {
            let mut paths = Vec::new();
            let mut request = compute::UpdateImageRequest {
                image_id,
                ..Default::default()
            };
            if let Some(name) = name {
                request.name = name;
                paths.push("name".to_owned());
            }
            if let Some(description) = description {
                request.description = description;
                paths.push("description".to_owned());
            }
            if let Some(size) = min_disk_size {
                request.min_disk_size = size;
                paths.push("min_disk_size".to_owned());
            }
            if let Some(labels) = labels {
                request.labels = labels.into_iter().collect();
                paths.push("labels".to_owned());
            }
            if paths.is_empty() {
                bail!("nothing to change: give --name, --description, --min-disk-size or --label");
            }
            request.update_mask = Some(FieldMask { paths });
            let op = images.update(&request).await.map_err(failed)?;
            out.done(&wait(&source, op, WaitPolicy::default()).await?)
        }
        ComputeImageCommand::Delete { image_id } => {
            let op = images.delete(&image_id).await.map_err(failed)?;
            out.one(&wait(&source, op, WaitPolicy::default()).await?)
        }
        ComputeImageCommand::Operations { image_id } => {
            let mut all = Vec::new();
            let mut request = compute::ListImageOperationsRequest {
                image_id,
                ..Default::default()
            };
            loop {
                let page = images.list_operations(&request).await.map_err(failed)?;
                all.extend(page.operations);
                if page.next_page_token.is_empty() {
                    break;
                }
                request.page_token = page.next_page_token;
            }
            out.list(&all, &OPERATION_COLUMNS, operation_row)
        }
        ComputeImageCommand::ListAccessBindings { image_id } => {
            let all: Vec<AccessBinding> = images
                .list_all_access_bindings(&image_id)
                .try_collect()
                .await
                .map_err(failed)?;
            out.list(&all, &BINDING_COLUMNS, binding_row)
        }
        ComputeImageCommand::SetAccessBindings {
            image_id,
            access_bindings,
        } => {
            let op = images
                .set_access_bindings(&image_id, access_bindings)
                .await
                .map_err(failed)?;
            out.done(&wait(&source, op, WaitPolicy::default()).await?)
        }
        ComputeImageCommand::AddAccessBinding {
            image_id,
            role,
            subject: who,
        } => {
            let delta = delta(access::AccessBindingAction::Add, role, &who)?;
            let op = images
                .update_access_bindings(&image_id, vec![delta])
                .await
                .map_err(failed)?;
            out.done(&wait(&source, op, WaitPolicy::default()).await?)
        }
        ComputeImageCommand::RemoveAccessBinding {
            image_id,
            role,
            subject: who,
        } => {
            let delta = delta(access::AccessBindingAction::Remove, role, &who)?;
            let op = images
                .update_access_bindings(&image_id, vec![delta])
                .await
                .map_err(failed)?;
            out.done(&wait(&source, op, WaitPolicy::default()).await?)
        }
    }
}

/// A change of one binding, its subject given as `<type>:<id>`.
fn delta(
    action: access::AccessBindingAction,
    role_id: String,
    who: &str,
) -> Result<access::AccessBindingDelta> {
    Ok(access::AccessBindingDelta {
        action: action as i32,
        access_binding: Some(AccessBinding {
            role_id,
            subject: Some(subject(who).map_err(anyhow::Error::msg)?),
        }),
    })
}

const BINDING_COLUMNS: [&str; 3] = ["ROLE", "SUBJECT TYPE", "SUBJECT ID"];

fn binding_row(binding: &AccessBinding) -> Vec<String> {
    let subject = binding.subject.clone().unwrap_or_default();
    vec![binding.role_id.clone(), subject.r#type, subject.id]
}

/// Runs `yc-images compute disk …`.
async fn disks(sources: &ComputeSourcesClient, command: SourceCommand, out: Output) -> Result<()> {
    let row = |d: &compute::Disk| {
        let status = compute::disk::Status::try_from(d.status)
            .map(|s| s.as_str_name().to_owned())
            .unwrap_or_else(|_| d.status.to_string());
        source_row(&d.id, &d.name, status, d.size, d.created_at)
    };
    match command {
        SourceCommand::List {
            folder_id,
            filter,
            order_by,
        } => {
            let request = compute::ListDisksRequest {
                folder_id,
                filter,
                order_by,
                ..Default::default()
            };
            let all: Vec<compute::Disk> = sources
                .list_all_disks(request)
                .try_collect()
                .await
                .map_err(failed)?;
            out.list(&all, &SOURCE_COLUMNS, row)
        }
        SourceCommand::Get { id } => out.one(&sources.get_disk(&id).await.map_err(failed)?),
    }
}

/// Runs `yc-images compute snapshot …`.
async fn snapshots(
    sources: &ComputeSourcesClient,
    command: SourceCommand,
    out: Output,
) -> Result<()> {
    let row = |s: &compute::Snapshot| {
        let status = compute::snapshot::Status::try_from(s.status)
            .map(|st| st.as_str_name().to_owned())
            .unwrap_or_else(|_| s.status.to_string());
        source_row(&s.id, &s.name, status, s.disk_size, s.created_at)
    };
    match command {
        SourceCommand::List {
            folder_id,
            filter,
            order_by,
        } => {
            let request = compute::ListSnapshotsRequest {
                folder_id,
                filter,
                order_by,
                ..Default::default()
            };
            let all: Vec<compute::Snapshot> = sources
                .list_all_snapshots(request)
                .try_collect()
                .await
                .map_err(failed)?;
            out.list(&all, &SOURCE_COLUMNS, row)
        }
        SourceCommand::Get { id } => out.one(&sources.get_snapshot(&id).await.map_err(failed)?),
    }
}

/// A disk's or snapshot's row in a table.
fn source_row(
    id: &str,
    name: &str,
    status: String,
    bytes: i64,
    created_at: Option<yc_proto_types::google::protobuf::Timestamp>,
) -> Vec<String> {
    vec![
        id.to_owned(),
        name.to_owned(),
        status,
        size(bytes),
        time(created_at),
    ]
}

const SOURCE_COLUMNS: [&str; 5] = ["ID", "NAME", "STATUS", "SIZE", "CREATED"];

/// The filter of a List for the resource named `name`.
fn name_filter(name: &str) -> String {
    format!("name = {}", serde_json::Value::String(name.to_owned()))
}

/// The id of the disk named `name` in `folder`, or NOT_FOUND.
async fn disk_named(sources: &ComputeSourcesClient, folder: &str, name: &str) -> Result<String> {
    let request = compute::ListDisksRequest {
        folder_id: folder.to_owned(),
        filter: name_filter(name),
        page_size: 1,
        ..Default::default()
    };
    let listed = sources.list_disks(&request).await.map_err(failed)?;
    named(
        listed.disks.into_iter().next().map(|d| d.id),
        "disk",
        folder,
        name,
    )
}

/// The id of the snapshot named `name` in `folder`, or NOT_FOUND.
async fn snapshot_named(
    sources: &ComputeSourcesClient,
    folder: &str,
    name: &str,
) -> Result<String> {
    let request = compute::ListSnapshotsRequest {
        folder_id: folder.to_owned(),
        filter: name_filter(name),
        page_size: 1,
        ..Default::default()
    };
    let listed = sources.list_snapshots(&request).await.map_err(failed)?;
    named(
        listed.snapshots.into_iter().next().map(|s| s.id),
        "snapshot",
        folder,
        name,
    )
}

/// The id found by a name, or NOT_FOUND saying what was looked for.
fn named(found: Option<String>, noun: &str, folder: &str, name: &str) -> Result<String> {
    found.ok_or_else(|| {
        failed(Status::new(
            tonic::Code::NotFound,
            format!("no {noun} is named {name:?} in folder {folder}"),
        ))
    })
}

/// The id of the image named `name` in `folder` (a List with a name filter), or NOT_FOUND.
async fn image_named(images: &ComputeImageClient, folder: &str, name: &str) -> Result<String> {
    let request = compute::ListImagesRequest {
        folder_id: folder.to_owned(),
        filter: name_filter(name),
        page_size: 1,
        ..Default::default()
    };
    let listed = images.list(&request).await.map_err(failed)?;
    named(
        listed.images.into_iter().next().map(|i| i.id),
        "image",
        folder,
        name,
    )
}
