//! The REST face: the transcoder that serves every `google.api.http` rule of the schema, and
//! answers and errors as the Yandex Cloud REST API writes them.
//!
//! An answer is the message in proto3 canonical JSON; an error is a `google.rpc.Status` in JSON
//! with the HTTP status of its code. Every REST answer of the server is written here
//! ([`transcode`], [`ApiError`], [`error_response`]).

use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::rpc::{RestRequest, RestRouter, RestService, Route, RouteId};

/// Put in a REST answer's extensions by [`transcode`]: the gRPC path of the method it called,
/// for the server's logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestRpc(pub &'static str);

/// An error answer: the `google.rpc.Status` as the JSON body, with the HTTP status of its code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(pub Status);

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError(status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error_response(code, self.0)
    }
}

/// `status` as the JSON body of an answer with the HTTP status `http`, bounded (see
/// [`Status::bounded`]).
pub fn error_response(http: StatusCode, status: Status) -> Response {
    let status = status.bounded();
    // A Status whose details cannot be written is still an error the client must see.
    let body = serde_json::to_vec(&status).unwrap_or_else(|_| {
        serde_json::to_vec(&Status {
            details: Vec::new(),
            ..status.clone()
        })
        .unwrap_or_default()
    });
    with_json(http, body)
}

/// Whether a request with these headers is a gRPC call (`content-type: application/grpc…`).
pub fn is_grpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The answer for a path no route serves: the API's JSON error, 404 `NOT_FOUND`; for a gRPC
/// call (`content-type: application/grpc…`), gRPC's `UNIMPLEMENTED`.
pub async fn no_route(
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let path = yc_proto_types::quote(uri.path());
    if is_grpc(&headers) {
        let status = tonic::Status::unimplemented(format!("Unknown method {path}"));
        return status.into_http();
    }
    error_response(
        StatusCode::NOT_FOUND,
        Status::new(tonic::Code::NotFound, format!("No route {method} {path}")),
    )
}

/// The answer for a method a route does not take: the API's JSON error, 405 `UNIMPLEMENTED`.
pub async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Status::new(
            tonic::Code::Unimplemented,
            format!(
                "Method {method} is not allowed on {}",
                yc_proto_types::quote(uri.path())
            ),
        ),
    )
}

fn with_json(code: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (code, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A router serving the REST methods of `services` (and nothing else), through [`transcode`].
pub fn router(services: impl IntoIterator<Item = RestService>) -> axum::Router {
    let rest = Arc::new(RestRouter::new(services));
    axum::Router::new().fallback(move |request| transcode(rest.clone(), request))
}

/// Serves a REST request by the schema's `google.api.http` rules: finds its method in
/// `router` (404 `NOT_FOUND` when no rule has the path, 405 with `Allow` when the path is
/// another method's), reads the request message from the path, the query and the body
/// (`INVALID_ARGUMENT` naming the field when it does not read), calls the service as gRPC
/// would, with the request's headers as metadata and its extensions, and answers the response
/// as JSON or the error as the API's JSON error. A [`RouteId`] in the request's extensions is
/// the route a server found with [`RestRouter::find`] as the call came in (naming the call's
/// method in its span then): it is taken rather than looked for again.
pub async fn transcode(router: Arc<RestRouter>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let axum::http::request::Parts {
        method: http_method,
        uri,
        headers,
        extensions,
        ..
    } = parts;
    // A server that found the route as the call came in (and named the call's method in its
    // span then) put it in the extensions.
    let found = extensions.get::<RouteId>().copied();
    let route = match found {
        Some(id) => router.route_found(id, &http_method, uri.path()),
        None => router.route(&http_method, uri.path()),
    };
    let (method, rule, values) = match route {
        Route::Method(method, rule, values) => (method, rule, values),
        Route::NotFound => return no_route(http_method, uri, headers).await,
        Route::MethodNotAllowed(allowed) => {
            let mut response = method_not_allowed(http_method, uri).await;
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(allow) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return response;
        }
    };
    // Named in the span as the call came in, unless the route found did not take the call.
    let named = found
        .and_then(|id| router.method(id))
        .map(|m| m.grpc_path());
    if named != Some(method.grpc_path()) {
        tracing::Span::current().record("method", method.grpc_path());
    }
    let rpc = RestRpc(method.grpc_path());
    let request = Routed {
        rule,
        values,
        query: uri.query(),
        headers,
        extensions,
    };
    let mut response = answer(method, request, body).await;
    response.extensions_mut().insert(rpc);
    response
}

/// A REST request its rule was found for.
struct Routed<'r> {
    rule: &'r yc_proto_types::rpc::HttpRule,
    /// The path template's values, as they are in the path.
    values: Vec<(&'r str, &'r str)>,
    query: Option<&'r str>,
    headers: axum::http::HeaderMap,
    extensions: axum::http::Extensions,
}

/// Reads the request of a routed call, calls the method and writes its answer.
async fn answer(
    method: &yc_proto_types::rpc::RestMethod,
    routed: Routed<'_>,
    body: axum::body::Body,
) -> Response {
    // Most calls (every GET) have no body: nothing to wait for or collect.
    let body = if axum::body::HttpBody::is_end_stream(&body) {
        axum::body::Bytes::new()
    } else {
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(e) => return body_error(&e),
        }
    };
    let fields = match RestRequest::read(routed.rule, routed.values, routed.query, &body) {
        Ok(fields) => fields,
        Err(status) => return ApiError(status).into_response(),
    };
    let request = RestRequest {
        fields,
        metadata: tonic::metadata::MetadataMap::from_headers(routed.headers),
        extensions: routed.extensions,
    };
    match method.call(request).await {
        Ok(json) => with_json(StatusCode::OK, json),
        Err(status) => ApiError(status).into_response(),
    }
}

/// The answer for a body that could not be read: 413 `RESOURCE_EXHAUSTED` when it was over the
/// server's limit, else 400.
fn body_error(e: &axum::Error) -> Response {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                Status::new(
                    tonic::Code::ResourceExhausted,
                    "The request is too large: length limit exceeded",
                ),
            );
        }
        source = error.source();
    }
    error_response(
        StatusCode::BAD_REQUEST,
        yc_proto_types::validation_error("body", &e.to_string()),
    )
}
