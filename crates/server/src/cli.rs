//! The command line for both APIs: `yc-images registry …`, `yc-images compute …`,
//! `yc-images operation …`. It speaks gRPC to a server (`--endpoint`), with a token
//! (`--token`) and, over TLS, the CA to trust (`--ca`); each also read from an environment
//! variable. Answers are a table for a person, or `--format json|yaml` (the canonical JSON of
//! the API) for scripts; an error is one line with its code, and a non-zero exit.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt as _;
use serde::Serialize;
use tonic::transport::Channel;
use yc_compute_image::client::ComputeImageClient;
use yc_operations::client::{ApiClient, AuthChannel, BearerToken};
use yc_operations::{OperationSource as _, OperationWaiter, WaitError, WaitPolicy};
use yc_proto_types::google::protobuf::FieldMask;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::compute::v1 as compute;
use yc_proto_types::yandex::cloud::containerregistry::v1 as registry;
use yc_proto_types::yandex::cloud::operation::Operation;
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;
use yc_registry_image::client::RegistryImageClient;
use yc_registry_image::push::Pushed;

/// Where the server is and how to talk to it; every command takes these.
#[derive(Debug, clap::Args)]
pub(crate) struct Connection {
    /// The server's URL: `http://host:port`, or `https://host:port` (with --ca) for one
    /// serving TLS.
    #[arg(
        long,
        env = "YC_IMAGES_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    endpoint: String,

    /// IAM token sent as `authorization: Bearer <token>`.
    #[arg(long, env = "YC_IMAGES_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,

    /// CA certificate (PEM) to trust for an `https://` endpoint, such as the one
    /// `yc-images serve --tls` prints.
    #[arg(long, env = "YC_IMAGES_CA", global = true)]
    ca: Option<PathBuf>,

    /// How answers are written: a table for a person, or the API's JSON or YAML for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Yaml,
}

/// `yc-images registry`.
#[derive(Debug, clap::Args)]
pub(crate) struct RegistryArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RegistryCommand {
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
enum RegistryImageCommand {
    /// Every image of a repository, registry or folder, page after page.
    List {
        /// `<registry id>/<repository>`.
        #[arg(long)]
        repository_name: Option<String>,
        #[arg(long)]
        registry_id: Option<String>,
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
    Get { image_id: String },
    /// Deletes an image and waits until it is gone.
    Delete { image_id: String },
}

/// `yc-images compute`.
#[derive(Debug, clap::Args)]
pub(crate) struct ComputeArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: ComputeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ComputeCommand {
    /// Compute images.
    #[command(subcommand)]
    Image(ComputeImageCommand),
}

#[derive(Debug, clap::Subcommand)]
enum ComputeImageCommand {
    /// Every image of a folder, page after page.
    List {
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
    Get { image_id: String },
    /// The newest READY image of a family.
    LatestByFamily {
        #[arg(long)]
        folder_id: String,
        #[arg(long)]
        family: String,
    },
    /// Creates an image from another image or a URL and waits until it is READY.
    Create {
        #[arg(long)]
        folder_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "")]
        family: String,
        /// Bytes; at least the image's size.
        #[arg(long, default_value_t = 0)]
        min_disk_size: i64,
        /// `key=value`; repeat for more.
        #[arg(long = "label", value_parser = label)]
        labels: Vec<(String, String)>,
        /// Copy this image.
        #[arg(
            long,
            conflicts_with = "source_uri",
            required_unless_present = "source_uri"
        )]
        source_image_id: Option<String>,
        /// Fetch the image (qcow2 or raw) from this URL.
        #[arg(long)]
        source_uri: Option<String>,
    },
    /// Changes the name, description, minimum disk size or labels of an image, and waits.
    Update {
        image_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        min_disk_size: Option<i64>,
        /// `key=value`; repeat for more. Replaces every label.
        #[arg(long = "label", value_parser = label)]
        labels: Option<Vec<(String, String)>>,
    },
    /// Deletes an image and waits until it is gone.
    Delete { image_id: String },
    /// The image's operations, newest first.
    Operations { image_id: String },
}

/// `yc-images operation`.
#[derive(Debug, clap::Args)]
pub(crate) struct OperationArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: OperationCommand,
}

