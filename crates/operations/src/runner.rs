//! The [`OperationRunner`]: services start their work through it and get back the not-done
//! Operation at once; the work runs in a tokio task that outlives the request, may report
//! progress as metadata, and finishes the operation exactly once.
//!
//! # What happens to operations when the process stops
//!
//! An operation that is not done when the process stops stays in the store as not done,
//! owned by the runner that started it. Every runner holds a lease in the store, renewed while
//! it runs ([`OperationRunner::recover`] starts it) and ended by
//! [`OperationRunner::release`] on a clean shutdown. The operations of a runner whose lease
//! has ended are abandoned, and the next runner to sweep claims them: if the service
//! registered a [`Resumers`] entry for the operation's method, the work runs again from the
//! stored request; otherwise the operation is finished with `ABORTED`, saying that the server
//! stopped before the operation completed and that the call can be retried.
//!
//! A runner sweeps once when it starts and then with every renewal of its lease, so an
//! operation left behind by a crash is finished within one lease (30 s by default) plus one
//! renewal interval, by the restarted process or by any other replica on the same store; one
//! left by a clean shutdown, at the next sweep. No operation stays "running" forever, and no
//! runner takes over the work of another that is alive.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use prost::Name;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use yc_proto_types::google::protobuf::{Any, Timestamp};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

use crate::store::{
    Created, NewOperation, OperationCursor, OperationRecord, OperationStore, StoreError,
};
use yc_api_runtime::Caller;
use yc_api_runtime::ids::new_id;

/// What the work of an operation ends with: the response, packed, or the error.
pub type WorkResult = Result<Any, Status>;

/// Everything the runner needs to start an operation.
#[derive(Debug, Clone)]
pub struct StartOperation {
    id_prefix: &'static str,
    method: String,
    description: String,
    resource_id: String,
    metadata: Any,
    request: Vec<u8>,
    created_by: String,
    idempotency_key: Option<String>,
    cancel: CancelMode,
}

/// What `Cancel` does to an operation's work while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelMode {
    /// Nothing: the work runs to its end, and Cancel returns the operation still running.
    #[default]
    Never,
    /// The work is dropped at its next await point and the operation is finished with
    /// `CANCELLED` at once. For work that leaves nothing half-done at any await point.
    Drop,
    /// The work is told ([`OperationContext::cancelled`]) and ends itself, tidying up what it
    /// began (an image it was creating ends in ERROR, say), with the result it chooses,
    /// normally `CANCELLED`. Cancel waits for that, up to [`CANCEL_WAIT`], and returns the
    /// operation as it then stands.
    Notify,
}

impl From<bool> for CancelMode {
    /// `true` is [`CancelMode::Drop`], `false` [`CancelMode::Never`].
    fn from(cancellable: bool) -> Self {
        if cancellable {
            CancelMode::Drop
        } else {
            CancelMode::Never
        }
    }
}

/// How long Cancel waits for work in [`CancelMode::Notify`] to end.
pub const CANCEL_WAIT: Duration = Duration::from_secs(10);

impl StartOperation {
    /// An operation of `method` (the full RPC name) on `resource_id`, with an id of the given
    /// prefix, started by `request` and carrying `metadata`.
    ///
    /// ```
    /// use yc_operations::StartOperation;
    /// use yc_proto_types::yandex::cloud::compute::v1::{DeleteImageMetadata, DeleteImageRequest};
    ///
    /// let request = DeleteImageRequest { image_id: "fd8img".into() };
    /// let start = StartOperation::new(
    ///     "fd8",
    ///     "yandex.cloud.compute.v1.ImageService.Delete",
    ///     "Delete image",
    ///     &request.image_id,
    ///     &DeleteImageMetadata { image_id: request.image_id.clone() },
    ///     &request,
    /// )
    /// .created_by("ajeuser")
    /// .idempotency_key(None);
    /// ```
    pub fn new<M: Name, Q: prost::Message>(
        id_prefix: &'static str,
        method: impl Into<String>,
        description: impl Into<String>,
        resource_id: impl Into<String>,
        metadata: &M,
        request: &Q,
    ) -> Self {
        Self {
            id_prefix,
            method: method.into(),
            description: description.into(),
            resource_id: resource_id.into(),
            metadata: Any::from_msg(metadata),
            request: request.encode_to_vec(),
            created_by: String::new(),
            idempotency_key: None,
            cancel: CancelMode::Never,
        }
    }

