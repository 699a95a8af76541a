//! The layer every call passes first: its span, its ids, its log line and its metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use yc_api_runtime::Principal;
use yc_proto_types::rpc::{RestRouter, RouteId};

/// The outermost layer: every call runs in a tracing span of its own (`call`, with its
/// request id, trace id, method and caller), so that every event of the call, errors
/// included, carries them; every answer carries `x-request-id` (the client's, or a new one)
/// and `x-server-trace-id`; every call is logged when its answer ends, and counted in the
/// metrics. A layer of its own rather than `axum::middleware::from_fn`, which clones the
/// inner service and boxes a future for every call.
#[derive(Debug, Clone)]
pub(super) struct RequestIdsLayer {
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    /// The REST routes: a REST call's route is found here, so that its span names its method
    /// from the start, and handed on in its extensions ([`RouteId`]).
    pub(super) rest: Arc<RestRouter>,
    /// Whether every caller is the anonymous one (a server without IAM): then this layer
    /// puts [`Principal::anonymous`] on every call.
    pub(super) anonymous: bool,
}

impl<S> tower_layer::Layer<S> for RequestIdsLayer {
    type Service = RequestIds<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIds {
            inner,
            metrics: self.metrics.clone(),
            rest: self.rest.clone(),
            anonymous: self.anonymous,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct RequestIds<S> {
    inner: S,
    metrics: Arc<crate::metrics::Metrics>,
    rest: Arc<RestRouter>,
    anonymous: bool,
}

/// The method label and transport of a call, from what its request shows, and the route of a
/// REST call (found once, here).
fn classify(request: &Request, rest: &RestRouter) -> (&'static str, &'static str, Option<RouteId>) {
    let path = request.uri().path();
    if yc_api_runtime::rest::is_grpc(request.headers()) {
        (crate::metrics::grpc_method(path), "grpc", None)
    } else if path == "/v2" || path.starts_with("/v2/") {
        ("registry-api", "http", None)
    } else if path == "/healthz" {
        ("healthz", "http", None)
    } else if path == "/metrics" {
        ("metrics", "http", None)
    } else {
        match rest.find(request.method(), path) {
            Some(id) => (
                rest.method(id).map_or("unknown", |m| m.grpc_path()),
                "rest",
                Some(id),
            ),
            None => ("unknown", "rest", None),
        }
    }
}

impl<S> tower_service::Service<Request> for RequestIds<S>
where
    S: tower_service::Service<Request, Response = Response>,
{
    type Response = axum::http::Response<LoggedBody>;
    type Error = S::Error;
    type Future = RequestIdsFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path();
        if (crate::endpoints::is_discovery(path) || crate::iam::is_token_exchange(path))
            && let Some(reached) = crate::endpoints::ReachedAt::of(&request)
        {
            request.extensions_mut().insert(reached);
        }
        if self.anonymous {
            request.extensions_mut().insert(Principal::anonymous());
        }
        let request_id = client_request_id(request.headers()).unwrap_or_else(new_id);
        let trace_id = new_id();
        let (method, transport, route) = classify(&request, &self.rest);
        if let Some(route) = route {
            request.extensions_mut().insert(route);
        }
        let span = tracing::info_span!(
            "call",
            request_id = request_id.to_str().unwrap_or_default(),
            trace_id = trace_id.to_str().unwrap_or_default(),
            // Unknown only for a call no rule of its HTTP method takes (answered 404 or 405)
            // and a gRPC method nobody defined.
            method = (method != "unknown").then_some(method),
            // Known now without IAM; else once the token is checked.
            caller = self.anonymous.then_some("anonymous"),
        );
        let call = Pending {
            request_id,
            trace_id,
            http_method: request.method().clone(),
            // A gRPC call's line names its method instead.
            uri: (transport != "grpc" || method == "unknown").then(|| request.uri().clone()),
            registry_api: method == "registry-api",
            started,
            method,
            transport,
        };
        let inner = span.in_scope(|| self.inner.call(request));
        RequestIdsFuture {
            inner,
            call: Some(call),
            span,
            metrics: self.metrics.clone(),
        }
    }
}

/// What is known of a call before its answer.
struct Pending {
    request_id: HeaderValue,
    trace_id: HeaderValue,
    http_method: axum::http::Method,
    uri: Option<axum::http::Uri>,
    /// A call of the registry API (`/v2/`), whose errors are its own.
    registry_api: bool,
    started: Instant,
    method: &'static str,
    transport: &'static str,
}

pin_project_lite::pin_project! {
    /// The answer of a [`RequestIds`] call: the inner answer, polled in the call's span, with
    /// the ids; its body logs and counts the call when it ends.
    pub(super) struct RequestIdsFuture<F> {
        #[pin]
        inner: F,
        call: Option<Pending>,
        span: tracing::Span,
        metrics: Arc<crate::metrics::Metrics>,
    }
}

impl<F, E> std::future::Future for RequestIdsFuture<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<axum::http::Response<LoggedBody>, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let mut response = std::task::ready!(this.span.in_scope(|| inner.poll(cx)))?;
        let Some(pending) = this.call.take() else {
            // Polled again after its answer: only a misbehaving caller does that.
            return std::task::Poll::Ready(Ok(
                response.map(|inner| LoggedBody { inner, call: None })
            ));
        };
        // An error carries the request id in its details, as the cloud's do; only errors pay.
        let failed = response.status().is_client_error() || response.status().is_server_error();
        let grpc_failed = response
            .headers()
            .get(GRPC_STATUS)
            .is_some_and(|code| code.as_bytes() != b"0");
        if grpc_failed {
            crate::request_info::add_to_grpc_error(response.headers_mut(), &pending.request_id);
        } else if failed && !pending.registry_api {
            response = crate::request_info::add_to_json_error(response, &pending.request_id);
        }
        let method = response
            .extensions()
            .get::<yc_api_runtime::rest::RestRpc>()
            .map_or(pending.method, |rpc| rpc.0);
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID, pending.request_id);
        headers.insert(X_SERVER_TRACE_ID, pending.trace_id);
        // The call is logged when its answer has been sent in full: a gRPC answer's status
        // comes in its trailers, after the body.
        let call = CallLog {
            http_method: pending.http_method,
            uri: pending.uri,
            status: response.status().as_u16(),
            grpc_status: response.headers().get(GRPC_STATUS).cloned(),
            started: pending.started,
            method,
            transport: pending.transport,
            // The answer is ready: the span goes with the call to its line.
            span: std::mem::replace(this.span, tracing::Span::none()),
            metrics: this.metrics.clone(),
        };
        std::task::Poll::Ready(Ok(response.map(|inner| LoggedBody {
            inner,
            call: Some(call),
        })))
    }
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-client-request-id");
const X_SERVER_TRACE_ID: HeaderName = HeaderName::from_static("x-server-trace-id");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// A new random id (a UUID), as a header value HTTP/2 never adds to its header table: every
/// answer has its own, and indexing them would only push out the headers that do repeat.
fn new_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    // A UUID is always a valid header value; the fallback only keeps this free of panics.
    let mut value = HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"));
    value.set_sensitive(true);
    value
}

