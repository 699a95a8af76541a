//! `google.rpc.Status`, the error of gRPC and REST alike, and its one mapping to and from
//! [`tonic::Status`] and to HTTP status codes.
//!
//! A gRPC error travels as a code and a message plus, in the `grpc-status-details-bin`
//! trailer, the whole encoded `google.rpc.Status` with its details; a REST error is the same
//! `google.rpc.Status` as a JSON body. Every crate converts through here.
//!
//! ```
//! use yc_proto_types::google::rpc::{RequestInfo, Status};
//!
//! let status = Status::new(tonic::Code::NotFound, "Image fd8abc not found")
//!     .with_detail(&RequestInfo { request_id: "r-1".into(), serving_data: String::new() });
//! assert_eq!(status.http_status(), 404);
//!
//! let grpc = tonic::Status::from(status.clone());
//! assert_eq!(grpc.code(), tonic::Code::NotFound);
//! assert_eq!(Status::from(&grpc), status);
//! ```

use prost::bytes::Bytes;
use prost::{Message, Name};

use crate::google::rpc::Status;
use crate::wkt::Any;

impl Status {
    /// A status with a code and a message and no details.
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            code: code as i32,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// Adds a detail message, such as `google.rpc.BadRequest` or `google.rpc.RequestInfo`.
    pub fn with_detail<M: Name>(mut self, detail: &M) -> Self {
        self.details.push(Any::from_msg(detail));
        self
    }

    /// The first detail of type `M`, if there is one and it decodes.
    pub fn detail<M: Name + Default>(&self) -> Option<M> {
        self.details.iter().find(|d| d.is::<M>())?.to_msg().ok()
    }

    /// The status as a caller is sent it: the message cut to [`MAX_MESSAGE`] characters and
    /// the details to those that fit in [`MAX_DETAILS`] encoded bytes, so that an answer (a
    /// gRPC trailer, a REST body) stays small whatever the request held.
    pub fn bounded(mut self) -> Self {
        if self.message.len() > MAX_MESSAGE {
            self.message = bounded(&self.message, MAX_MESSAGE).into_owned();
        }
        let mut room = MAX_DETAILS;
        self.details.retain(|detail| {
            let size = detail.encoded_len();
            let keep = size <= room;
            if keep {
                room -= size;
            }
            keep
        });
        self
    }

    /// The gRPC code; a number outside the known codes reads as `Unknown`.
    pub fn grpc_code(&self) -> tonic::Code {
        tonic::Code::from(self.code)
    }

    /// The HTTP status the REST API answers with for this code.
    pub fn http_status(&self) -> u16 {
        http_status(self.grpc_code())
    }
}

/// The longest error message a caller is sent, in bytes.
pub const MAX_MESSAGE: usize = 1024;
/// The most bytes of encoded details a caller is sent with an error.
pub const MAX_DETAILS: usize = 4096;
/// The most characters of a caller's input an error message quotes.
pub const MAX_QUOTE: usize = 128;

/// `text` cut to at most `max` bytes (at a character boundary), with `…` when cut.
///
/// ```
/// assert_eq!(yc_proto_types::bounded("short", 128), "short");
/// assert_eq!(yc_proto_types::bounded("abcdefgh", 4), "abcd…");
/// ```
pub fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &text[..end]))
}

/// A caller's input as an error message quotes it: in double quotes, escaped, and at most
/// [`MAX_QUOTE`] characters of it.
///
/// ```
/// assert_eq!(yc_proto_types::quote("name"), "\"name\"");
/// assert!(yc_proto_types::quote(&"x".repeat(10_000)).len() < 140);
/// ```
pub fn quote(input: &str) -> String {
    format!("{:?}", bounded(input, MAX_QUOTE))
}

/// The HTTP status of a gRPC code, as the Yandex Cloud REST API maps them.
pub fn http_status(code: tonic::Code) -> u16 {
    use tonic::Code::*;
    match code {
        Ok => 200,
        Cancelled => 499,
        Unknown | Internal | DataLoss => 500,
        InvalidArgument | FailedPrecondition | OutOfRange => 400,
        DeadlineExceeded => 504,
        NotFound => 404,
        AlreadyExists | Aborted => 409,
        PermissionDenied => 403,
        ResourceExhausted => 429,
        Unimplemented => 501,
        Unavailable => 503,
        Unauthenticated => 401,
    }
}

