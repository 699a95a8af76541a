//! The registry API's errors, in the spec's JSON with its codes.

use super::*;

/// An error as the distribution spec writes it.
#[derive(Debug)]
pub struct OciApiError {
    pub(super) status: StatusCode,
    code: &'static str,
    message: String,
}

impl OciApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// A service's refusal, with `not_found` as the code when it is a `NOT_FOUND`. The HTTP
    /// status is the REST API's for the code, except that an image the registry does not take
    /// (`UNIMPLEMENTED`) is the client's to change: 400, as the spec answers `UNSUPPORTED`.
    pub(super) fn from_status(
        status: Status,
        not_found: &'static str,
        invalid: &'static str,
    ) -> Self {
        let grpc = status.grpc_code();
        let code = match grpc {
            tonic::Code::NotFound => not_found,
            tonic::Code::PermissionDenied => "DENIED",
            tonic::Code::Unauthenticated => "UNAUTHORIZED",
            tonic::Code::InvalidArgument => invalid,
            tonic::Code::Unimplemented => "UNSUPPORTED",
            tonic::Code::Unavailable => "UNAVAILABLE",
            _ => "UNKNOWN",
        };
        let http = match grpc {
            tonic::Code::Unimplemented => StatusCode::BAD_REQUEST,
            other => StatusCode::from_u16(yc_proto_types::http_status(other))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        Self::new(http, code, status.message)
    }
}

impl From<BlobError> for OciApiError {
    fn from(e: BlobError) -> Self {
        let message = e.to_string();
        match e {
            BlobError::UploadUnknown(_) => {
                Self::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", message)
            }
            BlobError::OutOfOrder { .. }
            | BlobError::Busy { .. }
            | BlobError::LengthMismatch { .. } => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                message,
            ),
            BlobError::DigestMismatch { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
            }
            BlobError::Body(_) => {
                Self::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", message)
            }
            BlobError::Unavailable(why) => {
                tracing::error!(error = %why, "blob store");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "The blob store is unavailable; try again",
                )
            }
        }
    }
}

impl IntoResponse for OciApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{"code": self.code, "message": self.message}]
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"yc-images\""),
            );
        }
        response
    }
}

/// The answer to a call without valid credentials: `401` with a `Basic` challenge, which
/// `docker login` and skopeo answer with the user `iam` and an IAM token as the password.
pub fn unauthorized(message: impl Into<String>) -> OciApiError {
    OciApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}
