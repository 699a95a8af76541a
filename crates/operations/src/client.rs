//! The client shell every typed client is built on: [`ApiClient`], one connection to the API
//! over gRPC or REST, with its token and its wait policy, that calls any [`Rpc`] (over REST
//! by the method's `google.api.http` rule) and waits for operations; and where a waiter reads
//! operations from ([`OperationSource`]).
//!
//! ```no_run
//! use yc_operations::client::ApiClient;
//! use yc_proto_types::yandex::cloud::compute::v1::{GetImageRequest, image_service_rpc};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let api = ApiClient::rest("http://127.0.0.1:50051")?.with_token("t1.secret")?;
//! // or: ApiClient::connect_grpc("http://127.0.0.1:50051").await?
//! let request = GetImageRequest { image_id: "fd8abcdefghijklmnopq".into() };
//! let image = api.call(image_service_rpc::GET, request).await?;
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use prost::{Message, Name};
use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::rpc::{RestCall, Rpc};
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;
use yc_proto_types::yandex::cloud::operation::{
    GetOperationRequest, Operation, operation_service_rpc,
};

use crate::credentials::Credentials;
use crate::{OperationWaiter, WaitError, WaitPolicy};

/// Shared credentials.
type SharedCredentials = std::sync::Arc<dyn Credentials>;

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
    credentials: Option<SharedCredentials>,
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
            credentials: None,
        })
    }

    /// Sends the token `credentials` gives with every request (instead of a fixed one).
    pub fn with_credentials(mut self, credentials: SharedCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The audience of JWTs exchanged at this API (see [`crate::credentials::audience`]).
    fn iam_audience(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port_or_known_default() {
            Some(port) => crate::credentials::audience(&format!("{host}:{port}")),
            None => crate::credentials::audience(host),
        }
    }

    /// Sends `authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self.credentials = None;
        self
    }

    /// Uses this HTTP client (timeouts, TLS roots, …).
    pub fn with_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// Calls `rpc` by its first `google.api.http` rule and reads the answer;
    /// `UNIMPLEMENTED` for a method without one.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc<Req, Resp>,
        request: &Req,
    ) -> Result<Resp, Status> {
        self.call_with(rpc, request, &[]).await
    }

    /// [`call`](Self::call) with these headers besides (request id, idempotency key).
    async fn call_with<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc<Req, Resp>,
        request: &Req,
        headers: &[(&'static str, &str)],
    ) -> Result<Resp, Status> {
        let rule = rpc.http_rules().first().ok_or_else(|| {
            Status::new(
                tonic::Code::Unimplemented,
                format!("{} has no REST route", rpc.grpc_path()),
            )
        })?;
        self.send_with(rule.request(request)?, headers).await
    }

    /// Sends one REST call and reads the answer as `T`, or the API's error.
    pub async fn send<T: DeserializeOwned>(&self, call: RestCall) -> Result<T, Status> {
        self.send_with(call, &[]).await
    }

    async fn send_with<T: DeserializeOwned>(
        &self,
        call: RestCall,
        headers: &[(&'static str, &str)],
    ) -> Result<T, Status> {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{}", call.path));
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let mut request = self
            .http
            .request(call.method, url.clone())
            .header("user-agent", crate::cloud::USER_AGENT);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(credentials) = &self.credentials {
            request = request.bearer_auth(credentials.iam_token().await?);
        } else if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = call.body {
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
        let request = GetOperationRequest {
            operation_id: id.to_owned(),
        };
        self.api.call(operation_service_rpc::GET, &request).await
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

#[derive(Debug, Clone)]
enum Transport {
    Grpc(Channel, BearerToken),
    Rest(RestApi),
}

/// One connection to the API, over gRPC or REST, shared by the typed clients of every
/// service: it calls any [`Rpc`] and waits for operations by its [`WaitPolicy`].
#[derive(Debug, Clone)]
pub struct ApiClient {
    transport: Transport,
    wait: WaitPolicy,
    /// Where calls get their token, overriding a fixed one.
    credentials: Option<SharedCredentials>,
    /// The `host:port` a gRPC client connected to, when known.
    authority: Option<String>,
    /// Where operations are read while waiting, when not through this client.
    operations: Option<Box<ApiClient>>,
}

/// How many times a call answered `UNAVAILABLE` is tried again.
pub const RETRIES: u32 = 3;

/// The wait before the first retry; each next one waits four times longer.
pub const FIRST_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

impl ApiClient {
    /// Over a gRPC channel.
    pub fn grpc(channel: Channel) -> Self {
        Self::grpc_with_token(channel, BearerToken::none())
    }

    /// Over a gRPC channel, every call carrying `token`.
    pub fn grpc_with_token(channel: Channel, token: BearerToken) -> Self {
        Self {
            transport: Transport::Grpc(channel, token),
            wait: WaitPolicy::default(),
            credentials: None,
            authority: None,
            operations: None,
        }
    }

    /// Connects over gRPC to `endpoint`, e.g. `http://127.0.0.1:50051`.
    pub async fn connect_grpc(endpoint: &str) -> Result<Self, Status> {
        let endpoint = Channel::from_shared(endpoint.to_owned())
            .map_err(|e| Status::new(tonic::Code::InvalidArgument, e.to_string()))?;
        let authority = endpoint.uri().authority().map(|a| a.as_str().to_owned());
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::new(tonic::Code::Unavailable, e.to_string()))?;
        Ok(Self {
            authority,
            ..Self::grpc(channel)
        })
    }

    /// Over the REST API at `base_url`, e.g. `http://127.0.0.1:50051`.
    pub fn rest(base_url: &str) -> Result<Self, Status> {
        Ok(Self::rest_api(RestApi::new(base_url)?))
    }

    /// Over the REST API behind `api` (with its token, HTTP client, …).
    pub fn rest_api(api: RestApi) -> Self {
        Self {
            transport: Transport::Rest(api),
            wait: WaitPolicy::default(),
            credentials: None,
            authority: None,
            operations: None,
        }
    }

    /// Every call carries the token `credentials` gives (see [`crate::credentials`]).
    pub fn with_credentials(self, credentials: impl Credentials + 'static) -> Self {
        self.with_shared_credentials(std::sync::Arc::new(credentials))
    }

    /// [`with_credentials`](Self::with_credentials), credentials shared with other clients.
    pub fn with_shared_credentials(mut self, credentials: SharedCredentials) -> Self {
        // The credentials' token replaces a fixed one.
        self.transport = match self.transport {
            Transport::Rest(api) => Transport::Rest(api.with_credentials(credentials.clone())),
            Transport::Grpc(channel, _) => Transport::Grpc(channel, BearerToken::none()),
        };
        self.credentials = Some(credentials);
        self
    }

    /// Waits for operations by reading them through `operations` (the `operation` endpoint
    /// of a cloud whose APIs are served at several addresses).
    pub fn with_operations(mut self, operations: ApiClient) -> Self {
        self.operations = Some(Box::new(operations));
        self
    }

    /// The audience the SDKs give JWTs exchanged at this API's endpoint:
    /// `https://iam.<host:port>/iam/v1/tokens`, or the cloud's when the endpoint is unknown.
    pub fn iam_audience(&self) -> String {
        match (&self.transport, &self.authority) {
            (Transport::Rest(api), _) => api.iam_audience(),
            (Transport::Grpc(..), Some(authority)) => crate::credentials::audience(authority),
            (Transport::Grpc(..), None) => crate::credentials::CLOUD_AUDIENCE.to_owned(),
        }
    }

    /// Every call carries `authorization: Bearer <token>`.
    pub fn with_token(self, token: &str) -> Result<Self, Status> {
        let transport = match self.transport {
            Transport::Rest(api) => Transport::Rest(api.with_token(token)),
            Transport::Grpc(channel, _) => Transport::Grpc(channel, BearerToken::new(token)?),
        };
        Ok(Self {
            transport,
            credentials: None,
            ..self
        })
    }

    /// How waiting for an operation polls.
    pub fn with_wait_policy(mut self, policy: WaitPolicy) -> Self {
        self.wait = policy;
        self
    }

    /// Calls `rpc`: over gRPC at its path, over REST by its `google.api.http` rule. Every call
    /// carries an `x-client-request-id`; one that starts an operation (a mutation) carries an
    /// `idempotency-key` too. A call answered `UNAVAILABLE` is tried again ([`RETRIES`]
    /// times, waiting longer each time) with the same request id and key, so that a mutation
    /// the server did apply is not applied twice.
    pub async fn call<Req, Resp>(&self, rpc: Rpc<Req, Resp>, request: Req) -> Result<Resp, Status>
    where
        Req: Message + Serialize + Clone + Send + Sync + 'static,
        Resp: Message + Default + DeserializeOwned + Send + Sync + 'static,
    {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mutation = std::any::TypeId::of::<Resp>() == std::any::TypeId::of::<Operation>();
        let idempotency_key = mutation.then(|| uuid::Uuid::new_v4().to_string());
        let mut headers = vec![("x-client-request-id", request_id.as_str())];
        if let Some(key) = &idempotency_key {
            headers.push(("idempotency-key", key.as_str()));
        }
        let mut wait = FIRST_RETRY_AFTER;
        let mut attempt = 0;
        loop {
            match self.call_once(rpc, request.clone(), &headers).await {
                Err(status)
                    if status.grpc_code() == tonic::Code::Unavailable && attempt < RETRIES =>
                {
                    attempt += 1;
                    tracing::debug!(method = rpc.grpc_path(), attempt, message = %status.message, "retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
                answer => return answer,
            }
        }
    }

    async fn call_once<Req, Resp>(
        &self,
        rpc: Rpc<Req, Resp>,
        request: Req,
        headers: &[(&'static str, &str)],
    ) -> Result<Resp, Status>
    where
        Req: Message + Serialize + Send + Sync + 'static,
        Resp: Message + Default + DeserializeOwned + Send + Sync + 'static,
    {
        match &self.transport {
            Transport::Grpc(channel, token) => {
                let mut grpc = tonic::client::Grpc::new(token.clone().channel(channel.clone()));
                grpc.ready()
                    .await
                    .map_err(|e| Status::new(tonic::Code::Unavailable, e.to_string()))?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(rpc.grpc_path());
                let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
                let mut request = tonic::Request::new(request);
                for (name, value) in headers {
                    if let Ok(value) = value.parse() {
                        request.metadata_mut().insert(*name, value);
                    }
                }
                if let Some(credentials) = &self.credentials {
                    let token = credentials.iam_token().await?;
                    let value = format!("Bearer {token}").parse().map_err(|_| {
                        Status::new(
                            tonic::Code::Unauthenticated,
                            "the IAM token has characters a header cannot carry",
                        )
                    })?;
                    request.metadata_mut().insert("authorization", value);
                }
                grpc.unary(request, path, codec)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(Status::from)
            }
            Transport::Rest(api) => api.call_with(rpc, &request, headers).await,
        }
    }

    /// Waits for `op` by the client's policy and returns its response as `R`.
    pub async fn wait<R: Name + Default>(&self, op: Operation) -> Result<R, WaitError> {
        OperationWaiter::new(self.clone())
            .with_policy(self.wait.clone())
            .wait::<R>(op)
            .await
    }

    /// Calls `rpc`, which starts an operation, and waits for its response `R`.
    pub async fn call_and_wait<Req, R>(
        &self,
        rpc: Rpc<Req, Operation>,
        request: Req,
    ) -> Result<R, WaitError>
    where
        Req: Message + Serialize + Clone + Send + Sync + 'static,
        R: Name + Default,
    {
        let op = self.call(rpc, request).await.map_err(WaitError::Poll)?;
        self.wait(op).await
    }
}

#[async_trait]
impl OperationSource for ApiClient {
    async fn get_operation(&self, id: &str) -> Result<Operation, Status> {
        let request = GetOperationRequest {
            operation_id: id.to_owned(),
        };
        match &self.operations {
            Some(operations) => operations.call(operation_service_rpc::GET, request).await,
            None => self.call(operation_service_rpc::GET, request).await,
        }
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