#[derive(Debug, clap::Subcommand)]
enum OperationCommand {
    /// An operation as it is now.
    Get { operation_id: String },
    /// Waits until an operation is done; fails as the operation did.
    Wait {
        operation_id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

fn label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

/// A failed call, written as one line: the code and what the server said.
#[derive(Debug)]
pub(crate) struct CallFailed(Status);

impl std::fmt::Display for CallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = format!("{:?}", self.0.grpc_code());
        write!(f, "{}: {}", screaming(&code), self.0.message)
    }
}

impl std::error::Error for CallFailed {}

/// `NotFound` → `NOT_FOUND`, as the API names its codes.
fn screaming(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn failed(status: Status) -> anyhow::Error {
    CallFailed(status).into()
}

fn wait_failed(error: WaitError) -> anyhow::Error {
    failed(error.status())
}

/// A gRPC channel to the server `connection` names, its calls carrying the token.
async fn connect(connection: &Connection) -> Result<(Channel, BearerToken)> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let token = match &connection.token {
        Some(token) => BearerToken::new(token).map_err(failed)?,
        None => BearerToken::none(),
    };
    let mut endpoint = Endpoint::from_shared(connection.endpoint.clone())
        .with_context(|| format!("--endpoint {:?} is not a URL", connection.endpoint))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60));
    let https = endpoint.uri().scheme_str() == Some("https");
    match (&connection.ca, https) {
        (Some(ca), true) => {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading the CA certificate {}", ca.display()))?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
                .context("setting up TLS")?;
        }
        (Some(_), false) => bail!("--ca is for an https:// endpoint; use https://host:port"),
        (None, true) => bail!("an https:// endpoint needs the CA to trust: give --ca"),
        (None, false) => {}
    }
    let channel = endpoint.connect().await.map_err(|e| {
        failed(Status::new(
            tonic::Code::Unavailable,
            format!("cannot reach {}: {e}", connection.endpoint),
        ))
    })?;
    Ok((channel, token))
}

/// Reads operations over `channel`.
fn operations(channel: &Channel, token: &BearerToken) -> OperationServiceClient<AuthChannel> {
    OperationServiceClient::new(token.clone().channel(channel.clone()))
}

