//! The runner over the in-memory store: how operations start, progress, fail, get cancelled,
//! dedupe by idempotency key, page, and survive a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prost::Message;
use tokio::sync::oneshot;
use yc_operations::{
    CancelMode, Created, MemoryOperationStore, NewOperation, OperationCursor, OperationRunner,
    OperationStore, Resumers, StartOperation, TypedOperation,
};
use yc_proto_types::google::protobuf::{Any, Empty, Timestamp};
use yc_proto_types::google::rpc::{BadRequest, Status, bad_request::FieldViolation};
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageMetadata, CreateImageRequest, DeleteImageMetadata, DeleteImageRequest, Image,
};
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

const CREATE: &str = "yandex.cloud.compute.v1.ImageService.Create";
const DELETE: &str = "yandex.cloud.compute.v1.ImageService.Delete";

fn runner() -> OperationRunner {
    OperationRunner::new(Arc::new(MemoryOperationStore::new()))
}

fn create_start(name: &str) -> StartOperation {
    let request = CreateImageRequest {
        folder_id: "b1gfolder".into(),
        name: name.into(),
        ..Default::default()
    };
    StartOperation::new(
        "fd8",
        CREATE,
        "Create image",
        "fd8image",
        &CreateImageMetadata {
            image_id: "fd8image".into(),
        },
        &request,
    )
    .created_by("ajesubject")
}

