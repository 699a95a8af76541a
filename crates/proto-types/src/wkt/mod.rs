//! The `google.protobuf` well-known types the API uses, with their proto3 JSON forms.
//!
//! They are written by hand rather than taken from `prost-types` because their JSON forms are
//! not those of ordinary messages: a [`Timestamp`] is an RFC 3339 string, a [`FieldMask`] one
//! comma-joined string of lowerCamelCase paths, and an [`Any`] an object that names its type
//! under `"@type"` and carries the message's own fields inline. Their protobuf encoding is the
//! standard one. The generated code refers to them as `google::protobuf::*`.

mod any;
mod empty;
mod field_mask;
mod timestamp;

pub use any::{Any, AnyError};
pub use empty::Empty;
pub use field_mask::{FieldMask, snake_case};
pub use timestamp::{Timestamp, TimestampError};

/// Implements [`prost::Name`] for a `google.protobuf` message.
macro_rules! well_known_name {
    ($ty:ident) => {
        impl ::prost::Name for $ty {
            const NAME: &'static str = stringify!($ty);
            const PACKAGE: &'static str = "google.protobuf";

            fn full_name() -> String {
                concat!("google.protobuf.", stringify!($ty)).into()
            }

            fn type_url() -> String {
                concat!("type.googleapis.com/google.protobuf.", stringify!($ty)).into()
            }
        }
    };
}
use well_known_name;
