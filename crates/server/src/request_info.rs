//! Errors carry a `google.rpc.RequestInfo` with the id of the request they answer, as the
//! cloud's do. It is added on the way out, to error answers only, so that answers that
//! succeed cost nothing: a gRPC error's `grpc-status-details-bin`, a REST error's JSON body.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use yc_proto_types::google::rpc::{RequestInfo, Status};

const DETAILS: &str = "grpc-status-details-bin";
const REQUEST_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RequestInfo";

/// Adds the request id to the status of a gRPC error answered in its headers (a unary call's
/// error, trailers-only).
pub(crate) fn add_to_grpc_error(headers: &mut HeaderMap, request_id: &HeaderValue) {
    let Ok(request_id) = request_id.to_str() else {
        return;
    };
    let Some(grpc) = tonic::Status::from_header_map(headers) else {
        return;
    };
    let mut status = Status::from(&grpc);
    if status.detail::<RequestInfo>().is_some() {
        return;
    }
    status = status.with_detail(&RequestInfo {
        request_id: request_id.to_owned(),
        serving_data: String::new(),
    });
    let encoded = STANDARD_NO_PAD.encode(prost::Message::encode_to_vec(&status));
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert(DETAILS, value);
    }
}

/// Adds the request id to the details of a REST error's JSON body. The API's errors are
/// written whole (one frame, ready at once), so the body is read and rewritten here, its length
/// known; a body that is not ready at once is left as it is.
pub(crate) fn add_to_json_error(response: Response, request_id: &HeaderValue) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let Ok(request_id) = request_id.to_str() else {
        return response;
    };
    if !json {
        return response;
    }
    let (mut parts, mut body) = response.into_parts();
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let first = http_body::Body::poll_frame(std::pin::Pin::new(&mut body), &mut cx);
    let bytes = match first {
        std::task::Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(bytes) => bytes,
            Err(frame) => {
                return Response::from_parts(parts, rest_after(Some(frame), body));
            }
        },
        std::task::Poll::Ready(None) => bytes::Bytes::new(),
        std::task::Poll::Ready(Some(Err(_))) | std::task::Poll::Pending => {
            return Response::from_parts(parts, body);
        }
    };
    if !http_body::Body::is_end_stream(&body) {
        return Response::from_parts(parts, rest_after(Some(http_body::Frame::data(bytes)), body));
    }
    let rewritten = with_request_info(&bytes, request_id).unwrap_or(bytes);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(rewritten))
}

/// The body of `frame` followed by the rest of `body`.
fn rest_after(frame: Option<http_body::Frame<bytes::Bytes>>, body: Body) -> Body {
    use futures_util::StreamExt as _;
    let first = futures_util::stream::iter(frame.and_then(|f| f.into_data().ok()).map(Ok));
    Body::from_stream(first.chain(body.into_data_stream()))
}

/// A JSON error with a `RequestInfo` among its details, if it is a JSON object.
fn with_request_info(bytes: &[u8], request_id: &str) -> Option<bytes::Bytes> {
    let mut error = serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
    let details = error
        .as_object_mut()?
        .entry("details")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        .as_array_mut()?;
    if !details.iter().any(|d| d["@type"] == REQUEST_INFO_TYPE) {
        details.push(serde_json::json!({"@type": REQUEST_INFO_TYPE, "requestId": request_id}));
    }
    serde_json::to_vec(&error).ok().map(Into::into)
}
