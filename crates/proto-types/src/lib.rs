//! Wire types of the Yandex Cloud Container Registry and Compute image APIs and of their
//! long-running operations, generated from the `.proto` files in the repository's `proto/`.
//!
//! Every message encodes two ways from the same struct:
//!
//! - **protobuf**, for gRPC, through [`prost::Message`]; the tonic clients and servers sit beside
//!   the messages (`image_service_client`, `image_service_server`, …);
//! - **proto3 canonical JSON**, for the REST API, through [`serde`]: lowerCamelCase names,
//!   int64 as strings, enums by name, RFC 3339 timestamps, `google.protobuf.Any` with an
//!   `"@type"`, FieldMask as one comma-joined string. Readers also take snake_case names, int64
//!   as numbers and enums by number, and skip fields they do not know.
//!
//! Modules mirror the proto packages:
//!
//! ```
//! use yc_proto_types::yandex::cloud::compute::v1::{Image, image};
//! use yc_proto_types::google::protobuf::Timestamp;
//! use prost::Message;
//!
//! let image = Image {
//!     id: "fd8abcdefghijklmnopq".into(),
//!     status: image::Status::Ready as i32,
//!     created_at: Some(Timestamp { seconds: 1_718_873_645, nanos: 120_000_000 }),
//!     ..Default::default()
//! };
//! assert_eq!(
//!     serde_json::to_string(&image).unwrap(),
//!     r#"{"id":"fd8abcdefghijklmnopq","createdAt":"2024-06-20T08:54:05.120Z","status":"READY"}"#,
//! );
//! let bytes = image.encode_to_vec();
//! assert_eq!(Image::decode(bytes.as_slice()).unwrap(), image);
//! ```
//!
//! The code under `generated/` is written by `cargo xtask codegen` and checked in, so that
//! depending on this crate needs neither protoc nor a build script.

#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    rustdoc::all
)]
#[rustfmt::skip]
mod generated;
pub mod encoded;
mod json;
pub mod rpc;
mod rpc_status;
mod type_registry;
mod validate;
mod wire;
pub mod wkt;

pub use generated::{google, yandex};
pub use rpc::validation_error;
pub use rpc_status::{
    MAX_DETAILS, MAX_MESSAGE, MAX_QUOTE, bounded, code_name, code_of_http, http_status, quote,
};
pub use type_registry::message_type_names;
pub use validate::{descriptor_pool, validate};
pub use wkt::snake_case;

/// The encoded `google.protobuf.FileDescriptorSet` of every file in `proto/`, imports
/// included: for gRPC server reflection and for reading the request validation options.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/descriptor_set.bin");