/// Runs `yc-images registry …`.
pub(crate) async fn registry(args: RegistryArgs) -> Result<()> {
    let (channel, token) = connect(&args.connection).await?;
    let out = Output(args.connection.format);
    let images =
        RegistryImageClient::new(ApiClient::grpc_with_token(channel.clone(), token.clone()));
    let source = operations(&channel, &token);
    let command = match args.command {
        RegistryCommand::Image(command) => command,
        RegistryCommand::Import { layout, target } => {
            let pushed =
                import(&channel, args.connection.token.as_deref(), &layout, &target).await?;
            return out.one(&images.get(&pushed.image_id).await.map_err(failed)?);
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
                        i.compressed_size.to_string(),
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

/// `yc-images registry import`: pushes the layout with a progress bar of the bytes.
async fn import(
    channel: &Channel,
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
    if !repository.contains('/') {
        bail!("{target:?} is not <registry id>/<repository>[:<tag>]");
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
            i.storage_size.to_string(),
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
            source_uri,
        } => {
            use compute::create_image_request::Source;
            let from = match (source_image_id, source_uri) {
                (Some(id), _) => Source::ImageId(id),
                (None, Some(uri)) => Source::Uri(uri),
                (None, None) => bail!("give --source-image-id or --source-uri"),
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

/// Runs `yc-images operation …`.
pub(crate) async fn operation(args: OperationArgs) -> Result<()> {
    let (channel, token) = connect(&args.connection).await?;
    let out = Output(args.connection.format);
    let source = operations(&channel, &token);
    match args.command {
        OperationCommand::Get { operation_id } => {
            out.one(&source.get_operation(&operation_id).await.map_err(failed)?)
        }
        OperationCommand::Wait {
            operation_id,
            timeout,
        } => {
            let op = source.get_operation(&operation_id).await.map_err(failed)?;
            let policy = WaitPolicy {
                timeout: Some(Duration::from_secs(timeout)),
                ..WaitPolicy::default()
            };
            out.one(&wait(&source, op, policy).await?)
        }
    }
}

const OPERATION_COLUMNS: [&str; 5] = ["ID", "DESCRIPTION", "CREATED BY", "DONE", "RESULT"];

fn operation_row(op: &Operation) -> Vec<String> {
    use yc_proto_types::yandex::cloud::operation::operation::Result as Outcome;
    vec![
        op.id.clone(),
        op.description.clone(),
        op.created_by.clone(),
        op.done.to_string(),
        match &op.result {
            Some(Outcome::Error(e)) => CallFailed(e.clone()).to_string(),
            Some(Outcome::Response(_)) => "ok".into(),
            None => String::new(),
        },
    ]
}

/// Waits for `op` with a spinner on a terminal; an operation that failed is an error.
async fn wait(
    source: &OperationServiceClient<AuthChannel>,
    op: Operation,
    policy: WaitPolicy,
) -> Result<Operation> {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("{} ({})", op.description, op.id));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let waiter = OperationWaiter::new(source.clone()).with_policy(policy);
    let done = waiter.wait_done(op).await;
    spinner.finish_and_clear();
    let done = done.map_err(wait_failed)?;
    if let Some(yc_proto_types::yandex::cloud::operation::operation::Result::Error(e)) =
        &done.result
    {
        return Err(failed(e.clone()));
    }
    Ok(done)
}

fn time(t: Option<yc_proto_types::google::protobuf::Timestamp>) -> String {
    t.and_then(|t| t.to_rfc3339().ok()).unwrap_or_default()
}

/// Writes answers in the chosen format.
struct Output(Format);

impl Output {
    /// One message: as JSON or YAML, or as a table of its fields.
    fn one<T: Serialize>(&self, message: &T) -> Result<()> {
        let value = serde_json::to_value(message)?;
        match self.0 {
            Format::Table => {
                let rows: Vec<Vec<String>> = match &value {
                    serde_json::Value::Object(fields) => fields
                        .iter()
                        .map(|(k, v)| vec![k.clone(), scalar(v)])
                        .collect(),
                    other => vec![vec![scalar(other)]],
                };
                print!("{}", table(&[], &rows));
                Ok(())
            }
            _ => self.data(&value),
        }
    }

    /// The image an operation made or changed (its response), else the operation.
    fn done(&self, op: &Operation) -> Result<()> {
        use yc_proto_types::yandex::cloud::operation::operation::Result as Outcome;
        match &op.result {
            Some(Outcome::Response(any)) => match any.to_msg::<compute::Image>() {
                Ok(image) => self.one(&image),
                Err(_) => self.one(op),
            },
            _ => self.one(op),
        }
    }

    /// Many messages: a table with `columns`, or a JSON or YAML list.
    fn list<T: Serialize>(
        &self,
        items: &[T],
        columns: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) -> Result<()> {
        match self.0 {
            Format::Table => {
                let rows: Vec<Vec<String>> = items.iter().map(row).collect();
                print!("{}", table(columns, &rows));
                Ok(())
            }
            _ => self.data(&serde_json::to_value(items)?),
        }
    }

    fn data(&self, value: &serde_json::Value) -> Result<()> {
        match self.0 {
            Format::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
            _ => println!("{}", serde_json::to_string_pretty(value)?),
        }
        Ok(())
    }
}

/// A JSON value on one line of a table.
fn scalar(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns aligned by the widest cell, a header line first when there are headers.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in (!headers.is_empty())
        .then_some(&header)
        .into_iter()
        .chain(rows)
    {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_codes_read_as_the_api_names_them() {
        let rows = vec![
            vec!["fd8a".to_owned(), "ubuntu".to_owned(), "READY".to_owned()],
            vec!["fd8bbbbb".to_owned(), "x".to_owned(), "".to_owned()],
        ];
        assert_eq!(
            table(&["ID", "NAME", "STATUS"], &rows),
            "ID        NAME    STATUS\nfd8a      ubuntu  READY\nfd8bbbbb  x\n"
        );
        let error = CallFailed(Status::new(tonic::Code::NotFound, "Image fd8x not found"));
        assert_eq!(error.to_string(), "NOT_FOUND: Image fd8x not found");
        assert_eq!(screaming("PermissionDenied"), "PERMISSION_DENIED");
    }
}
