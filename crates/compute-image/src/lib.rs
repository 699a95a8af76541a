//! The Yandex Cloud Compute image domain.
//!
//! - [`domain`]: helpers on the generated types (status meaning, default OS, hardware).
//! - [`store`]: the [`ComputeImageStore`](store::ComputeImageStore) trait and its SQLite
//!   implementation; List through the shared keyset query builder.
//! - [`source`]: fetching and inspecting images from URIs (qcow2 or raw), loopback only by
//!   default.
//! - [`sources`]: disks and snapshots, the other sources of images: their store and the Get
//!   and List of `DiskService` and `SnapshotService`.
//! - [`service`]: [`ComputeImages`], all ten RPCs; [`grpc`] puts it on the
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
pub mod sources;
#[cfg(feature = "server")]
pub mod store;

pub use client::{ComputeImageClient, ComputeSourcesClient};
#[cfg(feature = "server")]
pub use grpc::{ComputeImageGrpc, ComputeSourcesGrpc};
#[cfg(feature = "server")]
pub use service::{Caller, ComputeImages};
#[cfg(feature = "server")]
pub use sources::{ComputeSources, SqlSources};
#[cfg(feature = "server")]
pub use store::SqlComputeImageStore;
pub use yc_operations::client::ApiClient;
