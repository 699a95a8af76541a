//! An [`OperationStore`] in memory, for tests and for embedding in a process that needs no
//! persistence.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use yc_proto_types::google::protobuf::{Any, Timestamp};
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

use crate::store::{
    Created, Finished, NewOperation, OperationCursor, OperationRecord, OperationStore, StoreError,
    set_metadata, set_result,
};
use yc_api_runtime::list::page_token::TokenKey;

/// Operations in memory, with the same indexes a database would have.
#[derive(Debug, Default)]
pub struct MemoryOperationStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<String, OperationRecord>,
    /// (resource, created_at, id): a resource's operations in time order.
    by_resource: BTreeMap<(String, Timestamp, String), ()>,
    /// (created_by, method, key) → operation id.
    idempotency: HashMap<(String, String, String), String>,
    /// Runner → end of its lease.
    leases: HashMap<String, Timestamp>,
    /// Page token keys.
    token_keys: Vec<TokenKey>,
}

impl MemoryOperationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Unavailable("a writer panicked; the store is poisoned".into()))
    }
}

#[async_trait]
impl OperationStore for MemoryOperationStore {
    async fn create(&self, new: NewOperation) -> Result<Created, StoreError> {
        let mut state = self.lock()?;
        let op = new.operation;
        if let Some(key) = new.idempotency_key {
            let slot = (op.created_by.clone(), new.method.clone(), key);
            if let Some(existing) = state.idempotency.get(&slot) {
                let record = state
                    .records
                    .get(existing)
                    .cloned()
                    .ok_or_else(|| StoreError::NotFound(existing.clone()))?;
                return Ok(Created::Existing(record));
            }
            state.idempotency.insert(slot, op.id.clone());
        }
        let created_at = op.created_at.unwrap_or_default();
        state
            .by_resource
            .insert((new.resource_id.clone(), created_at, op.id.clone()), ());
        state.records.insert(
            op.id.clone(),
            OperationRecord {
                operation: op.clone(),
                method: new.method,
                resource_id: new.resource_id,
                request: new.request,
                owner: new.owner,
            },
        );
        Ok(Created::New(op))
    }

    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        Ok(self.lock()?.records.get(id).map(|r| r.operation.clone()))
    }

    async fn find_by_idempotency_key(
        &self,
        created_by: &str,
        method: &str,
        key: &str,
    ) -> Result<Option<OperationRecord>, StoreError> {
        let state = self.lock()?;
        let slot = (created_by.to_owned(), method.to_owned(), key.to_owned());
        Ok(state
            .idempotency
            .get(&slot)
            .and_then(|id| state.records.get(id))
            .cloned())
    }

    async fn update_metadata(
        &self,
        id: &str,
        metadata: Any,
        at: Timestamp,
    ) -> Result<Operation, StoreError> {
        let mut state = self.lock()?;
        let record = state
            .records
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        if !record.operation.done {
            set_metadata(&mut record.operation, metadata, at);
        }
        Ok(record.operation.clone())
    }

    async fn finish(
        &self,
        id: &str,
        result: operation::Result,
        at: Timestamp,
    ) -> Result<Finished, StoreError> {
        let mut state = self.lock()?;
        let record = state
            .records
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        if record.operation.done {
            return Ok(Finished::Before(record.operation.clone()));
        }
        set_result(&mut record.operation, result, at);
        Ok(Finished::Now(record.operation.clone()))
    }

    async fn list_by_resource(
        &self,
        resource_id: &str,
        limit: usize,
        after: Option<&OperationCursor>,
    ) -> Result<Vec<Operation>, StoreError> {
        let state = self.lock()?;
        let low = (
            resource_id.to_owned(),
            Timestamp {
                seconds: i64::MIN,
                nanos: 0,
            },
            String::new(),
        );
        let high = match after {
            Some(cursor) => std::ops::Bound::Excluded((
                resource_id.to_owned(),
                cursor.created_at,
                cursor.id.clone(),
            )),
            None => std::ops::Bound::Excluded((
                resource_id.to_owned(),
                Timestamp {
                    seconds: i64::MAX,
                    nanos: i32::MAX,
                },
                String::new(),
            )),
        };
        Ok(state
            .by_resource
            .range((std::ops::Bound::Included(low), high))
            .rev()
            .take(limit)
            .filter_map(|((_, _, id), ())| state.records.get(id).map(|r| r.operation.clone()))
            .collect())
    }

    async fn unfinished(&self) -> Result<Vec<OperationRecord>, StoreError> {
        let state = self.lock()?;
        let mut out: Vec<OperationRecord> = state
            .records
            .values()
            .filter(|r| !r.operation.done)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.operation.id.cmp(&b.operation.id));
        Ok(out)
    }

    async fn heartbeat(&self, owner: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        self.lock()?.leases.insert(owner.to_owned(), expires_at);
        Ok(())
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        self.lock()?.leases.remove(owner);
        Ok(())
    }

    async fn claim_abandoned(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let mut state = self.lock()?;
        let live: Vec<String> = state
            .leases
            .iter()
            .filter(|(_, expires)| **expires > now)
            .map(|(runner, _)| runner.clone())
            .collect();
        let mut claimed: Vec<OperationRecord> = state
            .records
            .values_mut()
            .filter(|r| !r.operation.done && (r.owner == owner || !live.contains(&r.owner)))
            .map(|r| {
                r.owner = owner.to_owned();
                r.clone()
            })
            .collect();
        claimed.sort_by(|a, b| a.operation.id.cmp(&b.operation.id));
        Ok(claimed)
    }

    async fn token_keys(&self, now: Timestamp) -> Result<Vec<TokenKey>, StoreError> {
        let mut state = self.lock()?;
        let now = yc_api_runtime::list::sql::nanos(now);
        let (rotate, lifetime) = key_ages(now);
        let newest = state.token_keys.iter().map(|k| (k.created_at, k.id)).max();
        if newest.is_none_or(|(created_at, _)| created_at < rotate) {
            let id = newest.map_or(1, |(_, id)| id + 1);
            state.token_keys.push(TokenKey::generate(id, now));
        }
        let newest = state.token_keys.iter().map(|k| k.id).max();
        state
            .token_keys
            .retain(|k| k.created_at >= lifetime || Some(k.id) == newest);
        Ok(state.token_keys.clone())
    }
}

/// Before which time (nanoseconds) the newest key is due for rotation, and before which keys
/// are dropped, at `now`.
pub(crate) fn key_ages(now: i64) -> (i64, i64) {
    let nanos = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    (
        now.saturating_sub(nanos(yc_api_runtime::list::page_token::KEY_ROTATION)),
        now.saturating_sub(nanos(yc_api_runtime::list::page_token::KEY_LIFETIME)),
    )
}
