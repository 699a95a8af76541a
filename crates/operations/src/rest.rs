//! The REST face: answers and errors as the Yandex Cloud REST API writes them, and the
//! OperationService routes.
//!
//! An answer is the message in proto3 canonical JSON; an error is a `google.rpc.Status` in JSON
//! with the HTTP status of its code. Every REST router of the server answers through
//! [`json_response`] and [`ApiError`].

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::operation::{CancelOperationRequest, GetOperationRequest};

use crate::OperationRunner;

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

/// The answer for a path no route serves: the API's JSON error, 404 `NOT_FOUND`; for a gRPC
/// call (`content-type: application/grpc…`), gRPC's `UNIMPLEMENTED`.
pub async fn no_route(
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let path = yc_proto_types::quote(uri.path());
    if grpc {
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

/// Makes an error answer that is not the API's JSON (a plain-text rejection of an extractor:
/// a body too large, a path that does not decode) into the API's JSON error, with the same
/// HTTP status. For the REST routers: `axum::middleware::map_response(json_errors)`.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let code = yc_proto_types::code_of_http(status.as_u16());
    let message = match code {
        tonic::Code::ResourceExhausted => format!("The request is too large: {}", text.trim()),
        _ => format!("Request validation error: {}", text.trim()),
    };
    error_response(status, Status::new(code, message))
}

/// A `200 OK` answer with `value` in canonical JSON.
pub fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => with_json(StatusCode::OK, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot write an answer as JSON");
            ApiError(Status::new(
                tonic::Code::Internal,
                "The answer could not be written as JSON",
            ))
            .into_response()
        }
    }
}

fn with_json(code: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (code, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads a request message from a URL query string, as the REST API passes List requests:
/// names in lowerCamelCase or snake_case, every value a string (int64 fields take strings,
/// enums their names). Unknown parameters are skipped, as unknown JSON fields are.
///
/// ```
/// use yc_operations::rest::query_message;
/// use yc_proto_types::yandex::cloud::compute::v1::ListImagesRequest;
///
/// let request: ListImagesRequest =
///     query_message(Some("folderId=b1g&page_size=10&filter=name%3D%22a%22")).unwrap();
/// assert_eq!((request.folder_id.as_str(), request.page_size), ("b1g", 10));
/// assert_eq!(request.filter, r#"name="a""#);
///
/// let error = query_message::<ListImagesRequest>(Some("folderId=b1g&pageSize=abc")).unwrap_err();
/// assert!(error.message.starts_with("Request validation error: page_size: "), "{}", error.message);
/// ```
pub fn query_message<M: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<M, Status> {
    let mut object = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        object.insert(
            name.into_owned(),
            serde_json::Value::String(value.into_owned()),
        );
    }
    serde_path_to_error::deserialize(serde_json::Value::Object(object))
        .map_err(|e| unreadable("query parameters", &e))
}

/// `INVALID_ARGUMENT` for a request that does not read as its message: naming the field (in
/// the API's snake_case) where reading stopped, or `whole` when it stopped outside any.
fn unreadable<E: std::fmt::Display>(whole: &str, e: &serde_path_to_error::Error<E>) -> Status {
    let path = e.path().to_string();
    let field = if path.is_empty() || path == "." {
        whole.to_owned()
    } else {
        yc_proto_types::snake_case(&path)
    };
    Status::new(
        tonic::Code::InvalidArgument,
        format!(
            "Request validation error: {}: {}",
            yc_proto_types::bounded(&field, yc_proto_types::MAX_QUOTE),
            yc_proto_types::bounded(&e.inner().to_string(), 2 * yc_proto_types::MAX_QUOTE)
        ),
    )
}

/// Reads a request message from a JSON body.
pub fn body_message<M: serde::de::DeserializeOwned>(body: &[u8]) -> Result<M, Status> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let mut reader = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut reader).map_err(|e| unreadable("body", &e))
}

/// `GET /operations/{operationId}`, and `/operations/{operationId}:cancel` by GET and POST.
pub fn router(runner: OperationRunner) -> Router {
    Router::new()
        .route(
            "/operations/{operation}",
            get(operation_route).post(operation_route),
        )
        .with_state(runner)
}

async fn operation_route(
    State(runner): State<OperationRunner>,
    caller: crate::Caller,
    method: Method,
    Path(operation): Path<String>,
) -> Result<Response, ApiError> {
    match operation.strip_suffix(":cancel") {
        Some(id) => {
            let request = CancelOperationRequest {
                operation_id: id.to_owned(),
            };
            validate(&request)?;
            Ok(json_response(
                &runner.cancel_as(&request.operation_id, &caller).await?,
            ))
        }
        None if method == Method::GET => {
            let request = GetOperationRequest {
                operation_id: operation,
            };
            validate(&request)?;
            Ok(json_response(
                &runner.get_as(&request.operation_id, &caller).await?,
            ))
        }
        None => Err(ApiError(Status::new(
            tonic::Code::NotFound,
            format!(
                "No route {method} /operations/{operation}; POST is for /operations/{{operationId}}:cancel"
            ),
        ))),
    }
}
