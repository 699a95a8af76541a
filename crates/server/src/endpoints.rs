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

/// Answers every API id with one address.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    address: String,
}

impl Endpoints {
    pub(crate) fn server(address: String) -> ApiEndpointServiceServer<Self> {
        ApiEndpointServiceServer::new(Self { address })
    }

    fn endpoint(&self, id: &str) -> ApiEndpoint {
        ApiEndpoint {
            id: id.to_owned(),
            address: self.address.clone(),
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
            Ok(Response::new(self.endpoint(id)))
        } else {
            Err(tonic::Status::not_found(format!(
                "Api endpoint {id} not found"
            )))
        }
    }

    async fn list(
        &self,
        _request: Request<ListApiEndpointsRequest>,
    ) -> Result<Response<ListApiEndpointsResponse>, tonic::Status> {
        Ok(Response::new(ListApiEndpointsResponse {
            endpoints: APIS.iter().map(|id| self.endpoint(id)).collect(),
            next_page_token: String::new(),
        }))
    }
}
