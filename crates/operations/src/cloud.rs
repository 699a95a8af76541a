//! [`Cloud`]: the APIs found as the official SDKs find them: `ApiEndpointService.List` at one
//! endpoint (the real cloud's `api.cloud.yandex.net:443` unless another is given) tells where
//! each API is served, and every client connects there over TLS (the webpki roots, or a CA you
//! give), with credentials exchanged at the `iam` endpoint it found and operations waited for
//! at the `operation` endpoint.
//!
//! ```no_run
//! use yc_operations::cloud::Cloud;
//! use yc_operations::credentials::ServiceAccountKey;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // The real cloud (this needs its network):
//! let cloud = Cloud::new().with_service_account_key(ServiceAccountKey::from_file("key.json")?);
//! // or this server, with the same code:
//! let local = Cloud::at("localhost:50051")
//!     .with_ca_pem(std::fs::read("yc-images-data/tls/ca.pem")?)
//!     .with_service_account_key(ServiceAccountKey::from_file("key.json")?);
//! let compute = local.client("compute").await?; // an ApiClient for the typed clients
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::endpoint::{ListApiEndpointsRequest, api_endpoint_service_rpc};

use crate::ApiClient;
use crate::credentials::{Credentials, OAuthToken, ServiceAccountKey};

/// Where the SDKs discover the real cloud's APIs.
pub const CLOUD_ENDPOINT: &str = "api.cloud.yandex.net:443";