    /// The subject that starts the operation.
    pub fn created_by(mut self, subject: impl Into<String>) -> Self {
        self.created_by = subject.into();
        self
    }

    /// The caller's `idempotency-key`: a repeat of the same request with the same key gets
    /// the operation the first one started.
    pub fn idempotency_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }

    /// The caller's subject and idempotency key, as [`created_by`](Self::created_by) and
    /// [`idempotency_key`](Self::idempotency_key) set them.
    pub fn caller(self, caller: &Caller) -> Self {
        self.created_by(&caller.subject)
            .idempotency_key(caller.idempotency_key.clone())
    }

    /// Whether Cancel may stop the work by dropping it ([`CancelMode::Drop`]). Work that
    /// allows it must leave nothing half-done at any of its await points. Off by default.
    pub fn cancellable(self, cancellable: bool) -> Self {
        self.cancel_mode(cancellable.into())
    }

    /// What Cancel does to the work (see [`CancelMode`]); [`CancelMode::Never`] by default.
    pub fn cancel_mode(mut self, mode: CancelMode) -> Self {
        self.cancel = mode;
        self
    }
}

/// Where the work of an operation started by [`OperationRunner::start_accepted`] says that the
/// call may return.
type Acceptance = Arc<Mutex<Option<oneshot::Sender<Result<(), Status>>>>>;

/// What the work of one operation can do while it runs.
#[derive(Clone)]
pub struct OperationContext {
    id: String,
    store: Arc<dyn OperationStore>,
    cancel: CancellationToken,
    accept: Acceptance,
}

impl OperationContext {
    /// Id of the operation.
    pub fn operation_id(&self) -> &str {
        &self.id
    }

    /// Replaces the operation's metadata, for progress that callers can watch.
    pub async fn set_metadata<M: Name>(&self, metadata: &M) -> Result<(), Status> {
        self.store
            .update_metadata(&self.id, Any::from_msg(metadata), Timestamp::now())
            .await
            .map(drop)
            .map_err(|e| store_status(&e))
    }

    /// Whether a caller asked to cancel the operation.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when a caller asks to cancel the operation.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Lets the call that started the operation return (see
    /// [`OperationRunner::start_accepted`]): the work has done the part the caller must see
    /// done when the operation comes back. Does nothing for operations started otherwise, or
    /// resumed after a restart.
    pub fn accept(&self) {
        if let Some(sender) = self.accept.lock().ok().and_then(|mut a| a.take()) {
            let _ = sender.send(Ok(()));
        }
    }
}

type Resume =
    Arc<dyn Fn(OperationRecord, OperationContext) -> BoxFuture<'static, WorkResult> + Send + Sync>;

/// The work that can continue an interrupted operation, by method.
#[derive(Default, Clone)]
pub struct Resumers {
    by_method: HashMap<String, (Resume, CancelMode)>,
}

impl Resumers {
    /// No resumers: every interrupted operation is aborted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes interrupted operations of `method` with `work`, which gets the stored record
    /// (its `request` is the encoded request that started it); `cancel` is what Cancel does to
    /// that work (`false` and `true` are [`CancelMode::Never`] and [`CancelMode::Drop`]).
    pub fn add<F, Fut>(
        mut self,
        method: impl Into<String>,
        cancel: impl Into<CancelMode>,
        work: F,
    ) -> Self
    where
        F: Fn(OperationRecord, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WorkResult> + Send + 'static,
    {
        let resume: Resume = Arc::new(move |record, ctx| work(record, ctx).boxed());
        self.by_method
            .insert(method.into(), (resume, cancel.into()));
        self
    }
}

/// What [`OperationRunner::recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Ids of the operations whose work runs again.
    pub resumed: Vec<String>,
    /// Ids of the operations finished with `ABORTED`.
    pub aborted: Vec<String>,
}

/// How long a runner's lease lasts unless renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Starts, tracks, cancels and recovers operations. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct OperationRunner {
    inner: Arc<Inner>,
}

/// Where a runner reads the time that leases, claims and finishes are stamped with: the
/// system clock, or in tests one driven by tokio's (paused) time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

