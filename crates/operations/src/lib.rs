//! Long-running operations of the Yandex Cloud APIs.
//!
//! Every mutating call (registry Delete; compute Create, Update, Delete) returns a
//! `yandex.cloud.operation.Operation` that finishes later. This crate holds everything about
//! them that is not specific to one service:
//!
//! - **typed operations**: [`TypedOperation`] unpacks metadata and response by type;
//! - **the server side**: the [`OperationStore`] trait (with [`MemoryOperationStore`]), the
//!   [`OperationRunner`] that services start their work through, and `OperationService` over
//!   gRPC ([`OperationGrpc`]) and REST ([`OperationGrpc::rest`], served by [`rest::transcode`]);
//! - **the client side**: [`OperationWaiter`], which polls until an operation is done, over
//!   gRPC or REST ([`OperationSource`]).
//!
//! A service runs a mutation like this:
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

pub mod access;
pub mod client;
pub mod db;
pub mod ids;
mod memory;
pub mod query;
pub mod rest;
mod runner;
mod service;
mod sql_store;
mod store;
mod typed;
mod waiter;

pub use access::{Access, Principal, Role, permission_denied};
pub use client::{ApiClient, OperationSource, RestApi, RestOperationSource, paged};
pub use memory::MemoryOperationStore;
pub use runner::{
    CANCEL_WAIT, CancelMode, DEFAULT_LEASE, OperationContext, OperationRunner, Recovery, Resumers,
    StartOperation, WorkResult, idempotency_key,
};
pub use service::OperationGrpc;
pub use sql_store::SqlOperationStore;
pub use store::{
    Created, Finished, NewOperation, OperationCursor, OperationRecord, OperationStore, StoreError,
};
pub use typed::{TypedOperation, UnpackError};

/// Who is calling, as far as a service needs to know. The default may do anything, as a call
/// to a server without an IAM configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The subject, recorded as an operation's `created_by`.
    pub subject: String,
    /// The request's `idempotency-key`, if any.
    pub idempotency_key: Option<String>,
    /// What the subject may do.
    pub access: Access,
}

/// The status a caller sees when a store fails: `UNAVAILABLE`, without internals, which go to
/// the log.
pub fn store_unavailable(store: &str, why: &str) -> yc_proto_types::google::rpc::Status {
    tracing::error!(store, error = %why, "store unavailable");
    yc_proto_types::google::rpc::Status::new(
        tonic::Code::Unavailable,
        format!("The {store} is unavailable; retry later"),
    )
}

impl Caller {
    /// The caller of a request with these headers and extensions: the [`Principal`] the
    /// server's authentication put there (anything when there is none) and the
    /// `idempotency-key` header.
    pub fn from_parts(
        headers: &axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> Self {
        let principal = extensions.get::<Principal>().cloned().unwrap_or_default();
        Self {
            subject: principal.subject,
            idempotency_key: idempotency_key(headers),
            access: principal.access,
        }
    }

    /// The caller of a gRPC request, as [`Caller::from_parts`].
    pub fn from_grpc<T>(request: &tonic::Request<T>) -> Self {
        let principal = request
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or_default();
        let key = request.metadata().get(runner::IDEMPOTENCY_KEY);
        Self {
            subject: principal.subject,
            idempotency_key: runner::idempotency_key_of(key.and_then(|v| v.to_str().ok())),
            access: principal.access,
        }
    }

    /// Nothing unless the caller holds `role` (or a stronger one) in `folder`; else
    /// `PERMISSION_DENIED`.
    pub fn require(
        &self,
        folder: &str,
        role: Role,
    ) -> Result<(), yc_proto_types::google::rpc::Status> {
        if self.access.allows(folder, role) {
            Ok(())
        } else {
            Err(permission_denied())
        }
    }

    /// Whether the caller may read or cancel an operation started by `created_by`: its own, or
    /// any when it may do anything.
    pub fn may_see_operation(&self, created_by: &str) -> bool {
        self.access.is_unrestricted() || (!self.subject.is_empty() && self.subject == created_by)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller::from_parts(&parts.headers, &parts.extensions))
    }
}
pub use waiter::{OperationWaiter, WaitError, WaitPolicy};
