//! The Yandex Cloud Compute image domain.
//!
//! - [`domain`]: helpers on the generated types (status meaning, default OS, hardware).
//! - [`store`]: the [`ComputeImageStore`](store::ComputeImageStore) trait and its SQLite
//!   implementation; List through the shared keyset query builder.
//! - [`source`]: fetching and inspecting images from URIs (qcow2 or raw), loopback only by
//!   default.
//! - [`service`]: [`ComputeImages`], all seven RPCs; [`grpc`] puts it on the
//!   wire; [`client`] is the typed client over either.

pub mod client;
pub mod domain;
#[cfg(feature = "server")]
pub mod grpc;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod source;
#[cfg(feature = "server")]
pub mod store;

pub use client::ComputeImageClient;
#[cfg(feature = "server")]
pub use grpc::ComputeImageGrpc;
#[cfg(feature = "server")]
pub use service::{Caller, ComputeImages};
#[cfg(feature = "server")]
pub use store::SqlComputeImageStore;
pub use yc_operations::client::ApiClient;