struct Inner {
    store: Arc<dyn OperationStore>,
    clock: Clock,
    /// This runner's identity in the store: the owner of the operations it starts.
    owner: String,
    lease: Duration,
    /// Operations whose work runs in this process.
    running: Mutex<HashMap<String, Running>>,
    /// Operations being stored by `start`, whose work is about to run here: a sweep that
    /// claims them meanwhile must not run them as well.
    starting: Mutex<std::collections::HashSet<String>>,
    resumers: Mutex<Resumers>,
    renewing: std::sync::atomic::AtomicBool,
    /// What page tokens are signed with: the store's keys once [`OperationRunner::recover`]
    /// has read them, one of this process's own until then.
    token_keys: yc_api_runtime::list::TokenKeys,
}

struct Running {
    cancel: CancellationToken,
    mode: CancelMode,
    /// Cancelled when the work has ended and the operation is finished.
    ended: CancellationToken,
}

impl OperationRunner {
    /// A runner over `store`, with the default lease.
    pub fn new(store: Arc<dyn OperationStore>) -> Self {
        Self::with_lease(store, DEFAULT_LEASE)
    }

    /// A runner over `store` whose lease lasts `lease` and is renewed every third of it.
    pub fn with_lease(store: Arc<dyn OperationStore>, lease: Duration) -> Self {
        Self::with_clock(store, lease, system_clock())
    }

