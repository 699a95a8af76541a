//! Waiting for an operation: poll `OperationService.Get` with exponential backoff until it is
//! done, then hand back its typed response or its error.
//!
//! Only polling is retried (on `UNAVAILABLE` and `DEADLINE_EXCEEDED`, within the timeout);
//! the mutating call that started the operation never is, since without its idempotency key a
//! repeat would start a second operation.

use std::fmt;
use std::time::Duration;

use futures_util::Stream;
use prost::Name;
use tokio::time::Instant;
use yc_proto_types::google::protobuf::Any;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::operation::Operation;

use crate::client::OperationSource;
use crate::typed::{TypedOperation, UnpackError};

/// How a waiter polls.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitPolicy {
    /// The first pause between polls.
    pub initial_interval: Duration,
    /// The longest pause between polls.
    pub max_interval: Duration,
    /// How much each pause grows over the one before.
    pub multiplier: f64,
    /// How long to wait in all; `None` waits as long as it takes.
    pub timeout: Option<Duration>,
    /// How many NOT_FOUND answers in a row to take as "not visible yet" (a replica that has
    /// not seen the operation right after it was created) before giving up.
    pub not_found_tolerance: u32,
}

impl Default for WaitPolicy {
    /// 250 ms growing by 1.5× up to 5 s, for at most 30 minutes, tolerating 3 NOT_FOUNDs.
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(250),
            max_interval: Duration::from_secs(5),
            multiplier: 1.5,
            timeout: Some(Duration::from_secs(30 * 60)),
            not_found_tolerance: 3,
        }
    }
}

