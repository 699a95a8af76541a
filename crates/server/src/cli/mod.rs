//! The command line for both APIs: `yc-images registry …`, `yc-images compute …`,
//! `yc-images operation …`. It speaks gRPC to a server (`--endpoint`), with credentials (an
//! IAM token `--token`, a service-account key file `--sa-key`, or an OAuth token
//! `--oauth-token`, the last two exchanged for an IAM token at the same server) and, over TLS,
//! the CA to trust (`--ca`); each also read from an environment variable. Answers are a table for a person, or `--format json|yaml` (the canonical JSON of
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
use yc_registry_image::client::{RegistryClient, RegistryImageClient, RepositoryClient};
use yc_registry_image::push::Pushed;

mod compute_images;
mod iam;
mod operation;
mod registry_images;

pub(crate) use compute_images::{ComputeArgs, compute};
pub(crate) use iam::{IamArgs, iam};
use operation::{OPERATION_COLUMNS, operation_row, wait};
pub(crate) use operation::{OperationArgs, operation};
pub(crate) use registry_images::{RegistryArgs, registry};

/// Where the server is and how to talk to it; every command takes these.
#[derive(Debug, clap::Args)]
pub(crate) struct Connection {
    /// The server: `http://host:port`, `https://host:port` for one serving TLS (trusting the
    /// public roots, or the CA of --ca),
    /// or `host:port` as `yc` takes it (TLS when --ca is given or the port is 443,
    /// cleartext otherwise).
    #[arg(
        long,
        env = "YC_IMAGES_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    endpoint: String,

    /// IAM token sent as `authorization: Bearer <token>` (also read from `YC_IAM_TOKEN`).
    #[arg(long, env = "YC_IMAGES_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,

    /// A service account's authorized key file (`yc iam key create`, `yc-images iam key
    /// create`): a JWT signed with it is exchanged for an IAM token at the server.
    #[arg(long, env = "YC_SERVICE_ACCOUNT_KEY_FILE", global = true)]
    sa_key: Option<PathBuf>,

    /// A user's OAuth token, exchanged for an IAM token at the server.
    #[arg(long, env = "YC_TOKEN", hide_env_values = true, global = true)]
    oauth_token: Option<String>,

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
        let code = yc_proto_types::code_name(self.0.grpc_code());
        write!(f, "{code}: {}", self.0.message)
    }
}

impl std::error::Error for CallFailed {}

fn failed(status: Status) -> anyhow::Error {
    CallFailed(status).into()
}

fn wait_failed(error: WaitError) -> anyhow::Error {
    failed(error.status())
}

/// `--endpoint` as a URL, and what was chosen for an endpoint without a scheme: `host:port`
/// is `https://` when a CA is given or the port is 443, else `http://`, as `yc` decides.
fn endpoint_url(endpoint: &str, ca: bool) -> (String, Option<String>) {
    if endpoint.contains("://") {
        return (endpoint.to_owned(), None);
    }
    let (scheme, why) = if ca {
        ("https", "--ca is given")
    } else if endpoint.ends_with(":443") {
        ("https", "the port is 443")
    } else {
        ("http", "no --ca is given and the port is not 443")
    };
    let url = format!("{scheme}://{endpoint}");
    let chosen = format!("--endpoint {endpoint} taken as {url}, since {why}");
    (url, Some(chosen))
}

/// A gRPC channel to the server `connection` names, its calls carrying the IAM token of the
/// connection's credentials (exchanged at the server for a key file or an OAuth token).
async fn connect(connection: &Connection) -> Result<(Channel, BearerToken)> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let (url, chosen) = endpoint_url(&connection.endpoint, connection.ca.is_some());
    let mut endpoint = Endpoint::from_shared(url.clone())
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
        // The public roots, as for the real cloud.
        (None, true) => {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .context("setting up TLS")?;
        }
        (None, false) => {}
    }
    let authority = endpoint
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let channel = endpoint.connect().await.map_err(|e| {
        let chosen = chosen
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        // tonic's error says only "transport error"; its sources say what failed.
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            cause = format!("{cause}: {inner}");
            source = inner.source();
        }
        let hint = if https && connection.ca.is_none() {
            " (the public roots were trusted; for a server with its own CA, give --ca)"
        } else {
            ""
        };
        failed(Status::new(
            tonic::Code::Unavailable,
            format!("cannot reach {url}{chosen}: {cause}{hint}"),
        ))
    })?;
    let token = credentials_token(connection, &channel, &authority).await?;
    Ok((channel, token))
}

