//! Where a waiter reads operations from: OperationService over gRPC or over REST.

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;
use yc_proto_types::yandex::cloud::operation::{GetOperationRequest, Operation};

/// Reads an operation by id.
#[async_trait]
pub trait OperationSource: Send + Sync {
    /// `OperationService.Get`.
    async fn get_operation(&self, id: &str) -> Result<Operation, Status>;
}

/// A gRPC channel whose calls carry `authorization: Bearer <token>` when there is a token.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<Channel, BearerToken>;

/// The token a gRPC client sends with every call, if any.
///
/// ```
/// use yc_operations::client::BearerToken;
///
/// assert!(BearerToken::new("t1.secret").is_ok());
/// assert!(BearerToken::new("line\nbreak").is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct BearerToken(Option<tonic::metadata::AsciiMetadataValue>);

impl BearerToken {
    /// `token`, sent as `authorization: Bearer <token>`.
    pub fn new(token: &str) -> Result<Self, Status> {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            Status::new(
                tonic::Code::InvalidArgument,
                "the token has characters a header cannot carry",
            )
        })?;
        Ok(Self(Some(value)))
    }

    /// No token.
    pub fn none() -> Self {
        Self(None)
    }

    /// `channel`, its calls carrying this token.
    pub fn channel(self, channel: Channel) -> AuthChannel {
        tonic::service::interceptor::InterceptedService::new(channel, self)
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[async_trait]
impl<T> OperationSource for OperationServiceClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone + Send + Sync + 'static,
    T::Future: Send,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    async fn get_operation(&self, id: &str) -> Result<Operation, Status> {
        let mut client = self.clone();
        let request = GetOperationRequest {
            operation_id: id.to_owned(),
        };
        client
            .get(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(Status::from)
    }
}

/// A REST API endpoint: calls answered in canonical JSON, errors as `google.rpc.Status`
/// bodies. The typed clients of every service call through it.
#[derive(Debug, Clone)]
pub struct RestApi {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

impl RestApi {
    /// The API at `base_url`, e.g. `http://127.0.0.1:50051`.
    pub fn new(base_url: &str) -> Result<Self, Status> {
        let base = Url::parse(base_url).map_err(|e| {
            Status::new(
                tonic::Code::InvalidArgument,
                format!("{base_url:?} is not a URL: {e}"),
            )
        })?;
        Ok(Self {
            base,
            http: reqwest::Client::new(),
            token: None,
        })
    }

    /// Sends `authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Uses this HTTP client (timeouts, TLS roots, …).
    pub fn with_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// Calls `method` on the path made of `segments` (each percent-encoded), with `query`
    /// parameters (empty values left out) and an optional JSON `body`, and reads the answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<T, Status> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Status::new(tonic::Code::InvalidArgument, "the base URL has no path"))?
            .pop_if_empty()
            .extend(segments);
        let query: Vec<&(&str, &str)> = query.iter().filter(|(_, v)| !v.is_empty()).collect();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_status(&url, &e))?;
        let http_status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_status(&url, &e))?;
        if http_status.is_success() {
            serde_json::from_slice(&body).map_err(|e| {
                Status::new(
                    tonic::Code::Internal,
                    format!("{url} answered with unexpected JSON: {e}"),
                )
            })
        } else {
            Err(serde_json::from_slice::<Status>(&body)
                .ok()
                .filter(|s| s.code != 0)
                .unwrap_or_else(|| {
                    Status::new(
                        yc_proto_types::code_of_http(http_status.as_u16()),
                        format!("{url} answered {http_status}"),
                    )
                }))
        }
    }
}

/// OperationService over REST: `GET {base}/operations/{operationId}`.
#[derive(Debug, Clone)]
pub struct RestOperationSource {
    api: RestApi,
}

impl RestOperationSource {
    /// A source for the API at `base_url`, e.g. `http://127.0.0.1:50051`.
    pub fn new(base_url: &str) -> Result<Self, Status> {
        Ok(Self::from_api(RestApi::new(base_url)?))
    }

    /// A source that calls through `api`.
    pub fn from_api(api: RestApi) -> Self {
        Self { api }
    }

    /// Sends `authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.api = self.api.with_token(token);
        self
    }
}

#[async_trait]
impl OperationSource for RestOperationSource {
    async fn get_operation(&self, id: &str) -> Result<Operation, Status> {
        self.api
            .call(Method::GET, &["operations", id], &[], None)
            .await
    }
}

fn transport_status(url: &Url, error: &reqwest::Error) -> Status {
    let code = if error.is_timeout() {
        tonic::Code::DeadlineExceeded
    } else {
        tonic::Code::Unavailable
    };
    Status::new(code, format!("cannot reach {url}: {error}"))
}

/// OperationService over whichever transport a typed client uses.
#[derive(Debug, Clone)]
pub enum Operations {
    /// gRPC.
    Grpc(OperationServiceClient<AuthChannel>),
    /// REST.
    Rest(RestOperationSource),
}

#[async_trait]
impl OperationSource for Operations {
    async fn get_operation(&self, id: &str) -> Result<Operation, Status> {
        match self {
            Operations::Grpc(client) => client.get_operation(id).await,
            Operations::Rest(source) => source.get_operation(id).await,
        }
    }
}

impl Operations {
    /// Waits for `op` under `policy` and returns its response as `R`.
    pub async fn wait<R: prost::Name + Default>(
        &self,
        policy: &crate::WaitPolicy,
        op: Operation,
    ) -> Result<R, crate::WaitError> {
        crate::OperationWaiter::new(self.clone())
            .with_policy(policy.clone())
            .wait::<R>(op)
            .await
    }
}

/// Every item of a paged List as one stream: `fetch` gets a request and answers with a page's
/// items and, unless it was the last page, the request for the next.
pub fn paged<Q, T, F, Fut>(
    first: Q,
    fetch: F,
) -> impl futures_util::Stream<Item = Result<T, Status>>
where
    F: Fn(Q) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<Q>), Status>>,
{
    let pages = futures_util::stream::try_unfold(Some(first), move |next| {
        let page = next.map(&fetch);
        async move {
            match page {
                None => Ok(None),
                Some(page) => page.await.map(|(items, next)| Some((items, next))),
            }
        }
    });
    futures_util::TryStreamExt::try_flatten(futures_util::TryStreamExt::map_ok(pages, |items| {
        futures_util::stream::iter(items.into_iter().map(Ok))
    }))
}
