//! The Yandex Cloud Container Registry image domain.
//!
//! - [`oci`]: image manifests and OCI image layouts, with every digest and size verified.
//! - [`store`]: the [`ImageStore`](store::ImageStore) trait: registries, pushes, Get, Delete
//!   and List as one indexed query; [`sql`] implements it on SQLite and PostgreSQL.
//! - [`service`]: [`RegistryImages`], what List, Get, Delete and pushing mean;
//!   [`grpc`] puts it on the wire (REST through the server's transcoder).
//! - [`distribution`]: the OCI distribution API (`/v2/`) that pushes and pulls images, over
//!   [`blobs`], their content in SQL; [`push`] is its client, pushing OCI image layouts.

pub mod blobs;
pub mod client;
pub mod distribution;
pub mod grpc;
pub mod oci;
pub mod push;
pub mod service;
pub mod sql;
pub mod store;

pub use client::RegistryImageClient;
pub use grpc::RegistryImageGrpc;
pub use service::{Caller, RegistryImages};
pub use sql::SqlImageStore;
pub use yc_operations::client::ApiClient;