    /// A runner as [`with_lease`](Self::with_lease) makes, reading the time from `clock`.
    pub fn with_clock(store: Arc<dyn OperationStore>, lease: Duration, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                owner: new_id("run"),
                lease,
                running: Mutex::new(HashMap::new()),
                starting: Mutex::new(std::collections::HashSet::new()),
                resumers: Mutex::new(Resumers::new()),
                renewing: std::sync::atomic::AtomicBool::new(false),
                token_keys: yc_api_runtime::list::TokenKeys::ephemeral(),
            }),
        }
    }

    /// This runner's identity in the store.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The store behind the runner.
    pub fn store(&self) -> &Arc<dyn OperationStore> {
        &self.inner.store
    }

    /// How many operations' work runs in this process now.
    pub fn running_count(&self) -> usize {
        self.inner.running.lock().map_or(0, |running| running.len())
    }

    /// The keys page tokens are signed with, shared by every replica on the store once
    /// [`recover`](Self::recover) has run (and read again with every renewal of the lease).
    pub fn token_keys(&self) -> &yc_api_runtime::list::TokenKeys {
        &self.inner.token_keys
    }

    async fn refresh_token_keys(&self) -> Result<(), Status> {
        let now = (self.inner.clock)();
        let keys = self
            .inner
            .store
            .token_keys(now)
            .await
            .map_err(|e| store_status(&e))?;
        self.inner
            .token_keys
            .set(keys, yc_api_runtime::list::sql::nanos(now));
        Ok(())
    }

    /// Starts an operation: stores it, runs `work` in the background, and returns the
    /// operation as it starts (not done). With an idempotency key already used by the same
    /// subject for the same method, returns that operation instead (as it now stands), or, if
    /// the request differs, `INVALID_ARGUMENT`.
    pub async fn start<F, Fut>(&self, start: StartOperation, work: F) -> Result<Operation, Status>
    where
        F: FnOnce(OperationContext) -> Fut + Send + 'static,
        Fut: Future<Output = WorkResult> + Send + 'static,
    {
        self.start_with(start, None, work).await
    }

    /// [`start`](Self::start), returning only once the work has accepted the operation
    /// ([`OperationContext::accept`]) or ended: for a first step the caller must see done
    /// when the call returns (the image it creates is there, say), done by the work so that
    /// a restart resumes it. If the work ends with an error before accepting, the call
    /// answers that error (the operation is finished with it too). A repeat with an
    /// idempotency key returns the first operation without waiting.
    pub async fn start_accepted<F, Fut>(
        &self,
        start: StartOperation,
        work: F,
    ) -> Result<Operation, Status>
    where
        F: FnOnce(OperationContext) -> Fut + Send + 'static,
        Fut: Future<Output = WorkResult> + Send + 'static,
    {
        let (sender, accepted) = oneshot::channel();
        let op = self.start_with(start, Some(sender), work).await?;
        match accepted.await {
            Ok(Err(refused)) => Err(refused),
            // Accepted, or never spawned (a repeat), or the task was dropped with the runtime.
            Ok(Ok(())) | Err(_) => Ok(op),
        }
    }

    async fn start_with<F, Fut>(
        &self,
        start: StartOperation,
        accept: Option<oneshot::Sender<Result<(), Status>>>,
        work: F,
    ) -> Result<Operation, Status>
    where
        F: FnOnce(OperationContext) -> Fut + Send + 'static,
        Fut: Future<Output = WorkResult> + Send + 'static,
    {
        if let Some(key) = &start.idempotency_key
            && uuid::Uuid::parse_str(key).is_err()
        {
            return Err(yc_proto_types::validation_error(
                "idempotency-key",
                &format!("must be a UUID, not {}", yc_proto_types::quote(key)),
            ));
        }
        let now = (self.inner.clock)();
        let operation = Operation {
            id: new_id(start.id_prefix),
            description: start.description,
            created_at: Some(now),
            created_by: start.created_by,
            modified_at: Some(now),
            done: false,
            metadata: Some(start.metadata),
            result: None,
        };
        let id = operation.id.clone();
        if let Ok(mut starting) = self.inner.starting.lock() {
            starting.insert(id.clone());
        }
        let new = NewOperation {
            operation,
            method: start.method.clone(),
            resource_id: start.resource_id,
            request: start.request.clone(),
            idempotency_key: start.idempotency_key.clone(),
            owner: self.inner.owner.clone(),
        };
        let created = self.inner.store.create(new).await;
        if let Ok(Created::New(op)) = &created {
            self.spawn(op.id.clone(), start.cancel, accept, work);
        }
        if let Ok(mut starting) = self.inner.starting.lock() {
            starting.remove(&id);
        }
        match created.map_err(|e| store_status(&e))? {
            Created::New(op) => Ok(op),
            Created::Existing(record) if record.request == start.request => Ok(record.operation),
            Created::Existing(record) => Err(invalid_argument(format!(
                "idempotency-key {} was already used for a different request (operation {}); \
                 send a new key with a new request",
                start.idempotency_key.unwrap_or_default(),
                record.operation.id
            ))),
        }
    }

    /// The operation an earlier call with the same idempotency key started, if there is one:
    /// for services that must not do anything visible (store a resource) on a repeat. The
    /// same key with another request is `INVALID_ARGUMENT`, as in [`start`](Self::start).
    pub async fn find_repeat(&self, start: &StartOperation) -> Result<Option<Operation>, Status> {
        let Some(key) = &start.idempotency_key else {
            return Ok(None);
        };
        let found = self
            .inner
            .store
            .find_by_idempotency_key(&start.created_by, &start.method, key)
            .await
            .map_err(|e| store_status(&e))?;
        match found {
            None => Ok(None),
            Some(record) if record.request == start.request => Ok(Some(record.operation)),
            Some(record) => Err(invalid_argument(format!(
                "idempotency-key {key} was already used for a different request (operation {}); \
                 send a new key with a new request",
                record.operation.id
            ))),
        }
    }

    fn spawn<F, Fut>(
        &self,
        id: String,
        mode: CancelMode,
        accept: Option<oneshot::Sender<Result<(), Status>>>,
        work: F,
    ) where
        F: FnOnce(OperationContext) -> Fut + Send + 'static,
        Fut: Future<Output = WorkResult> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let ended = CancellationToken::new();
        if let Ok(mut running) = self.inner.running.lock() {
            running.insert(
                id.clone(),
                Running {
                    cancel: cancel.clone(),
                    mode,
                    ended: ended.clone(),
                },
            );
        }
        let accept: Acceptance = Arc::new(Mutex::new(accept));
        let ctx = OperationContext {
            id: id.clone(),
            store: self.inner.store.clone(),
            cancel: cancel.clone(),
            accept: accept.clone(),
        };
        let inner = self.inner.clone();
        // The work's events carry the call that started it (its request id, its caller).
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let work = AssertUnwindSafe(work(ctx)).catch_unwind();
                let outcome = tokio::select! {
                    biased;
                    () = cancel.cancelled(), if mode == CancelMode::Drop => Err(cancelled_status(&id)),
                    result = work => result.unwrap_or_else(|_| {
                        tracing::error!(operation = %id, "the work of the operation panicked");
                        Err(Status::new(tonic::Code::Internal, format!("Operation {id} failed with an internal error")))
                    }),
                };
                let refused = outcome.as_ref().err().cloned();
                inner.finish(&id, outcome).await;
                if let Ok(mut running) = inner.running.lock() {
                    running.remove(&id);
                }
                ended.cancel();
                // Work that ended without accepting: the call that waits for it answers now.
                if let Some(sender) = accept.lock().ok().and_then(|mut a| a.take()) {
                    let _ = sender.send(refused.map_or(Ok(()), Err));
                }
            },
            span,
        ));
    }

    /// The operation with this id; `NOT_FOUND` naming it when there is none.
    pub async fn get(&self, id: &str) -> Result<Operation, Status> {
        self.inner
            .store
            .get(id)
            .await
            .map_err(|e| store_status(&e))?
            .ok_or_else(|| not_found(id))
    }

    /// OperationService `Get`: the operation, if `caller` may see it (see
    /// [`Caller::may_see_operation`](Caller::may_see_operation)); else
    /// `PERMISSION_DENIED`.
    pub async fn get_as(&self, id: &str, caller: &Caller) -> Result<Operation, Status> {
        let op = self.get(id).await?;
        if caller.may_see_operation(&op.created_by) {
            Ok(op)
        } else {
            Err(yc_api_runtime::permission_denied())
        }
    }

    /// OperationService `Cancel`: [`cancel`](Self::cancel), if `caller` may see the operation.
    pub async fn cancel_as(&self, id: &str, caller: &Caller) -> Result<Operation, Status> {
        let op = self.get_as(id, caller).await?;
        self.cancel_read(op).await
    }

    /// Cancels an operation, best effort. A done operation is returned unchanged. A running
    /// one whose work runs in this process and allows it is stopped and finished with
    /// `CANCELLED`; any other is returned as it is, still running.
    pub async fn cancel(&self, id: &str) -> Result<Operation, Status> {
        self.cancel_read(self.get(id).await?).await
    }

    /// [`cancel`](Self::cancel) of an operation already read.
    async fn cancel_read(&self, op: Operation) -> Result<Operation, Status> {
        let id = op.id.as_str();
        if op.done {
            return Ok(op);
        }
        let running = self.inner.running.lock().ok().and_then(|running| {
            running
                .get(id)
                .filter(|r| r.mode != CancelMode::Never)
                .map(|r| (r.cancel.clone(), r.mode, r.ended.clone()))
        });
        let Some((token, mode, ended)) = running else {
            return Ok(op);
        };
        token.cancel();
        if mode == CancelMode::Notify {
            // The work ends itself, and its result is the operation's.
            let _ = tokio::time::timeout(CANCEL_WAIT, ended.cancelled()).await;
            return self.get(id).await;
        }
        // Finish it here rather than wait for the task: the caller sees the outcome at once,
        // and whichever finish comes first is the one that counts.
        match self.inner.finish(id, Err(cancelled_status(id))).await {
            Some(done) => Ok(done),
            None => self.get(id).await,
        }
    }

    /// Up to `limit` operations of a resource, newest first, after `cursor`.
    pub async fn list_for_resource(
        &self,
        resource_id: &str,
        limit: usize,
        cursor: Option<&OperationCursor>,
    ) -> Result<Vec<Operation>, Status> {
        self.inner
            .store
            .list_by_resource(resource_id, limit, cursor)
            .await
            .map_err(|e| store_status(&e))
    }

    /// Takes up the lease of this runner, applies the restart rule (see the module docs) to
    /// abandoned operations with `resumers`, and keeps renewing the lease and sweeping in the
    /// background while the runner lives. Call it once at start-up, before serving.
    pub async fn recover(&self, resumers: Resumers) -> Result<Recovery, Status> {
        if let Ok(mut current) = self.inner.resumers.lock() {
            *current = resumers;
        }
        self.renew().await?;
        self.refresh_token_keys().await?;
        let recovery = self.sweep().await?;
        if !self
            .inner
            .renewing
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let weak = Arc::downgrade(&self.inner);
            let every = self.inner.lease / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(inner) = weak.upgrade() else { break };
                    let runner = OperationRunner { inner };
                    if let Err(e) = runner.renew().await {
                        tracing::warn!(error = %e, "cannot renew the operation runner's lease");
                        continue;
                    }
                    if let Err(e) = runner.refresh_token_keys().await {
                        tracing::warn!(error = %e, "cannot read the page token keys");
                    }
                    if let Err(e) = runner.sweep().await {
                        tracing::warn!(error = %e, "cannot sweep abandoned operations");
                    }
                }
            });
        }
        Ok(recovery)
    }

    async fn renew(&self) -> Result<(), Status> {
        let now =
            std::time::SystemTime::try_from((self.inner.clock)()).unwrap_or(std::time::UNIX_EPOCH);
        self.inner
            .store
            .heartbeat(&self.inner.owner, Timestamp::from(now + self.inner.lease))
            .await
            .map_err(|e| store_status(&e))
    }

    /// Ends this runner's lease, for a clean shutdown: its unfinished operations are then
    /// abandoned, and the next runner to sweep finishes them at once.
    pub async fn release(&self) -> Result<(), Status> {
        self.inner
            .store
            .release(&self.inner.owner)
            .await
            .map_err(|e| store_status(&e))
    }

    /// Claims the abandoned operations and resumes or aborts each (see the module docs).
    pub async fn sweep(&self) -> Result<Recovery, Status> {
        let mut recovery = Recovery::default();
        let claimed = self
            .inner
            .store
            .claim_abandoned(&self.inner.owner, (self.inner.clock)())
            .await
            .map_err(|e| store_status(&e))?;
        let resumers = self
            .inner
            .resumers
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        for record in claimed {
            let id = record.operation.id.clone();
            let running_here = self
                .inner
                .running
                .lock()
                .is_ok_and(|running| running.contains_key(&id))
                || self
                    .inner
                    .starting
                    .lock()
                    .is_ok_and(|starting| starting.contains(&id));
            if running_here {
                continue;
            }
            match resumers.by_method.get(&record.method) {
                Some((resume, mode)) => {
                    let resume = resume.clone();
                    tracing::info!(operation = %id, method = %record.method, "resuming an interrupted operation");
                    self.spawn(id.clone(), *mode, None, move |ctx| resume(record, ctx));
                    recovery.resumed.push(id);
                }
                None => {
                    let status = Status::new(
                        tonic::Code::Aborted,
                        format!(
                            "Operation {id} was interrupted: the server stopped before it \
                             finished. Retry the call."
                        ),
                    );
                    tracing::warn!(operation = %id, method = %record.method, "aborting an interrupted operation");
                    self.inner.finish(&id, Err(status)).await;
                    recovery.aborted.push(id);
                }
            }
        }
        Ok(recovery)
    }
}

