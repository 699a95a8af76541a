//! Where operations live: the [`OperationStore`] trait that the runner works through, and
//! what it stores.
//!
//! A store is shared by every replica of the server that uses it, so everything that must hold
//! across replicas is the store's job and happens atomically in it: an idempotency key maps to
//! one operation, and an operation finishes once.

use async_trait::async_trait;
use yc_api_runtime::list::page_token::TokenKey;
use yc_proto_types::google::protobuf::{Any, Timestamp};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

/// A new operation, as the runner hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOperation {
    /// The operation as it starts: id, description, creator, times, metadata; not done.
    pub operation: Operation,
    /// Full name of the RPC that started it, e.g. `yandex.cloud.compute.v1.ImageService.Create`:
    /// the scope of its idempotency key, and what resumes it after a restart.
    pub method: String,
    /// Id of the resource it works on, for listing a resource's operations.
    pub resource_id: String,
    /// The encoded request: compared when an idempotency key is reused, and the input of the
    /// work when it is resumed.
    pub request: Vec<u8>,
    /// The caller's `idempotency-key`, if it sent one.
    pub idempotency_key: Option<String>,
    /// The runner whose process runs the work; see [`OperationStore::claim_abandoned`].
    pub owner: String,
}

/// An operation with what the store keeps beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    /// The operation itself.
    pub operation: Operation,
    /// See [`NewOperation::method`].
    pub method: String,
    /// See [`NewOperation::resource_id`].
    pub resource_id: String,
    /// See [`NewOperation::request`].
    pub request: Vec<u8>,
    /// See [`NewOperation::owner`].
    pub owner: String,
}

impl OperationRecord {
    /// The request that started the operation, for the work that resumes it.
    pub fn request<Q: prost::Message + Default>(&self) -> Result<Q, Status> {
        Q::decode(self.request.as_slice()).map_err(|e| {
            Status::new(
                tonic::Code::Internal,
                format!("a stored request does not decode: {e}"),
            )
        })
    }

    /// The operation's metadata as `M`, if it is one.
    pub fn metadata<M: prost::Name + Default>(&self) -> Option<M> {
        self.operation
            .metadata
            .as_ref()
            .and_then(|m| m.to_msg::<M>().ok())
    }
}

/// What [`OperationStore::create`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The operation was stored.
    New(Operation),
    /// The same subject had already started an operation with the same method and idempotency
    /// key; that one is returned, and nothing was stored.
    Existing(OperationRecord),
}

/// What [`OperationStore::finish`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// The operation is now done with the given result.
    Now(Operation),
    /// It was already done; it is returned unchanged.
    Before(Operation),
}

impl Finished {
    /// The operation as it now stands.
    pub fn operation(self) -> Operation {
        match self {
            Finished::Now(op) | Finished::Before(op) => op,
        }
    }
}

/// What `update_metadata` does to a running operation, in every store.
pub(crate) fn set_metadata(op: &mut Operation, metadata: Any, at: Timestamp) {
    op.metadata = Some(metadata);
    op.modified_at = Some(at);
}

/// What `finish` does to a running operation, in every store.
pub(crate) fn set_result(op: &mut Operation, result: operation::Result, at: Timestamp) {
    op.done = true;
    op.result = Some(result);
    op.modified_at = Some(at);
}

/// Where a page of a resource's operations starts: after this operation, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationCursor {
    /// `created_at` of the last operation of the previous page.
    pub created_at: Timestamp,
    /// Its id, which breaks ties between operations created at the same time.
    pub id: String,
}

impl OperationCursor {
    /// The cursor that continues after `op`.
    pub fn after(op: &Operation) -> Self {
        Self {
            created_at: op.created_at.unwrap_or_default(),
            id: op.id.clone(),
        }
    }
}

/// A store failed; the message is for the log, not for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No operation has that id.
    NotFound(String),
    /// The store could not do it now (connection lost, disk full, …).
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound(id) => write!(f, "operation {id} not found"),
            StoreError::Unavailable(why) => write!(f, "operation store unavailable: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Persistence of operations.
///
/// Implementations: [`crate::MemoryOperationStore`] here; the embedded and PostgreSQL stores
/// of the server. Each method is atomic.
#[async_trait]
pub trait OperationStore: Send + Sync + 'static {
    /// Stores a new operation, unless its idempotency key (with its `created_by` and
    /// `method`) is already taken, in which case the operation holding it is returned.
    async fn create(&self, new: NewOperation) -> Result<Created, StoreError>;

    /// The operation with this id.
    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError>;

    /// The operation that holds an idempotency key of `created_by` for `method`.
    async fn find_by_idempotency_key(
        &self,
        created_by: &str,
        method: &str,
        key: &str,
    ) -> Result<Option<OperationRecord>, StoreError>;

    /// Replaces the metadata of a running operation and sets `modified_at`. A done operation
    /// is returned unchanged.
    async fn update_metadata(
        &self,
        id: &str,
        metadata: Any,
        at: Timestamp,
    ) -> Result<Operation, StoreError>;

    /// Finishes an operation with a response or an error, unless it is already done: the
    /// first finish wins, and every later one gets [`Finished::Before`].
    async fn finish(
        &self,
        id: &str,
        result: operation::Result,
        at: Timestamp,
    ) -> Result<Finished, StoreError>;

    /// Up to `limit` operations of a resource, newest first (by `created_at`, then id), after
    /// `after` when given. Served by an index on (resource, created_at, id).
    async fn list_by_resource(
        &self,
        resource_id: &str,
        limit: usize,
        after: Option<&OperationCursor>,
    ) -> Result<Vec<Operation>, StoreError>;

    /// Every operation that is not done.
    async fn unfinished(&self) -> Result<Vec<OperationRecord>, StoreError>;

    /// Records that the runner `owner` is alive until `expires_at`. Runners renew this lease
    /// while they run; the operations of a runner whose lease ran out are abandoned.
    async fn heartbeat(&self, owner: &str, expires_at: Timestamp) -> Result<(), StoreError>;

    /// Ends the lease of `owner` (a clean shutdown), so that its unfinished operations are
    /// abandoned at once rather than when the lease would have run out.
    async fn release(&self, owner: &str) -> Result<(), StoreError>;

    /// Hands every unfinished operation whose owner has no live lease at `now` over to
    /// `owner`, and returns them together with the unfinished operations `owner` already
    /// holds. Atomic: of several runners claiming at once, each
    /// operation goes to one. This is what lets replicas share a store: a runner never takes
    /// over the work of another that is still alive.
    async fn claim_abandoned(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<Vec<OperationRecord>, StoreError>;

    /// The page token keys (see [`yc_api_runtime::list::TokenKeys`]) at `now`: a new one is made when
    /// the newest is older than [`KEY_ROTATION`](yc_api_runtime::list::page_token::KEY_ROTATION) (or
    /// there is none), and keys older than
    /// [`KEY_LIFETIME`](yc_api_runtime::list::page_token::KEY_LIFETIME) go, but for the newest.
    /// Replicas asking at once agree on one new key.
    async fn token_keys(&self, now: Timestamp) -> Result<Vec<TokenKey>, StoreError>;
}