/// The IAM token the connection's credentials give, the first of: `--token` (or
/// `YC_IAM_TOKEN`), `--sa-key`, `--oauth-token`; none without credentials. Key files and
/// OAuth tokens are exchanged through the server's IamTokenService, the JWT's audience the
/// server's address as the SDKs build it.
async fn credentials_token(
    connection: &Connection,
    channel: &Channel,
    authority: &str,
) -> Result<BearerToken> {
    use yc_operations::credentials::{Credentials as _, OAuthToken, ServiceAccountKey};
    let token = connection
        .token
        .clone()
        .or_else(|| std::env::var("YC_IAM_TOKEN").ok())
        .filter(|t| !t.trim().is_empty());
    if let Some(token) = token {
        return BearerToken::new(token.trim()).map_err(failed);
    }
    let exchange = ApiClient::grpc(channel.clone());
    let audience = yc_operations::credentials::audience(authority);
    let exchanged = if let Some(path) = &connection.sa_key {
        let key = ServiceAccountKey::from_file(path)
            .map_err(failed)?
            .with_audience(audience)
            .exchanging_at(exchange);
        key.iam_token().await
    } else if let Some(oauth) = connection.oauth_token.as_deref().filter(|t| !t.is_empty()) {
        OAuthToken::new(oauth.trim())
            .exchanging_at(exchange)
            .iam_token()
            .await
    } else {
        return Ok(BearerToken::none());
    };
    BearerToken::new(&exchanged.map_err(failed)?).map_err(failed)
}

/// Reads operations over `channel`.
fn operations(channel: &Channel, token: &BearerToken) -> OperationServiceClient<AuthChannel> {
    OperationServiceClient::new(token.clone().channel(channel.clone()))
}

/// A time in a table: to the second (JSON and YAML keep every digit).
fn time(t: Option<yc_proto_types::google::protobuf::Timestamp>) -> String {
    t.and_then(|t| {
        yc_proto_types::google::protobuf::Timestamp {
            seconds: t.seconds,
            nanos: 0,
        }
        .to_rfc3339()
        .ok()
    })
    .unwrap_or_default()
}

/// A size in a table, for a person: `512 B`, `1.5 MiB`, `4.0 GiB` (JSON and YAML keep bytes).
fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// The fields that hold a size in bytes or a time, as their JSON names them.
const SIZE_FIELDS: &[&str] = &[
    "size",
    "storageSize",
    "minDiskSize",
    "diskSize",
    "compressedSize",
];
const TIME_FIELDS: &[&str] = &["createdAt", "modifiedAt", "expiresAt"];

/// A field of one message in a table: sizes and times as in lists (`4.0 GiB`, to the second),
/// the rest as [`scalar`] writes it.
fn for_a_person(field: &str, value: &serde_json::Value) -> String {
    let text = value.as_str();
    if SIZE_FIELDS.contains(&field)
        && let Some(bytes) = text.and_then(|t| t.parse::<i64>().ok())
    {
        return size(bytes);
    }
    if TIME_FIELDS.contains(&field)
        && let Some(t) = text.and_then(|t| {
            t.parse::<yc_proto_types::google::protobuf::Timestamp>()
                .ok()
        })
    {
        return time(Some(t));
    }
    scalar(value)
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
                        .map(|(k, v)| vec![k.clone(), for_a_person(k, v)])
                        .collect(),
                    other => vec![vec![scalar(other)]],
                };
                print!("{}", table(&[], &rows));
                Ok(())
            }
            _ => self.data(&value),
        }
    }

    /// The image or registry an operation made or changed, or the access bindings it changed
    /// (its response), else the operation.
    fn done(&self, op: &Operation) -> Result<()> {
        use yc_proto_types::yandex::cloud::operation::operation::Result as Outcome;
        match &op.result {
            Some(Outcome::Response(any)) => if let Ok(image) = any.to_msg::<compute::Image>() {
                self.one(&image)
            } else if let Ok(registry) = any.to_msg::<registry::Registry>() {
                self.one(&registry)
            } else if let Ok(changed) =
                any.to_msg::<yc_proto_types::yandex::cloud::access::AccessBindingsOperationResult>()
            {
                self.one(&changed)
            } else {
                self.one(op)
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
    fn tables_show_sizes_and_times_for_a_person() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536 * 1024), "1.5 MiB");
        assert_eq!(size(4 << 30), "4.0 GiB");
        assert_eq!(size(3 << 40), "3.0 TiB");
        let at = yc_proto_types::google::protobuf::Timestamp {
            seconds: 1_718_873_645,
            nanos: 123_456_789,
        };
        assert_eq!(time(Some(at)), "2024-06-20T08:54:05Z");
        assert_eq!(time(None), "");
    }

    #[test]
    fn endpoints_without_a_scheme_are_taken_as_yc_takes_them() {
        assert_eq!(
            endpoint_url("http://h:1", false),
            ("http://h:1".to_owned(), None)
        );
        let (url, chosen) = endpoint_url("localhost:50051", false);
        assert_eq!(url, "http://localhost:50051");
        assert!(chosen.unwrap().contains("no --ca is given"));
        let (url, chosen) = endpoint_url("localhost:50051", true);
        assert_eq!(url, "https://localhost:50051");
        assert!(chosen.unwrap().contains("--ca is given"));
        let (url, _) = endpoint_url("api.cloud.yandex.net:443", false);
        assert_eq!(url, "https://api.cloud.yandex.net:443");
    }

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
        let error = CallFailed(Status::new(tonic::Code::PermissionDenied, "no"));
        assert_eq!(error.to_string(), "PERMISSION_DENIED: no");
    }
}
