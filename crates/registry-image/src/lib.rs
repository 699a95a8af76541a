//! The Yandex Cloud Container Registry image domain.
//!
//! - [`oci`]: image manifests and OCI image layouts, with every digest and size verified.
//! - [`store`]: the [`ImageStore`](store::ImageStore) trait: registries, pushes, Get, Delete
//!   and List as one indexed query; [`sql`] implements it on SQLite and PostgreSQL.
//! - [`service`]: [`RegistryImages`], what List, Get, Delete and pushing mean;
//!   [`registries`]: [`Registries`], the RegistryService (registries created, listed,
//!   updated and deleted); [`repositories`]: [`Repositories`], the RepositoryService;
//!   [`grpc`] puts them on the wire (REST through the server's
//!   transcoder).
//! - [`distribution`]: the OCI distribution API (`/v2/`) that pushes and pulls images, over
//!   [`blobs`], their content in SQL; [`push`] is its client, pushing OCI image layouts.

#[cfg(feature = "server")]
pub mod blobs;
pub mod client;
#[cfg(feature = "server")]
pub mod distribution;
#[cfg(feature = "server")]
pub mod grpc;
pub mod oci;
#[cfg(feature = "server")]
pub mod push;
#[cfg(feature = "server")]
pub mod registries;
#[cfg(feature = "server")]
pub mod repositories;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod sql;
#[cfg(feature = "server")]
pub mod store;

pub use client::{RegistryClient, RegistryImageClient, RepositoryClient};
#[cfg(feature = "server")]
pub use grpc::{RegistryGrpc, RegistryImageGrpc, RepositoryGrpc};
#[cfg(feature = "server")]
pub use registries::Registries;
#[cfg(feature = "server")]
pub use repositories::Repositories;
#[cfg(feature = "server")]
pub use service::{Caller, RegistryImages};
#[cfg(feature = "server")]
pub use sql::SqlImageStore;
pub use yc_operations::client::ApiClient;