/// Polls the runner until the operation is done.
async fn done(runner: &OperationRunner, id: &str) -> Operation {
    for _ in 0..500 {
        let op = runner
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e}"));
        if op.done {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("operation {id} did not finish");
}

fn error_of(op: &Operation) -> Status {
    match &op.result {
        Some(operation::Result::Error(status)) => status.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn work_runs_in_the_background_and_finishes_with_its_response() {
    let runner = runner();
    let (release, released) = oneshot::channel::<()>();
    let op = runner
        .start(create_start("a"), |ctx| async move {
            ctx.set_metadata(&CreateImageMetadata {
                image_id: "fd8progress".into(),
            })
            .await?;
            let _ = released.await;
            Ok(Any::from_msg(&Image {
                id: "fd8image".into(),
                ..Default::default()
            }))
        })
        .await
        .unwrap();
    assert!(!op.done);
    assert!(op.id.starts_with("fd8") && op.id.len() == 20, "{}", op.id);
    assert_eq!(op.created_by, "ajesubject");
    assert_eq!(op.description, "Create image");
    assert_eq!(op.created_at, op.modified_at);

    // The request has returned; the work is still running and has reported progress.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let running = runner.get(&op.id).await.unwrap();
    assert!(!running.done);
    let typed = TypedOperation::<CreateImageMetadata, Image>::from_operation(&running).unwrap();
    assert_eq!(
        typed.metadata.map(|m| m.image_id).as_deref(),
        Some("fd8progress")
    );

    let _ = release.send(());
    let finished = done(&runner, &op.id).await;
    let typed = TypedOperation::<CreateImageMetadata, Image>::from_operation(&finished).unwrap();
    assert_eq!(
        typed.result.map(|r| r.map(|i| i.id)),
        Some(Ok("fd8image".into()))
    );
    assert!(finished.modified_at >= finished.created_at);
    assert_eq!(finished.created_at, op.created_at);
}

#[tokio::test]
async fn failed_work_finishes_with_its_status_and_details() {
    let runner = runner();
    let op = runner
        .start(create_start("b"), |_| async move {
            Err(
                Status::new(tonic::Code::FailedPrecondition, "source image is not READY")
                    .with_detail(&BadRequest {
                        field_violations: vec![FieldViolation {
                            field: "image_id".into(),
                            description: "not READY".into(),
                            ..Default::default()
                        }],
                    }),
            )
        })
        .await
        .unwrap();
    let status = error_of(&done(&runner, &op.id).await);
    assert_eq!(status.grpc_code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.message, "source image is not READY");
    assert_eq!(
        status
            .detail::<BadRequest>()
            .map(|b| b.field_violations.len()),
        Some(1)
    );
}

#[tokio::test]
async fn work_that_panics_finishes_with_internal() {
    let runner = runner();
    let op = runner
        .start(create_start("c"), |_| async move {
            let items: Vec<u8> = Vec::new();
            // An out-of-bounds index: a bug in a service must not leave the operation running.
            let _ = items[usize::from(items.is_empty())];
            Ok(Any::from_msg(&Empty {}))
        })
        .await
        .unwrap();
    let status = error_of(&done(&runner, &op.id).await);
    assert_eq!(status.grpc_code(), tonic::Code::Internal);
}

#[tokio::test]
async fn cancel_stops_cancellable_work_and_finishes_once() {
    let runner = runner();
    let finished_work = Arc::new(AtomicUsize::new(0));
    let counter = finished_work.clone();
    let op = runner
        .start(create_start("d").cancellable(true), move |_| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Any::from_msg(&Empty {}))
        })
        .await
        .unwrap();
    let cancelled = runner.cancel(&op.id).await.unwrap();
    assert!(cancelled.done);
    assert_eq!(error_of(&cancelled).grpc_code(), tonic::Code::Cancelled);

    // The work is gone, and the result does not change again.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let later = runner.get(&op.id).await.unwrap();
    assert_eq!(later, cancelled);
    assert_eq!(finished_work.load(Ordering::SeqCst), 0);

    // Cancelling a finished operation returns it unchanged.
    assert_eq!(runner.cancel(&op.id).await.unwrap(), cancelled);
}

#[tokio::test]
async fn start_accepted_returns_once_the_work_accepts_or_with_its_refusal() {
    let runner = runner();
    let (release, released) = oneshot::channel::<()>();
    let first_step = Arc::new(AtomicUsize::new(0));
    let step = first_step.clone();
    let op = runner
        .start_accepted(create_start("a"), move |ctx| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            step.fetch_add(1, Ordering::SeqCst);
            ctx.accept();
            let _ = released.await;
            Ok(Any::from_msg(&Empty {}))
        })
        .await
        .unwrap();
    // The first step is done when the call returns, the rest is not.
    assert_eq!(first_step.load(Ordering::SeqCst), 1);
    assert!(!op.done);
    let _ = release.send(());
    assert!(done(&runner, &op.id).await.result.is_some());

    // Work that fails before accepting: the call answers its error, and the operation is
    // finished with it.
    let refused = runner
        .start_accepted(create_start("b"), |_ctx| async move {
            Err(Status::new(tonic::Code::AlreadyExists, "taken"))
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("the refusal was not answered"));
    assert_eq!(refused.grpc_code(), tonic::Code::AlreadyExists);

    // A repeat with the idempotency key of an accepted operation gets it without waiting.
    let key = uuid_key();
    let start = || create_start("c").idempotency_key(Some(key.clone()));
    let first = runner
        .start_accepted(start(), |ctx| async move {
            ctx.accept();
            std::future::pending::<()>().await;
            Ok(Any::from_msg(&Empty {}))
        })
        .await
        .unwrap();
    let again = runner
        .start_accepted(start(), |_ctx| async move {
            panic!("a repeat ran its work");
        })
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
}

fn uuid_key() -> String {
    "9a0a8b7e-7d3c-4a57-9a43-6c1e3f1d2b10".to_owned()
}

#[tokio::test]
async fn cancel_tells_notified_work_and_takes_the_result_it_ends_with() {
    let runner = runner();
    let tidied = Arc::new(AtomicUsize::new(0));
    let tidy = tidied.clone();
    let op = runner
        .start(
            create_start("n").cancel_mode(CancelMode::Notify),
            move |ctx| async move {
                ctx.cancelled().await;
                // Tidying up takes a while; Cancel waits for it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                tidy.fetch_add(1, Ordering::SeqCst);
                Err(Status::new(
                    tonic::Code::Cancelled,
                    "stopped, image left in ERROR",
                ))
            },
        )
        .await
        .unwrap();
    let cancelled = runner.cancel(&op.id).await.unwrap();
    assert_eq!(tidied.load(Ordering::SeqCst), 1);
    assert!(cancelled.done);
    let error = error_of(&cancelled);
    assert_eq!(error.grpc_code(), tonic::Code::Cancelled);
    assert_eq!(error.message, "stopped, image left in ERROR");
}

/// The memory store, slow to answer `create` after storing the operation: a sweep can run in
/// between, as it can on a busy server.
struct SlowCreate(MemoryOperationStore);

#[async_trait::async_trait]
impl OperationStore for SlowCreate {
    async fn create(&self, new: NewOperation) -> Result<Created, yc_operations::StoreError> {
        let created = self.0.create(new).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        created
    }
    async fn get(&self, id: &str) -> Result<Option<Operation>, yc_operations::StoreError> {
        self.0.get(id).await
    }
    async fn find_by_idempotency_key(
        &self,
        created_by: &str,
        method: &str,
        key: &str,
    ) -> Result<Option<yc_operations::OperationRecord>, yc_operations::StoreError> {
        self.0
            .find_by_idempotency_key(created_by, method, key)
            .await
    }
    async fn update_metadata(
        &self,
        id: &str,
        metadata: Any,
        at: Timestamp,
    ) -> Result<Operation, yc_operations::StoreError> {
        self.0.update_metadata(id, metadata, at).await
    }
    async fn finish(
        &self,
        id: &str,
        result: operation::Result,
        at: Timestamp,
    ) -> Result<yc_operations::Finished, yc_operations::StoreError> {
        self.0.finish(id, result, at).await
    }
    async fn list_by_resource(
        &self,
        resource_id: &str,
        limit: usize,
        after: Option<&OperationCursor>,
    ) -> Result<Vec<Operation>, yc_operations::StoreError> {
        self.0.list_by_resource(resource_id, limit, after).await
    }
    async fn unfinished(
        &self,
    ) -> Result<Vec<yc_operations::OperationRecord>, yc_operations::StoreError> {
        self.0.unfinished().await
    }
    async fn heartbeat(
        &self,
        owner: &str,
        expires_at: Timestamp,
    ) -> Result<(), yc_operations::StoreError> {
        self.0.heartbeat(owner, expires_at).await
    }
    async fn release(&self, owner: &str) -> Result<(), yc_operations::StoreError> {
        self.0.release(owner).await
    }
    async fn claim_abandoned(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<Vec<yc_operations::OperationRecord>, yc_operations::StoreError> {
        self.0.claim_abandoned(owner, now).await
    }
    async fn token_keys(
        &self,
        now: Timestamp,
    ) -> Result<Vec<yc_api_runtime::list::TokenKey>, yc_operations::StoreError> {
        self.0.token_keys(now).await
    }
}

#[tokio::test]
async fn a_sweep_while_an_operation_is_being_started_does_not_run_it_twice() {
    let runner = OperationRunner::new(Arc::new(SlowCreate(MemoryOperationStore::new())));
    let resumed = Arc::new(AtomicUsize::new(0));
    let counter = resumed.clone();
    runner
        .recover(Resumers::new().add(CREATE, false, move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(Any::from_msg(&Empty {})) }
        }))
        .await
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let work = ran.clone();
    let sweeper = runner.clone();
    let sweep = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sweeper.sweep().await
    });
    let op = runner
        .start(create_start("twice"), move |_| async move {
            work.fetch_add(1, Ordering::SeqCst);
            Ok(Any::from_msg(&Empty {}))
        })
        .await
        .unwrap();
    let swept = sweep.await.unwrap().unwrap();
    done(&runner, &op.id).await;
    assert!(swept.resumed.is_empty(), "{swept:?}");
    assert_eq!(
        (ran.load(Ordering::SeqCst), resumed.load(Ordering::SeqCst)),
        (1, 0)
    );
}

