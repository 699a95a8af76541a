//! What every API service of the yc-images server shares, so that each rule exists once:
//!
//! - **who is calling** ([`Caller`], [`Principal`], [`Access`], [`Role`]): the server puts a
//!   [`Principal`] on every call (from IAM, or the explicit anonymous one of a server without
//!   IAM); a call without one is `UNAUTHENTICATED`, never a caller that may do anything.
//!   [`Caller::system`] is the server's own work (resuming operations, seeding);
//! - **errors** in their REST form ([`rest::ApiError`], [`rest::error_response`]) beside the
//!   gRPC one in `yc_proto_types`, and [`store_unavailable`];
//! - **the REST transcoder** ([`rest::transcode`]), which serves every `google.api.http` rule
//!   of the schema by calling the service as gRPC would;
//! - **List queries** ([`list`]): the filter syntax, `order_by`, page tokens, and keyset
//!   `SELECT`s in either SQL dialect, with [`list::Page`] putting them together;
//! - **ids** in the Yandex form ([`ids`]).

pub mod access;
mod caller;
pub mod ids;
pub mod list;
pub mod rest;

pub use access::{Access, Principal, PrincipalLayer, Role, WithPrincipal, permission_denied};
pub use caller::{Caller, IDEMPOTENCY_KEY, idempotency_key};

/// The status a caller sees when a store fails: `UNAVAILABLE`, without internals, which go to
/// the log.
pub fn store_unavailable(store: &str, why: &str) -> yc_proto_types::google::rpc::Status {
    tracing::error!(store, error = %why, "store unavailable");
    yc_proto_types::google::rpc::Status::new(
        tonic::Code::Unavailable,
        format!("The {store} is unavailable; retry later"),
    )
}
