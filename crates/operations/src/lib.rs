//! Long-running operations of the Yandex Cloud APIs.
//!
//! Every mutating call (registry Delete; compute Create, Update, Delete) returns a
//! `yandex.cloud.operation.Operation` that finishes later. This crate holds everything about
//! them that is not specific to one service:
//!
//! - **typed operations**: [`TypedOperation`] unpacks metadata and response by type;
//! - **the client side**: [`ApiClient`], the one connection (gRPC or REST, with its token)
//!   every typed client calls through, and [`OperationWaiter`], which polls until an operation
//!   is done ([`OperationSource`]);
//! - **the server side**, with the feature `server`: the `OperationStore` trait (in memory, on
//!   SQLite or PostgreSQL), the `OperationRunner` that services start their work through, and
//!   `OperationService` (`OperationGrpc`, over gRPC, and over REST through the transcoder).
//!
//! Without `server` the crate compiles no SQL driver and no HTTP server: what a program that
//! only calls the APIs needs.
//!
//! A service runs a mutation like this (feature `server`):
//!
//! ```
//! use std::sync::Arc;
//! use yc_operations::{MemoryOperationStore, OperationRunner, StartOperation};
//! use yc_proto_types::google::protobuf::{Any, Empty};
//! use yc_proto_types::yandex::cloud::compute::v1::{DeleteImageMetadata, DeleteImageRequest};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
//! let request = DeleteImageRequest { image_id: "fd8img".into() };
//! let metadata = DeleteImageMetadata { image_id: request.image_id.clone() };
//! let start = StartOperation::new(
//!     "fd8", "yandex.cloud.compute.v1.ImageService.Delete", "Delete image",
//!     &request.image_id, &metadata, &request,
//! );
//! let op = runner
//!     .start(start, |_ctx| async move {
//!         // ... delete the image ...
//!         Ok(Any::from_msg(&Empty {}))
//!     })
//!     .await
//!     .unwrap();
//! assert!(!op.done);
//! # }
//! ```

pub mod client;
pub mod cloud;
pub mod credentials;
#[cfg(feature = "server")]
mod memory;
#[cfg(feature = "server")]
mod runner;
#[cfg(feature = "server")]
mod service;
#[cfg(feature = "server")]
mod sql_store;
#[cfg(feature = "server")]
mod store;
mod typed;
mod waiter;

pub use client::{ApiClient, OperationSource, RestApi, RestOperationSource, paged};
#[cfg(feature = "server")]
pub use memory::MemoryOperationStore;
#[cfg(feature = "server")]
pub use runner::{
    CANCEL_WAIT, CancelMode, Clock, DEFAULT_LEASE, OperationContext, OperationRunner, Recovery,
    Resumers, StartOperation, WorkResult, system_clock,
};
#[cfg(feature = "server")]
pub use service::OperationGrpc;
#[cfg(feature = "server")]
pub use sql_store::SqlOperationStore;
#[cfg(feature = "server")]
pub use store::{
    Created, Finished, NewOperation, OperationCursor, OperationRecord, OperationStore, StoreError,
};
pub use typed::{TypedOperation, UnpackError};
pub use waiter::{OperationWaiter, WaitError, WaitPolicy};