/// Why waiting did not give a response.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitError {
    /// The operation finished with this error.
    Failed(Status),
    /// The timeout passed first; the operation as last seen, if it was seen at all.
    Timeout(Option<Box<Operation>>),
    /// The operation does not exist (NOT_FOUND beyond the tolerance).
    NotFound(String),
    /// Polling failed with an error that retrying would not cure.
    Poll(Status),
    /// The metadata or response is not of the expected type.
    Unpack(UnpackError),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Failed(status) => write!(f, "the operation failed: {status}"),
            WaitError::Timeout(Some(op)) => {
                write!(f, "timed out waiting for operation {}", op.id)
            }
            WaitError::Timeout(None) => write!(f, "timed out before the operation was seen"),
            WaitError::NotFound(id) => write!(f, "operation {id} not found"),
            WaitError::Poll(status) => write!(f, "polling the operation failed: {status}"),
            WaitError::Unpack(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for WaitError {}

impl From<UnpackError> for WaitError {
    fn from(e: UnpackError) -> Self {
        WaitError::Unpack(e)
    }
}

impl WaitError {
    /// The `google.rpc.Status` this error amounts to, for reporting.
    pub fn status(&self) -> Status {
        match self {
            WaitError::Failed(s) | WaitError::Poll(s) => s.clone(),
            WaitError::Timeout(_) => Status::new(tonic::Code::DeadlineExceeded, self.to_string()),
            WaitError::NotFound(_) => Status::new(tonic::Code::NotFound, self.to_string()),
            WaitError::Unpack(_) => Status::new(tonic::Code::Internal, self.to_string()),
        }
    }
}

/// Waits for operations read from `S`: gRPC ([`OperationServiceClient`]) or REST
/// ([`crate::RestOperationSource`]).
///
/// [`OperationServiceClient`]: yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient
#[derive(Debug, Clone)]
pub struct OperationWaiter<S> {
    source: S,
    policy: WaitPolicy,
}

impl<S: OperationSource> OperationWaiter<S> {
    /// A waiter with the default policy.
    pub fn new(source: S) -> Self {
        Self {
            source,
            policy: WaitPolicy::default(),
        }
    }

    /// The same waiter with another policy.
    pub fn with_policy(mut self, policy: WaitPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where the waiter reads operations from.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Waits until `op` is done and returns it.
    pub async fn wait_done(&self, op: Operation) -> Result<Operation, WaitError> {
        if op.done {
            return Ok(op);
        }
        let mut poller = Poller::new(&op.id, &self.policy, Some(op.clone()), false);
        loop {
            let current = poller.poll(&self.source).await?;
            if current.done {
                return Ok(current);
            }
        }
    }

    /// Waits until `op` is done and returns its response as `R`, or its error as
    /// [`WaitError::Failed`].
    pub async fn wait<R: Name + Default>(&self, op: Operation) -> Result<R, WaitError> {
        let done = self.wait_done(op).await?;
        response_of::<R>(&done)
    }

    /// Waits for the operation with this id, which may not be visible yet.
    pub async fn wait_id<R: Name + Default>(&self, id: &str) -> Result<R, WaitError> {
        let mut poller = Poller::new(id, &self.policy, None, true);
        loop {
            let current = poller.poll(&self.source).await?;
            if current.done {
                return response_of::<R>(&current);
            }
        }
    }

    /// The operation as it progresses: an item when it is first seen and whenever its
    /// metadata or result changes, the last one done. An error ends the stream.
    pub fn watch<M, R>(
        &self,
        op: Operation,
    ) -> impl Stream<Item = Result<TypedOperation<M, R>, WaitError>> + '_
    where
        M: Name + Default,
        R: Name + Default,
    {
        struct State<'a, S> {
            source: &'a S,
            poller: Poller,
            first: Option<Operation>,
            seen: Option<(Option<Any>, bool, bool)>,
            over: bool,
        }
        let state = State {
            source: &self.source,
            poller: Poller::new(&op.id, &self.policy, Some(op.clone()), false),
            first: Some(op),
            seen: None,
            over: false,
        };
        futures_util::stream::unfold(state, |mut state| async move {
            if state.over {
                return None;
            }
            loop {
                let op = match state.first.take() {
                    Some(op) => op,
                    None => match state.poller.poll(state.source).await {
                        Ok(op) => op,
                        Err(e) => {
                            state.over = true;
                            return Some((Err(e), state));
                        }
                    },
                };
                let key = (op.metadata.clone(), op.done, op.result.is_some());
                if state.seen.as_ref() == Some(&key) {
                    continue;
                }
                state.seen = Some(key);
                let item = TypedOperation::<M, R>::from_operation(&op).map_err(WaitError::from);
                state.over = op.done || item.is_err();
                return Some((item, state));
            }
        })
    }
}

fn response_of<R: Name + Default>(done: &Operation) -> Result<R, WaitError> {
    use yc_proto_types::yandex::cloud::operation::operation::Result as Outcome;
    match &done.result {
        Some(Outcome::Response(any)) => any.to_msg::<R>().map_err(|_| {
            WaitError::Unpack(UnpackError {
                operation_id: done.id.clone(),
                field: "response",
                expected: R::full_name(),
                actual: any.type_url.clone(),
            })
        }),
        Some(Outcome::Error(status)) => Err(WaitError::Failed(status.clone())),
        None => Err(WaitError::Failed(Status::new(
            tonic::Code::Unknown,
            format!("operation {} is done but carries no result", done.id),
        ))),
    }
}

/// Polls one operation with backoff, within the timeout.
struct Poller {
    id: String,
    policy: WaitPolicy,
    deadline: Option<Instant>,
    delay: Duration,
    /// Poll without pausing first (waiting by id, before the operation was ever seen).
    immediate: bool,
    not_found: u32,
    last: Option<Operation>,
}

impl Poller {
    fn new(id: &str, policy: &WaitPolicy, last: Option<Operation>, immediate: bool) -> Self {
        Self {
            id: id.to_owned(),
            policy: policy.clone(),
            deadline: policy.timeout.map(|t| Instant::now() + t),
            delay: policy.initial_interval,
            immediate,
            not_found: 0,
            last,
        }
    }

    async fn poll<S: OperationSource + ?Sized>(
        &mut self,
        source: &S,
    ) -> Result<Operation, WaitError> {
        loop {
            if !std::mem::take(&mut self.immediate) {
                let pause = self.delay;
                if let Some(deadline) = self.deadline
                    && Instant::now() + pause > deadline
                {
                    tokio::time::sleep_until(deadline).await;
                    return Err(WaitError::Timeout(self.last.take().map(Box::new)));
                }
                tokio::time::sleep(pause).await;
                self.delay = self
                    .delay
                    .mul_f64(self.policy.multiplier.max(1.0))
                    .min(self.policy.max_interval);
            }
            match source.get_operation(&self.id).await {
                Ok(op) => {
                    self.not_found = 0;
                    self.last = Some(op.clone());
                    return Ok(op);
                }
                Err(status) => match status.grpc_code() {
                    tonic::Code::NotFound if self.not_found < self.policy.not_found_tolerance => {
                        self.not_found += 1;
                    }
                    tonic::Code::NotFound => return Err(WaitError::NotFound(self.id.clone())),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                        tracing::debug!(operation = %self.id, error = %status, "polling again after a transient error");
                    }
                    _ => return Err(WaitError::Poll(status)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::OperationSource;
    use yc_proto_types::google::protobuf::Empty;

    /// A source that answers from a script, one answer per poll, and notes when it was asked
    /// (in tokio's time, which these tests pause).
    struct Scripted {
        answers: Mutex<Vec<Result<Operation, Status>>>,
        asked: Mutex<Vec<Duration>>,
        start: Instant,
    }

    impl Scripted {
        fn new(mut answers: Vec<Result<Operation, Status>>) -> Self {
            answers.reverse();
            Self {
                answers: Mutex::new(answers),
                asked: Mutex::new(Vec::new()),
                start: Instant::now(),
            }
        }

        fn asked_ms(&self) -> Vec<u128> {
            self.asked
                .lock()
                .unwrap()
                .iter()
                .map(Duration::as_millis)
                .collect()
        }
    }

    #[async_trait::async_trait]
    impl OperationSource for Scripted {
        async fn get_operation(&self, _id: &str) -> Result<Operation, Status> {
            self.asked.lock().unwrap().push(self.start.elapsed());
            self.answers
                .lock()
                .unwrap()
                .pop()
                .unwrap_or_else(|| Err(Status::new(tonic::Code::Internal, "no more answers")))
        }
    }

    fn running() -> Operation {
        Operation {
            id: "op1".into(),
            ..Default::default()
        }
    }

    fn done() -> Operation {
        Operation {
            id: "op1".into(),
            done: true,
            result: Some(
                yc_proto_types::yandex::cloud::operation::operation::Result::Response(
                    Any::from_msg(&Empty {}),
                ),
            ),
            ..Default::default()
        }
    }

    fn policy() -> WaitPolicy {
        WaitPolicy {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(400),
            multiplier: 2.0,
            timeout: Some(Duration::from_secs(10)),
            not_found_tolerance: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_grow_to_the_cap_and_transient_errors_are_retried() {
        let unavailable = Status::new(tonic::Code::Unavailable, "restarting");
        let source = Scripted::new(vec![
            Ok(running()),
            Err(unavailable),
            Ok(running()),
            Ok(running()),
            Ok(done()),
        ]);
        let waiter = OperationWaiter::new(source).with_policy(policy());
        let response: Empty = waiter.wait(running()).await.unwrap();
        assert_eq!(response, Empty {});
        // 100, then 200, 400, 400 (the cap), 400 between polls.
        assert_eq!(waiter.source().asked_ms(), [100, 300, 700, 1100, 1500]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timeout_ends_the_wait_at_its_time_with_the_last_operation_seen() {
        let source = Scripted::new((0..100).map(|_| Ok(running())).collect());
        let waiter = OperationWaiter::new(source).with_policy(WaitPolicy {
            timeout: Some(Duration::from_millis(1000)),
            ..policy()
        });
        let started = Instant::now();
        let error = waiter.wait::<Empty>(running()).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
        assert!(matches!(error, WaitError::Timeout(Some(op)) if op.id == "op1"));
    }

    #[tokio::test(start_paused = true)]
    async fn not_found_is_tolerated_only_so_many_times_in_a_row() {
        let missing = || Err(Status::new(tonic::Code::NotFound, "not yet"));
        let seen_late = Scripted::new(vec![missing(), missing(), Ok(done())]);
        let waiter = OperationWaiter::new(seen_late).with_policy(policy());
        assert!(waiter.wait::<Empty>(running()).await.is_ok());

        let never = Scripted::new(vec![missing(), missing(), missing()]);
        let waiter = OperationWaiter::new(never).with_policy(policy());
        let error = waiter.wait::<Empty>(running()).await.unwrap_err();
        assert_eq!(error, WaitError::NotFound("op1".into()));

        let refused = Scripted::new(vec![Err(Status::new(tonic::Code::PermissionDenied, "no"))]);
        let waiter = OperationWaiter::new(refused).with_policy(policy());
        let error = waiter.wait::<Empty>(running()).await.unwrap_err();
        assert!(
            matches!(error, WaitError::Poll(s) if s.grpc_code() == tonic::Code::PermissionDenied)
        );
    }
}