#[tokio::test]
async fn cancel_leaves_work_that_cannot_stop_running() {
    let runner = runner();
    let (release, released) = oneshot::channel::<()>();
    let op = runner
        .start(create_start("e"), |_| async move {
            let _ = released.await;
            Ok(Any::from_msg(&Image::default()))
        })
        .await
        .unwrap();
    let after_cancel = runner.cancel(&op.id).await.unwrap();
    assert!(!after_cancel.done);
    let _ = release.send(());
    let finished = done(&runner, &op.id).await;
    assert!(matches!(
        finished.result,
        Some(operation::Result::Response(_))
    ));
}

#[tokio::test]
async fn unknown_operations_are_not_found_by_id() {
    let runner = runner();
    for result in [
        runner.get("fd8nosuchoperation00").await,
        runner.cancel("fd8nosuchoperation00").await,
    ] {
        let status = result.err().unwrap_or_default();
        assert_eq!(status.grpc_code(), tonic::Code::NotFound);
        assert_eq!(status.message, "Operation fd8nosuchoperation00 not found");
    }
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_operation_for_the_same_request() {
    let runner = runner();
    let runs = Arc::new(AtomicUsize::new(0));
    let key = Some("0f3c1d52-8a1b-4e0e-9d7c-2b6b8f4e5a10".to_owned());
    let start = |name: &str, subject: &str| {
        create_start(name)
            .created_by(subject)
            .idempotency_key(key.clone())
    };
    let work = |runs: Arc<AtomicUsize>| {
        move |_| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(Any::from_msg(&Image::default()))
        }
    };

    let first = runner
        .start(start("same", "ajeone"), work(runs.clone()))
        .await;
    let first = first.unwrap();
    done(&runner, &first.id).await;
    let again = runner
        .start(start("same", "ajeone"), work(runs.clone()))
        .await;
    let again = again.unwrap();
    assert_eq!(again.id, first.id);
    assert!(again.done, "the repeat sees the operation as it now stands");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the work ran once");

    // The same key with another request is an error that says so.
    let conflict = runner
        .start(start("other", "ajeone"), work(runs.clone()))
        .await;
    let status = conflict.err().unwrap_or_default();
    assert_eq!(status.grpc_code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message
            .contains("already used for a different request"),
        "{}",
        status.message
    );

    // Keys belong to a subject and a method.
    let other_subject = runner
        .start(start("same", "ajetwo"), work(runs.clone()))
        .await;
    assert_ne!(other_subject.map(|o| o.id).unwrap_or_default(), first.id);

    let malformed = runner
        .start(
            create_start("x").idempotency_key(Some("not-a-uuid".into())),
            work(runs),
        )
        .await;
    let status = malformed.err().unwrap_or_default();
    assert_eq!(
        status.message,
        "Request validation error: idempotency-key: must be a UUID, not \"not-a-uuid\""
    );
}

