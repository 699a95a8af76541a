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
        // A Status whose details cannot be written is still an error the client must see.
        let body = serde_json::to_vec(&self.0).unwrap_or_else(|_| {
            serde_json::to_vec(&Status {
                details: Vec::new(),
                ..self.0.clone()
            })
            .unwrap_or_default()
        });
        with_json(code, body)
    }
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
/// ```
pub fn query_message<M: serde::de::DeserializeOwned>(query: Option<&str>) -> Result<M, Status> {
    let mut object = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        object.insert(
            name.into_owned(),
            serde_json::Value::String(value.into_owned()),
        );
    }
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
        Status::new(
            tonic::Code::InvalidArgument,
            format!("Request validation error: query parameters: {e}"),
        )
    })
}

/// Reads a request message from a JSON body.
pub fn body_message<M: serde::de::DeserializeOwned>(body: &[u8]) -> Result<M, Status> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        Status::new(
            tonic::Code::InvalidArgument,
            format!("Request validation error: body: {e}"),
        )
    })
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
