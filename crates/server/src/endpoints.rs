//! `yandex.cloud.endpoint.ApiEndpointService`: every API is served at this server's own
//! address, so that SDKs that discover endpoints find it.

use tonic::{Request, Response};
use yc_proto_types::yandex::cloud::endpoint::api_endpoint_service_server::{
    ApiEndpointService, ApiEndpointServiceServer,
};
use yc_proto_types::yandex::cloud::endpoint::{
    ApiEndpoint, GetApiEndpointRequest, ListApiEndpointsRequest, ListApiEndpointsResponse,
};

/// The APIs SDKs look up.
const APIS: &[&str] = &[
    "compute",
    "container-registry",
    "endpoint",
    "iam",
    "operation",
];

/// The address a call reached the server at (its `:authority`, or `Host`), which discovery
/// answers with: the client could reach it, and a TLS client has checked the certificate
/// against its name.
#[derive(Debug, Clone)]
pub(crate) struct ReachedAt(String);

impl ReachedAt {
    pub(crate) fn of<B>(request: &axum::http::Request<B>) -> Option<Self> {
        let authority = request.uri().authority().map(|a| a.as_str()).or_else(|| {
            request
                .headers()
                .get(axum::http::header::HOST)
                .and_then(|v| v.to_str().ok())
        })?;
        // Only a host and a port: anything else is not an address to hand out.
        let plausible = !authority.is_empty()
            && authority.len() <= 255
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
        plausible.then(|| ReachedAt(authority.to_owned()))
    }
}

impl ReachedAt {
    /// The address, `host:port`.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `path` is a call of ApiEndpointService.
pub(crate) fn is_discovery(path: &str) -> bool {
    path.starts_with("/yandex.cloud.endpoint.ApiEndpointService/")
}

/// Answers every API id with the address the caller reached the server at, or else the
/// address it listens on.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    address: String,
}

impl Endpoints {
    pub(crate) fn server(address: String) -> ApiEndpointServiceServer<Self> {
        ApiEndpointServiceServer::new(Self { address })
    }

    pub(crate) fn rest(address: String) -> yc_proto_types::rpc::RestService {
        yc_proto_types::yandex::cloud::endpoint::api_endpoint_service_rpc::rest(
            std::sync::Arc::new(Self { address }),
        )
    }

    fn endpoint<T>(&self, id: &str, request: &Request<T>) -> ApiEndpoint {
        let address = match request.extensions().get::<ReachedAt>() {
            Some(ReachedAt(address)) => address.clone(),
            None => self.address.clone(),
        };
        ApiEndpoint {
            id: id.to_owned(),
            address,
        }
    }
}

#[tonic::async_trait]
impl ApiEndpointService for Endpoints {
    async fn get(
        &self,
        request: Request<GetApiEndpointRequest>,
    ) -> Result<Response<ApiEndpoint>, tonic::Status> {
        let id = &request.get_ref().api_endpoint_id;
        if APIS.contains(&id.as_str()) {
            Ok(Response::new(self.endpoint(id, &request)))
        } else {
            Err(tonic::Status::not_found(format!(
                "Api endpoint {id} not found"
            )))
        }
    }

    async fn list(
        &self,
        request: Request<ListApiEndpointsRequest>,
    ) -> Result<Response<ListApiEndpointsResponse>, tonic::Status> {
        Ok(Response::new(ListApiEndpointsResponse {
            endpoints: APIS.iter().map(|id| self.endpoint(id, &request)).collect(),
            next_page_token: String::new(),
        }))
    }
}