impl Inner {
    /// Finishes an operation, retrying a store that is briefly unavailable. Returns the
    /// operation as it then stands, or `None` if the store stayed unavailable; then the
    /// operation stays not done, and the restart rule finishes it.
    async fn finish(&self, id: &str, outcome: WorkResult) -> Option<Operation> {
        let result = match outcome {
            Ok(response) => operation::Result::Response(response),
            Err(error) => operation::Result::Error(error),
        };
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=6 {
            match self.store.finish(id, result.clone(), (self.clock)()).await {
                Ok(finished) => return Some(finished.operation()),
                Err(StoreError::NotFound(_)) => return None,
                Err(e) => {
                    tracing::warn!(operation = %id, attempt, error = %e, "cannot finish the operation yet");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        tracing::error!(operation = %id, "gave up finishing the operation; the next start will");
        None
    }
}

fn cancelled_status(id: &str) -> Status {
    Status::new(
        tonic::Code::Cancelled,
        format!("Operation {id} was cancelled"),
    )
}

fn invalid_argument(message: String) -> Status {
    Status::new(tonic::Code::InvalidArgument, message)
}

/// `NOT_FOUND` for an operation id.
pub(crate) fn not_found(id: &str) -> Status {
    Status::new(tonic::Code::NotFound, format!("Operation {id} not found"))
}

/// The status a caller sees for a store failure; the details go to the log.
pub(crate) fn store_status(error: &StoreError) -> Status {
    match error {
        StoreError::NotFound(id) => not_found(id),
        StoreError::Unavailable(why) => {
            tracing::error!(error = %why, "operation store unavailable");
            Status::new(
                tonic::Code::Unavailable,
                "The operation store is unavailable; retry later",
            )
        }
    }
}
