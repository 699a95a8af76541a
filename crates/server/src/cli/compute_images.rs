//! `yc-images compute`: Compute images.

use super::*;

/// `yc-images compute`.
#[derive(Debug, clap::Args)]
pub(crate) struct ComputeArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: ComputeCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(super) enum ComputeCommand {
    /// Compute images.
    #[command(subcommand)]
    Image(ComputeImageCommand),
}

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
    /// Creates an image from another image or a URL and waits until it is READY.
    #[command(group(
        clap::ArgGroup::new("source")
            .required(true)
            .args(["source_image_id", "source_image_name", "source_family", "source_uri"])
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
        /// Copy this image (or give --source-image-name, --source-family or --source-uri).
        #[arg(long)]
        source_image_id: Option<String>,
        /// Copy the image of this name in --source-folder-id.
        #[arg(long)]
        source_image_name: Option<String>,
        /// Copy the newest READY image of this family in --source-folder-id.
        #[arg(long)]
        source_family: Option<String>,
        /// Where --source-image-name and --source-family look (default: --folder-id).
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
}

/// Runs `yc-images compute …`.
pub(crate) async fn compute(args: ComputeArgs) -> Result<()> {
    let (channel, token) = connect(&args.connection).await?;
    let out = Output(args.connection.format);
    let images =
        ComputeImageClient::new(ApiClient::grpc_with_token(channel.clone(), token.clone()));
    let source = operations(&channel, &token);
    let ComputeCommand::Image(command) = args.command;
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
            } else if let Some(uri) = source_uri {
                Source::Uri(uri)
            } else {
                bail!(
                    "give a source: --source-image-id, --source-image-name, --source-family or \
                     --source-uri"
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
    }
}

/// The id of the image named `name` in `folder` (a List with a name filter), or NOT_FOUND.
async fn image_named(images: &ComputeImageClient, folder: &str, name: &str) -> Result<String> {
    let request = compute::ListImagesRequest {
        folder_id: folder.to_owned(),
        filter: format!("name = {}", serde_json::Value::String(name.to_owned())),
        page_size: 1,
        ..Default::default()
    };
    let listed = images.list(&request).await.map_err(failed)?;
    match listed.images.into_iter().next() {
        Some(image) => Ok(image.id),
        None => Err(failed(Status::new(
            tonic::Code::NotFound,
            format!("no image is named {name:?} in folder {folder}"),
        ))),
    }
}
