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
        let audience = crate::credentials::audience(&self.endpoint);
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
                // Everything that may fail comes before the credentials are taken, so that a
                // discovery that fails keeps them for the next try.
                let operations = self.connect(&addresses, "operation").await?;
                let exchanges = self
                    .given
                    .lock()
                    .map(|g| matches!(*g, Some(Given::Key(_) | Given::OAuth(_))))
                    .unwrap_or(false);
                let iam = match exchanges {
                    true => Some(self.connect(&addresses, "iam").await?),
                    false => None,
                };
                let given = self
                    .given
                    .lock()
                    .ok()
                    .and_then(|mut g| g.take())
                    .unwrap_or(Given::None);
                let credentials: Option<Arc<dyn Credentials>> = match (given, iam) {
                    (Given::Ready(credentials), _) => Some(credentials),
                    (Given::Key(key), Some(iam)) => Some(Arc::new(key.exchanging_at(iam))),
                    (Given::OAuth(token), Some(iam)) => {
                        Some(Arc::new(OAuthToken::new(token).exchanging_at(iam)))
                    }
                    _ => None,
                };
                let operations = match &credentials {
                    Some(credentials) => operations.with_shared_credentials(credentials.clone()),
                    None => operations,
                };
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
        let mut client = self
            .connect(&found.addresses, id)
            .await?
            .with_operations(found.operations.clone());
        if let Some(credentials) = &found.credentials {
            client = client.with_shared_credentials(credentials.clone());
        }
        Ok(client)
    }

    /// A client (without credentials) of the API `id` at the address discovery gave.
    async fn connect(
        &self,
        addresses: &HashMap<String, String>,
        id: &str,
    ) -> Result<ApiClient, Status> {
        let address = addresses.get(id).ok_or_else(|| {
            Status::new(
                tonic::Code::NotFound,
                format!("{} lists no endpoint for {id}", self.endpoint),
            )
        })?;
        Ok(ApiClient::grpc(self.channel(address).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yc_proto_types::yandex::cloud::endpoint::api_endpoint_service_server::{
        ApiEndpointService, ApiEndpointServiceServer,
    };
    use yc_proto_types::yandex::cloud::endpoint::{
        ApiEndpoint, GetApiEndpointRequest, ListApiEndpointsResponse,
    };

    /// Discovery that lists `operation` at itself and `iam` where nothing listens.
    struct Discovery(String);

    #[tonic::async_trait]
    impl ApiEndpointService for Discovery {
        async fn get(
            &self,
            _: tonic::Request<GetApiEndpointRequest>,
        ) -> Result<tonic::Response<ApiEndpoint>, tonic::Status> {
            Err(tonic::Status::unimplemented("List only"))
        }
        async fn list(
            &self,
            _: tonic::Request<ListApiEndpointsRequest>,
        ) -> Result<tonic::Response<ListApiEndpointsResponse>, tonic::Status> {
            let endpoint = |id: &str, address: &str| ApiEndpoint {
                id: id.into(),
                address: address.into(),
            };
            Ok(tonic::Response::new(ListApiEndpointsResponse {
                endpoints: vec![
                    endpoint("operation", &self.0),
                    endpoint("iam", "127.0.0.1:9"),
                ],
                next_page_token: String::new(),
            }))
        }
    }

    /// A discovery whose `iam` cannot be reached fails, and keeps the credentials for the next
    /// try instead of going on without them.
    #[tokio::test]
    async fn a_failed_discovery_keeps_the_credentials() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server =
            tonic::service::Routes::new(ApiEndpointServiceServer::new(Discovery(address.clone())))
                .prepare()
                .into_axum_router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, server).await;
        });

        let cloud = Cloud::at(&address).insecure().with_oauth_token("y0_token");
        for _ in 0..2 {
            let error = cloud.client("compute").await.unwrap_err();
            assert_eq!(
                error.grpc_code(),
                tonic::Code::Unavailable,
                "{}",
                error.message
            );
            assert!(error.message.contains("127.0.0.1:9"), "{}", error.message);
            let kept = cloud.given.lock().unwrap();
            assert!(matches!(*kept, Some(Given::OAuth(_))), "{kept:?}");
        }
    }

    #[test]
    fn with_no_endpoint_the_real_cloud_is_used_over_tls() {
        let cloud = Cloud::new();
        assert_eq!(cloud.endpoint, "api.cloud.yandex.net:443");
        assert!(matches!(cloud.tls, Tls::WebPki));
        let local = Cloud::at("localhost:50051").insecure();
        assert!(matches!(local.tls, Tls::None));
    }
}