/// What is logged and counted of one call.
struct CallLog {
    http_method: axum::http::Method,
    uri: Option<axum::http::Uri>,
    status: u16,
    grpc_status: Option<HeaderValue>,
    started: Instant,
    method: &'static str,
    transport: &'static str,
    span: tracing::Span,
    metrics: Arc<crate::metrics::Metrics>,
}

impl CallLog {
    fn emit(self) {
        let elapsed = self.started.elapsed();
        let grpc_status = self.grpc_status.as_ref().and_then(|v| v.to_str().ok());
        let code = call_code(self.transport, self.status, grpc_status);
        self.metrics
            .record(self.method, self.transport, code, elapsed);
        if !tracing::enabled!(tracing::Level::INFO) {
            return;
        }
        let latency = crate::log::Millis::new(elapsed);
        // A gRPC call's span names its method, and its HTTP method is always POST.
        let grpc = self.transport == "grpc" && self.method != "unknown";
        let path = self.uri.as_ref().map_or("", |uri| uri.path());
        let written = crate::log::call_line(&self.span, module_path!(), |line| {
            if !grpc {
                line.text("http_method", self.http_method.as_str());
                line.text("path", path);
            }
            line.number("status", u64::from(self.status));
            if let Some(grpc_status) = grpc_status {
                line.text("grpc_status", grpc_status);
            }
            line.text("latency_ms", latency.as_str());
        });
        if written {
            return;
        }
        let _in_call = self.span.enter();
        if grpc {
            tracing::info!(
                status = self.status,
                grpc_status,
                latency_ms = latency.as_str(),
                "call"
            );
        } else {
            tracing::info!(
                http_method = self.http_method.as_str(),
                path,
                status = self.status,
                grpc_status,
                latency_ms = latency.as_str(),
                "call"
            );
        }
    }
}

/// An answer's body that logs its call when it ends, with the gRPC status of its trailers.
pub(crate) struct LoggedBody {
    inner: axum::body::Body,
    call: Option<CallLog>,
}

impl http_body::Body for LoggedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(|t| t.get(GRPC_STATUS))
                    && let Some(call) = self.call.as_mut()
                {
                    call.grpc_status = Some(status.clone());
                }
            }
            std::task::Poll::Ready(None | Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.emit();
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    /// A body dropped before its end (the client went away) still logs its call.
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.emit();
        }
    }
}

/// The gRPC code a call is counted with: its gRPC status when its answer carried one; a
/// gRPC answer of HTTP 200 that ended without one was cut before its trailers (the client
/// reset the stream or went away), `CANCELLED`; else the code of its HTTP status.
fn call_code(transport: &str, status: u16, grpc_status: Option<&str>) -> tonic::Code {
    match grpc_status.map(str::parse::<i32>) {
        Some(Ok(code)) => tonic::Code::from_i32(code),
        None if transport == "grpc" && status < 400 => tonic::Code::Cancelled,
        _ if status < 400 => tonic::Code::Ok,
        _ => yc_proto_types::code_of_http(status),
    }
}

/// The request id a client sent, if it is one we can echo.
fn client_request_id(headers: &axum::http::HeaderMap) -> Option<HeaderValue> {
    [X_REQUEST_ID, X_CLIENT_REQUEST_ID].iter().find_map(|name| {
        headers
            .get(name)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
            .map(|v| {
                let mut v = v.clone();
                v.set_sensitive(true);
                v
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_counts_with_the_code_its_answer_carried() {
        assert_eq!(call_code("grpc", 200, Some("0")), tonic::Code::Ok);
        assert_eq!(call_code("grpc", 200, Some("5")), tonic::Code::NotFound);
        // Cut before its trailers.
        assert_eq!(call_code("grpc", 200, None), tonic::Code::Cancelled);
        assert_eq!(call_code("rest", 200, None), tonic::Code::Ok);
        assert_eq!(call_code("rest", 404, None), tonic::Code::NotFound);
        assert_eq!(call_code("http", 201, None), tonic::Code::Ok);
        assert_eq!(call_code("grpc", 413, None), tonic::Code::ResourceExhausted);
    }
}