/// The gRPC code of an HTTP error that came without a `google.rpc.Status` body (a proxy's, or
/// an API that answers in its own error format, such as the registry's `/v2/`).
pub fn code_of_http(status: u16) -> tonic::Code {
    match status {
        400 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        405 => tonic::Code::Unimplemented,
        413 => tonic::Code::ResourceExhausted,
        415 => tonic::Code::InvalidArgument,
        409 => tonic::Code::Aborted,
        416 => tonic::Code::FailedPrecondition,
        429 => tonic::Code::ResourceExhausted,
        499 => tonic::Code::Cancelled,
        501 => tonic::Code::Unimplemented,
        502..=503 => tonic::Code::Unavailable,
        504 => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Unknown,
    }
}

/// A gRPC code's name, as the API writes it (`NOT_FOUND`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl From<Status> for tonic::Status {
    fn from(status: Status) -> Self {
        let status = status.bounded();
        let code = status.grpc_code();
        let message = status.message.clone();
        let details = Bytes::from(status.encode_to_vec());
        tonic::Status::with_details(code, message, details)
    }
}

impl From<&tonic::Status> for Status {
    /// The full status from the `grpc-status-details-bin` trailer when the server sent one
    /// that agrees with the code, else the code and message alone.
    fn from(status: &tonic::Status) -> Self {
        let code = status.code() as i32;
        match Status::decode(status.details()) {
            Ok(full) if !status.details().is_empty() && full.code == code => full,
            _ => Status {
                code,
                message: status.message().to_owned(),
                details: Vec::new(),
            },
        }
    }
}

impl From<tonic::Status> for Status {
    fn from(status: tonic::Status) -> Self {
        Status::from(&status)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.grpc_code(), self.message)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::google::rpc::BadRequest;
    use crate::google::rpc::bad_request::FieldViolation;

    #[test]
    fn every_code_is_named_as_the_api_names_it() {
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            // `NotFound` → `NOT_FOUND`.
            let mut expected = String::new();
            for (i, c) in format!("{code:?}").chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    expected.push('_');
                }
                expected.push(c.to_ascii_uppercase());
            }
            assert_eq!(code_name(code), expected);
        }
    }

    #[test]
    fn every_code_maps_to_the_documented_http_status() {
        let expected = [
            (1, 499),
            (2, 500),
            (3, 400),
            (4, 504),
            (5, 404),
            (6, 409),
            (7, 403),
            (8, 429),
            (9, 400),
            (10, 409),
            (11, 400),
            (12, 501),
            (13, 500),
            (14, 503),
            (15, 500),
            (16, 401),
        ];
        for (code, http) in expected {
            let status = Status {
                code,
                ..Default::default()
            };
            assert_eq!(status.http_status(), http, "code {code}");
        }
    }

    #[test]
    fn details_survive_the_trip_through_tonic() {
        let status = Status::new(
            tonic::Code::InvalidArgument,
            "Request validation error: name: bad",
        )
        .with_detail(&BadRequest {
            field_violations: vec![FieldViolation {
                field: "name".into(),
                description: "bad".into(),
                ..Default::default()
            }],
        });
        let grpc = tonic::Status::from(status.clone());
        assert_eq!(grpc.message(), "Request validation error: name: bad");
        let back = Status::from(&grpc);
        assert_eq!(back, status);
        assert_eq!(
            back.detail::<BadRequest>()
                .map(|b| b.field_violations.len()),
            Some(1)
        );
    }

    #[test]
    fn a_plain_tonic_status_keeps_code_and_message() {
        let grpc = tonic::Status::unavailable("try later");
        assert_eq!(
            Status::from(grpc),
            Status::new(tonic::Code::Unavailable, "try later")
        );
        // Details that contradict the code are not trusted.
        let other = Status::new(tonic::Code::NotFound, "x").encode_to_vec();
        let grpc = tonic::Status::with_details(tonic::Code::Internal, "boom", other.into());
        assert_eq!(
            Status::from(grpc),
            Status::new(tonic::Code::Internal, "boom")
        );
    }
}