#[tokio::test]
async fn operations_of_a_resource_page_newest_first_without_repeats() {
    let runner = runner();
    let mut ids = Vec::new();
    for i in 0..7 {
        let request = DeleteImageRequest {
            image_id: format!("img{i}"),
        };
        let start = StartOperation::new(
            "fd8",
            DELETE,
            "Delete image",
            "fd8resource",
            &DeleteImageMetadata {
                image_id: "fd8resource".into(),
            },
            &request,
        );
        let op = runner
            .start(start, |_| async { Ok(Any::from_msg(&Empty {})) })
            .await;
        ids.push(op.unwrap().id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<OperationCursor> = None;
    loop {
        let page = runner
            .list_for_resource("fd8resource", 3, cursor.as_ref())
            .await;
        let page = page.unwrap();
        if page.is_empty() {
            break;
        }
        // Something new arrives during the walk; it is newer than the cursor, so not repeated.
        if seen.is_empty() {
            let request = DeleteImageRequest {
                image_id: "late".into(),
            };
            let start = StartOperation::new(
                "fd8",
                DELETE,
                "Delete image",
                "fd8resource",
                &Empty {},
                &request,
            );
            let _ = runner
                .start(start, |_| async { Ok(Any::from_msg(&Empty {})) })
                .await;
        }
        cursor = page.last().map(OperationCursor::after);
        seen.extend(page.into_iter().map(|op| op.id));
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let other = runner
        .list_for_resource("fd8other", 10, None)
        .await
        .unwrap_or_default();
    assert!(other.is_empty());
}

async fn leave_running(store: &MemoryOperationStore, id: &str, method: &str, owner: &str) {
    let created = store
        .create(NewOperation {
            operation: Operation {
                id: id.into(),
                ..Default::default()
            },
            method: method.into(),
            resource_id: "fd8image".into(),
            request: CreateImageRequest {
                name: "resumed".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            idempotency_key: None,
            owner: owner.into(),
        })
        .await;
    assert!(matches!(created, Ok(Created::New(_))));
}

#[tokio::test]
async fn on_restart_unfinished_operations_are_resumed_or_aborted() {
    let store = Arc::new(MemoryOperationStore::new());
    // What a process left behind when it died: two operations still running, and no lease.
    leave_running(&store, "fd8resumable00000000", CREATE, "rundead").await;
    leave_running(&store, "fd8orphan00000000000", DELETE, "rundead").await;
    // A replica that is alive holds its lease; its work is not taken over.
    let alive_until = Timestamp::from(std::time::SystemTime::now() + Duration::from_secs(60));
    store.heartbeat("runalive", alive_until).await.unwrap();
    leave_running(&store, "fd8alive000000000000", DELETE, "runalive").await;

    let runner = OperationRunner::new(store.clone());
    let resumers = Resumers::new().add(CREATE, false, |record, _ctx| async move {
        let request = CreateImageRequest::decode(record.request.as_slice())
            .map_err(|e| Status::new(tonic::Code::Internal, e.to_string()))?;
        Ok(Any::from_msg(&Image {
            name: request.name,
            ..Default::default()
        }))
    });
    let recovery = runner.recover(resumers).await.unwrap();
    assert_eq!(recovery.resumed, ["fd8resumable00000000"]);
    assert_eq!(recovery.aborted, ["fd8orphan00000000000"]);

    let resumed = done(&runner, "fd8resumable00000000").await;
    let image = TypedOperation::<Empty, Image>::from_operation(&resumed)
        .unwrap()
        .result;
    assert_eq!(image.map(|r| r.map(|i| i.name)), Some(Ok("resumed".into())));

    let aborted = error_of(&done(&runner, "fd8orphan00000000000").await);
    assert_eq!(aborted.grpc_code(), tonic::Code::Aborted);
    assert!(
        aborted
            .message
            .contains("the server stopped before it finished"),
        "{}",
        aborted.message
    );

    let left: Vec<String> = store
        .unfinished()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.operation.id)
        .collect();
    assert_eq!(
        left,
        ["fd8alive000000000000"],
        "the live replica keeps its operation"
    );

    // When that replica shuts down cleanly, the next sweep finishes its operation at once.
    store.release("runalive").await.unwrap();
    let swept = runner.sweep().await.unwrap();
    assert_eq!(swept.aborted, ["fd8alive000000000000"]);
    assert!(store.unfinished().await.unwrap_or_default().is_empty());
}

/// A clock that moves with tokio's time, which these tests pause: leases run out without the
/// test waiting for them.
fn tokio_clock() -> yc_operations::Clock {
    let base = std::time::SystemTime::now();
    let start = tokio::time::Instant::now();
    Arc::new(move || Timestamp::from(base + start.elapsed()))
}

#[tokio::test(start_paused = true)]
async fn operations_of_a_runner_whose_lease_runs_out_are_taken_over() {
    let store = Arc::new(MemoryOperationStore::new());
    let clock = tokio_clock();
    let lease = Duration::from_secs(30);
    let crashed = OperationRunner::with_clock(store.clone(), lease, clock.clone());
    crashed.recover(Resumers::new()).await.unwrap();
    // The crashed runner's process is gone: its lease is never renewed again.
    leave_running(&store, "fd8leftbehind0000000", DELETE, crashed.owner()).await;
    drop(crashed);

    let survivor = OperationRunner::with_clock(store.clone(), lease, clock);
    let first = survivor.recover(Resumers::new()).await.unwrap();
    assert!(
        first.aborted.is_empty(),
        "the lease of the crashed runner still runs"
    );
    // Just before the lease runs out, the operation is still the crashed runner's.
    tokio::time::sleep(lease - Duration::from_secs(1)).await;
    let op = survivor.get("fd8leftbehind0000000").await.unwrap();
    assert!(!op.done, "taken over before the lease ran out");
    // The lease runs out; the survivor's own renewals sweep and finish the operation.
    tokio::time::sleep(lease / 2).await;
    let op = survivor.get("fd8leftbehind0000000").await.unwrap();
    assert!(op.done);
    assert_eq!(error_of(&op).grpc_code(), tonic::Code::Aborted);
}
