//! The [`OperationStore`] on PostgreSQL, for several replicas sharing one database.
//!
//! The same tables as the SQLite store. What must hold across replicas is done by the
//! database in one statement or one transaction: an idempotency key is taken by an
//! `INSERT … ON CONFLICT DO NOTHING`, an operation is changed under `SELECT … FOR UPDATE` (so
//! it finishes once), and abandoned operations are claimed by one `UPDATE … RETURNING`.

use async_trait::async_trait;
use prost::Message;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use yc_proto_types::google::protobuf::{Any, Timestamp};
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

use crate::db::Db;
use crate::query::sql::nanos;
use crate::store::{
    Created, Finished, NewOperation, OperationCursor, OperationRecord, OperationStore, StoreError,
    set_metadata, set_result,
};

const COMPONENT: &str = "operations";
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS op_operations (
        id TEXT PRIMARY KEY,
        resource_id TEXT NOT NULL,
        method TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        done BOOLEAN NOT NULL,
        owner TEXT NOT NULL,
        request BYTEA NOT NULL,
        body BYTEA NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS op_operations_resource ON op_operations (resource_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS op_operations_unfinished ON op_operations (owner) WHERE NOT done",
    "CREATE TABLE IF NOT EXISTS op_idempotency (
        created_by TEXT NOT NULL,
        method TEXT NOT NULL,
        key TEXT NOT NULL,
        operation_id TEXT NOT NULL,
        PRIMARY KEY (created_by, method, key)
    )",
    "CREATE TABLE IF NOT EXISTS op_leases (owner TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
];

const RECORD_COLUMNS: &str = "body, method, resource_id, request, owner";

/// Operations in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOperationStore {
    pool: PgPool,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(body: &[u8]) -> Result<Operation, StoreError> {
    Operation::decode(body)
        .map_err(|e| unavailable(format!("a stored operation does not decode: {e}")))
}

fn record(row: &PgRow) -> Result<OperationRecord, StoreError> {
    Ok(OperationRecord {
        operation: decode(row.try_get::<&[u8], _>("body").map_err(unavailable)?)?,
        method: row.try_get("method").map_err(unavailable)?,
        resource_id: row.try_get("resource_id").map_err(unavailable)?,
        request: row.try_get("request").map_err(unavailable)?,
        owner: row.try_get("owner").map_err(unavailable)?,
    })
}

impl PgOperationStore {
    /// A store in the database behind `pool`, whose schema is created or checked.
    pub async fn open(pool: PgPool) -> Result<Self, StoreError> {
        let schema: Vec<String> = SCHEMA.iter().map(|s| (*s).to_owned()).collect();
        Db::Postgres(pool.clone())
            .migrate(COMPONENT, SCHEMA_VERSION, &schema)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(Self { pool })
    }

    async fn change(
        &self,
        id: &str,
        change: impl FnOnce(&mut Operation),
    ) -> Result<(Operation, bool), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let body: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM op_operations WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let mut op = decode(&body.ok_or_else(|| StoreError::NotFound(id.to_owned()))?)?;
        if op.done {
            return Ok((op, false));
        }
        change(&mut op);
        sqlx::query("UPDATE op_operations SET body = $1, done = $2 WHERE id = $3")
            .bind(op.encode_to_vec())
            .bind(op.done)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok((op, true))
    }

    async fn by_key(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
        created_by: &str,
        method: &str,
        key: &str,
    ) -> Result<Option<OperationRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM op_operations WHERE id = \
             (SELECT operation_id FROM op_idempotency WHERE created_by = $1 AND method = $2 AND key = $3)"
        );
        let row = sqlx::query(&sql)
            .bind(created_by)
            .bind(method)
            .bind(key)
            .fetch_optional(executor)
            .await
            .map_err(unavailable)?;
        row.map(|r| record(&r)).transpose()
    }
}

#[async_trait]
impl OperationStore for PgOperationStore {
    async fn create(&self, new: NewOperation) -> Result<Created, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let op = new.operation;
        if let Some(key) = &new.idempotency_key {
            let taken = sqlx::query(
                "INSERT INTO op_idempotency (created_by, method, key, operation_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&op.created_by)
            .bind(&new.method)
            .bind(key)
            .bind(&op.id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected()
                == 0;
            if taken {
                drop(tx);
                // The key's holder may have committed only now; read it outside this transaction.
                let existing = self
                    .by_key(&self.pool, &op.created_by, &new.method, key)
                    .await?;
                return existing.map(Created::Existing).ok_or_else(|| {
                    unavailable("an idempotency key names an operation that is not stored")
                });
            }
        }
        sqlx::query(
            "INSERT INTO op_operations (id, resource_id, method, created_at, done, owner, request, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&op.id)
        .bind(&new.resource_id)
        .bind(&new.method)
        .bind(nanos(op.created_at.unwrap_or_default()))
        .bind(op.done)
        .bind(&new.owner)
        .bind(&new.request)
        .bind(op.encode_to_vec())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Created::New(op))
    }

    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        let body: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM op_operations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        body.map(|b| decode(&b)).transpose()
    }

    async fn find_by_idempotency_key(
        &self,
        created_by: &str,
        method: &str,
        key: &str,
    ) -> Result<Option<OperationRecord>, StoreError> {
        self.by_key(&self.pool, created_by, method, key).await
    }

    async fn update_metadata(
        &self,
        id: &str,
        metadata: Any,
        at: Timestamp,
    ) -> Result<Operation, StoreError> {
        let (op, _) = self.change(id, |op| set_metadata(op, metadata, at)).await?;
        Ok(op)
    }

    async fn finish(
        &self,
        id: &str,
        result: operation::Result,
        at: Timestamp,
    ) -> Result<Finished, StoreError> {
        let (op, changed) = self.change(id, |op| set_result(op, result, at)).await?;
        Ok(if changed {
            Finished::Now(op)
        } else {
            Finished::Before(op)
        })
    }

    async fn list_by_resource(
        &self,
        resource_id: &str,
        limit: usize,
        after: Option<&OperationCursor>,
    ) -> Result<Vec<Operation>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<Vec<u8>> = match after {
            None => sqlx::query_scalar("SELECT body FROM op_operations WHERE resource_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2")
                .bind(resource_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await,
            Some(cursor) => sqlx::query_scalar(
                "SELECT body FROM op_operations WHERE resource_id = $1 AND (created_at, id) < ($2, $3) \
                 ORDER BY created_at DESC, id DESC LIMIT $4",
            )
            .bind(resource_id)
            .bind(nanos(cursor.created_at))
            .bind(&cursor.id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await,
        }
        .map_err(unavailable)?;
        rows.iter().map(|b| decode(b)).collect()
    }

    async fn unfinished(&self) -> Result<Vec<OperationRecord>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM op_operations WHERE NOT done ORDER BY id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(record).collect()
    }

    async fn heartbeat(&self, owner: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO op_leases (owner, expires_at) VALUES ($1, $2) \
             ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(owner)
        .bind(nanos(expires_at))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM op_leases WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim_abandoned(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let sql = format!(
            "UPDATE op_operations SET owner = $1 WHERE NOT done AND \
             (owner = $1 OR owner NOT IN (SELECT owner FROM op_leases WHERE expires_at > $2)) \
             RETURNING {RECORD_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(nanos(now))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let mut records: Vec<OperationRecord> =
            rows.iter().map(record).collect::<Result<_, _>>()?;
        records.sort_by(|a, b| a.operation.id.cmp(&b.operation.id));
        Ok(records)
    }
}
