//! The [`OperationStore`] on SQLite, in memory or in a file.
//!
//! `op_operations` holds each operation (the message in `body`) with the columns its lookups
//! need; `op_idempotency` maps (subject, method, key) to an operation; `op_leases` holds the
//! runners' leases. Writes run in `BEGIN IMMEDIATE` transactions, so that concurrent writers
//! queue instead of failing to upgrade their locks.

use async_trait::async_trait;
use prost::Message;
use sqlx::{Row, SqlitePool};
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
        created_at INTEGER NOT NULL,
        done INTEGER NOT NULL,
        owner TEXT NOT NULL,
        request BLOB NOT NULL,
        body BLOB NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS op_operations_resource ON op_operations (resource_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS op_operations_unfinished ON op_operations (owner) WHERE done = 0",
    "CREATE TABLE IF NOT EXISTS op_idempotency (
        created_by TEXT NOT NULL,
        method TEXT NOT NULL,
        key TEXT NOT NULL,
        operation_id TEXT NOT NULL,
        PRIMARY KEY (created_by, method, key)
    )",
    "CREATE TABLE IF NOT EXISTS op_leases (owner TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)",
];

/// Operations in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteOperationStore {
    pool: SqlitePool,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(body: &[u8]) -> Result<Operation, StoreError> {
    Operation::decode(body)
        .map_err(|e| unavailable(format!("a stored operation does not decode: {e}")))
}

const RECORD_COLUMNS: &str = "body, method, resource_id, request, owner";

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<OperationRecord, StoreError> {
    Ok(OperationRecord {
        operation: decode(row.try_get::<&[u8], _>("body").map_err(unavailable)?)?,
        method: row.try_get("method").map_err(unavailable)?,
        resource_id: row.try_get("resource_id").map_err(unavailable)?,
        request: row.try_get("request").map_err(unavailable)?,
        owner: row.try_get("owner").map_err(unavailable)?,
    })
}

impl SqliteOperationStore {
    /// A store in a fresh in-memory database.
    pub async fn in_memory() -> Result<Self, StoreError> {
        match Db::sqlite_memory().await.map_err(unavailable)? {
            Db::Sqlite(pool) => Self::open(pool).await,
            Db::Postgres(_) => Err(unavailable("an in-memory database is SQLite")),
        }
    }

    /// A store in the database behind `pool`, whose schema is created or checked.
    pub async fn open(pool: SqlitePool) -> Result<Self, StoreError> {
        let schema: Vec<String> = SCHEMA.iter().map(|s| (*s).to_owned()).collect();
        Db::Sqlite(pool.clone())
            .migrate(COMPONENT, SCHEMA_VERSION, &schema)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(Self { pool })
    }

    /// Reads an operation, changes it with `change` unless it is done, and writes it back.
    /// Returns the operation as it then stands and whether it changed.
    async fn change(
        &self,
        id: &str,
        change: impl FnOnce(&mut Operation),
    ) -> Result<(Operation, bool), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let body: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM op_operations WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let mut op = decode(&body.ok_or_else(|| StoreError::NotFound(id.to_owned()))?)?;
        if op.done {
            return Ok((op, false));
        }
        change(&mut op);
        sqlx::query("UPDATE op_operations SET body = ?, done = ? WHERE id = ?")
            .bind(op.encode_to_vec())
            .bind(op.done)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok((op, true))
    }
}

#[async_trait]
impl OperationStore for SqliteOperationStore {
    async fn create(&self, new: NewOperation) -> Result<Created, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let op = new.operation;
        if let Some(key) = &new.idempotency_key {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM op_operations WHERE id = \
                 (SELECT operation_id FROM op_idempotency WHERE created_by = ? AND method = ? AND key = ?)"
            );
            let existing = sqlx::query(&sql)
                .bind(&op.created_by)
                .bind(&new.method)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            if let Some(row) = existing {
                return Ok(Created::Existing(record(&row)?));
            }
            sqlx::query("INSERT INTO op_idempotency (created_by, method, key, operation_id) VALUES (?, ?, ?, ?)")
                .bind(&op.created_by)
                .bind(&new.method)
                .bind(key)
                .bind(&op.id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        sqlx::query(
            "INSERT INTO op_operations (id, resource_id, method, created_at, done, owner, request, body) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
            sqlx::query_scalar("SELECT body FROM op_operations WHERE id = ?")
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
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM op_operations WHERE id = \
             (SELECT operation_id FROM op_idempotency WHERE created_by = ? AND method = ? AND key = ?)"
        );
        let row = sqlx::query(&sql)
            .bind(created_by)
            .bind(method)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| record(&r)).transpose()
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
            None => sqlx::query_scalar(
                "SELECT body FROM op_operations WHERE resource_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            )
            .bind(resource_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await,
            Some(cursor) => sqlx::query_scalar(
                "SELECT body FROM op_operations WHERE resource_id = ? AND (created_at, id) < (?, ?) \
                 ORDER BY created_at DESC, id DESC LIMIT ?",
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
        let sql = format!("SELECT {RECORD_COLUMNS} FROM op_operations WHERE done = 0 ORDER BY id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(record).collect()
    }

    async fn heartbeat(&self, owner: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO op_leases (owner, expires_at) VALUES (?, ?) \
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
        sqlx::query("DELETE FROM op_leases WHERE owner = ?")
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
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let abandoned = "done = 0 AND (owner = ? OR owner NOT IN (SELECT owner FROM op_leases WHERE expires_at > ?))";
        sqlx::query(&format!(
            "UPDATE op_operations SET owner = ? WHERE {abandoned}"
        ))
        .bind(owner)
        .bind(owner)
        .bind(nanos(now))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM op_operations WHERE done = 0 AND owner = ? ORDER BY id"
        );
        let rows = sqlx::query(&sql)
            .bind(owner)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        rows.iter().map(record).collect()
    }
}