/// The user agent of this crate's clients.
pub const USER_AGENT: &str = concat!("yc-images-rust/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone)]
enum Tls {
    /// The webpki roots (the Mozilla set).
    WebPki,
    /// Only this CA (PEM).
    Ca(Vec<u8>),
    /// Cleartext, for a server without TLS.
    None,
}

/// Credentials as given, bound to the `iam` endpoint once it is found.
#[derive(Debug)]
enum Given {
    None,
    Ready(Arc<dyn Credentials>),
    Key(Box<ServiceAccountKey>),
    OAuth(String),
}

/// The APIs of one cloud (or of a server standing in for it), found by discovery.
#[derive(Debug)]
pub struct Cloud {
    endpoint: String,
    tls: Tls,
    given: std::sync::Mutex<Option<Given>>,
    found: tokio::sync::OnceCell<Found>,
}

#[derive(Debug)]
struct Found {
    addresses: HashMap<String, String>,
    credentials: Option<Arc<dyn Credentials>>,
    operations: ApiClient,
}

impl Default for Cloud {
    fn default() -> Self {
        Self::new()
    }
}

impl Cloud {
    /// The real Yandex Cloud: discovery at [`CLOUD_ENDPOINT`], TLS with the webpki roots.
    pub fn new() -> Self {
        Self::at(CLOUD_ENDPOINT)
    }

    /// Another endpoint, `host:port`, such as `yc-images serve`: TLS with the webpki roots
    /// unless [`with_ca_pem`](Self::with_ca_pem) or [`insecure`](Self::insecure) says
    /// otherwise.
    pub fn at(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            tls: Tls::WebPki,
            given: std::sync::Mutex::new(Some(Given::None)),
            found: tokio::sync::OnceCell::new(),
        }
    }

    /// Trusts only this CA certificate (PEM), such as the one `yc-images serve --tls` makes.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls = Tls::Ca(pem.into());
        self
    }

    /// Speaks cleartext HTTP/2 (a server without TLS on a trusted network).
    pub fn insecure(mut self) -> Self {
        self.tls = Tls::None;
        self
    }

    fn give(self, given: Given) -> Self {
        if let Ok(mut slot) = self.given.lock() {
            *slot = Some(given);
        }
        self
    }

    /// Every call carries the token `credentials` gives.
    pub fn with_credentials(self, credentials: impl Credentials + 'static) -> Self {
        self.give(Given::Ready(Arc::new(credentials)))
    }

    /// A service account's key, its JWTs exchanged at the `iam` endpoint found, with the
    /// audience the SDKs give this endpoint.
    pub fn with_service_account_key(self, key: ServiceAccountKey) -> Self {
        let audience = format!(
            "https://iam.{}/iam/v1/tokens",
            self.endpoint.strip_suffix(":443").unwrap_or(&self.endpoint)
        );
        self.give(Given::Key(Box::new(key.with_audience(audience))))
    }

    /// A user's OAuth token, exchanged at the `iam` endpoint found.
    pub fn with_oauth_token(self, token: impl Into<String>) -> Self {
        self.give(Given::OAuth(token.into()))
    }

    /// A channel to `address` (`host:port`) with this cloud's TLS.
    async fn channel(&self, address: &str) -> Result<Channel, Status> {
        let scheme = if matches!(self.tls, Tls::None) {
            "http"
        } else {
            "https"
        };
        let invalid = |e: tonic::transport::Error| {
            Status::new(tonic::Code::InvalidArgument, format!("{address}: {e}"))
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(invalid)?
            .user_agent(USER_AGENT)
            .map_err(invalid)?
            .connect_timeout(Duration::from_secs(10));
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        endpoint = match &self.tls {
            Tls::None => endpoint,
            Tls::WebPki => endpoint
                .tls_config(ClientTlsConfig::new().domain_name(host).with_webpki_roots())
                .map_err(invalid)?,
            Tls::Ca(pem) => endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .domain_name(host)
                        .ca_certificate(Certificate::from_pem(pem)),
                )
                .map_err(invalid)?,
        };
        endpoint.connect().await.map_err(|e| {
            Status::new(
                tonic::Code::Unavailable,
                format!("cannot reach {scheme}://{address}: {e}"),
            )
        })
    }

    /// Discovery, once: where each API is, and the credentials bound to `iam`.
    async fn found(&self) -> Result<&Found, Status> {
        self.found
            .get_or_try_init(|| async {
                let discovery = ApiClient::grpc(self.channel(&self.endpoint).await?);
                let listed = discovery
                    .call(
                        api_endpoint_service_rpc::LIST,
                        ListApiEndpointsRequest::default(),
                    )
                    .await?;
                let addresses: HashMap<String, String> = listed
                    .endpoints
                    .into_iter()
                    .map(|e| (e.id, e.address))
                    .collect();
                let address = |id: &str| {
                    addresses.get(id).cloned().ok_or_else(|| {
                        Status::new(
                            tonic::Code::NotFound,
                            format!("{} lists no endpoint for {id}", self.endpoint),
                        )
                    })
                };
                let given = self
                    .given
                    .lock()
                    .ok()
                    .and_then(|mut g| g.take())
                    .unwrap_or(Given::None);
                let credentials: Option<Arc<dyn Credentials>> = match given {
                    Given::None => None,
                    Given::Ready(credentials) => Some(credentials),
                    Given::Key(key) => {
                        let iam = ApiClient::grpc(self.channel(&address("iam")?).await?);
                        Some(Arc::new(key.exchanging_at(iam)))
                    }
                    Given::OAuth(token) => {
                        let iam = ApiClient::grpc(self.channel(&address("iam")?).await?);
                        Some(Arc::new(OAuthToken::new(token).exchanging_at(iam)))
                    }
                };
                let mut operations = ApiClient::grpc(self.channel(&address("operation")?).await?);
                if let Some(credentials) = &credentials {
                    operations = operations.with_shared_credentials(credentials.clone());
                }
                Ok(Found {
                    addresses,
                    credentials,
                    operations,
                })
            })
            .await
    }

    /// A client of the API `id` (`compute`, `container-registry`, `iam`, `operation`, …) at
    /// the address discovery gave, with the credentials, waiting for operations at the
    /// `operation` endpoint.
    pub async fn client(&self, id: &str) -> Result<ApiClient, Status> {
        let found = self.found().await?;
        let address = found.addresses.get(id).ok_or_else(|| {
            Status::new(
                tonic::Code::NotFound,
                format!("{} lists no endpoint for {id}", self.endpoint),
            )
        })?;
        let mut client =
            ApiClient::grpc(self.channel(address).await?).with_operations(found.operations.clone());
        if let Some(credentials) = &found.credentials {
            client = client.with_shared_credentials(credentials.clone());
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_endpoint_the_real_cloud_is_used_over_tls() {
        let cloud = Cloud::new();
        assert_eq!(cloud.endpoint, "api.cloud.yandex.net:443");
        assert!(matches!(cloud.tls, Tls::WebPki));
        let local = Cloud::at("localhost:50051").insecure();
        assert!(matches!(local.tls, Tls::None));
    }
}
