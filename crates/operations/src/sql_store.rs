//! The [`OperationStore`] in SQL: on SQLite (in memory or in a file) or on PostgreSQL, shared
//! by replicas; one implementation through `yc_sql`.
//!
//! `op_operations` holds each operation (the message in `body`) with the columns its lookups
//! need; `op_idempotency` maps (subject, method, key) to an operation; `op_leases` holds the
//! runners' leases. What must hold across replicas is done by the database in one statement or
//! one transaction: an idempotency key is taken by an `INSERT … ON CONFLICT DO NOTHING`, an
//! operation is changed in a write transaction that locks its row (so it finishes once), and
//! abandoned operations are claimed by one `UPDATE … RETURNING`.

use async_trait::async_trait;
use prost::Message;
use yc_proto_types::google::protobuf::{Any, Timestamp};
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

use crate::store::{
    Created, Finished, NewOperation, OperationCursor, OperationRecord, OperationStore, StoreError,
    set_metadata, set_result,
};
use yc_api_runtime::list::page_token::TokenKey;
use yc_api_runtime::list::sql::nanos;
use yc_sql::{ColumnTypes, Db, Row, query};

const COMPONENT: &str = "operations";
const SCHEMA_VERSION: i64 = 2;

/// The schema, in `dialect`.
fn schema(dialect: yc_sql::Dialect) -> Vec<String> {
    let ColumnTypes { text, int, bytes } = dialect.types();
    vec![
        format!("CREATE TABLE IF NOT EXISTS op_operations (
        id {text} PRIMARY KEY,
        resource_id {text} NOT NULL,
        method {text} NOT NULL,
        created_at {int} NOT NULL,
        done BOOLEAN NOT NULL,
        owner {text} NOT NULL,
        request {bytes} NOT NULL,
        body {bytes} NOT NULL
    )"),
        "CREATE INDEX IF NOT EXISTS op_operations_resource ON op_operations (resource_id, created_at, id)".to_owned(),
        "CREATE INDEX IF NOT EXISTS op_operations_unfinished ON op_operations (owner) WHERE NOT done".to_owned(),
        format!("CREATE TABLE IF NOT EXISTS op_idempotency (
        created_by {text} NOT NULL,
        method {text} NOT NULL,
        key {text} NOT NULL,
        operation_id {text} NOT NULL,
        PRIMARY KEY (created_by, method, key)
    )"),
        format!("CREATE TABLE IF NOT EXISTS op_leases (owner {text} PRIMARY KEY, expires_at {int} NOT NULL)"),
        format!("CREATE TABLE IF NOT EXISTS op_token_keys (
        id {int} PRIMARY KEY,
        secret {bytes} NOT NULL,
        created_at {int} NOT NULL
    )"),
    ]
}

/// The columns [`record`] reads, in its order.
const RECORD_COLUMNS: &str = "body, method, resource_id, request, owner";

/// Operations in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlOperationStore {
    db: Db,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(body: &[u8]) -> Result<Operation, StoreError> {
    Operation::decode(body)
        .map_err(|e| unavailable(format!("a stored operation does not decode: {e}")))
}

fn record(row: &Row) -> Result<OperationRecord, StoreError> {
    Ok(OperationRecord {
        operation: decode(&row.get::<Vec<u8>>(0).map_err(unavailable)?)?,
        method: row.get(1).map_err(unavailable)?,
        resource_id: row.get(2).map_err(unavailable)?,
        request: row.get(3).map_err(unavailable)?,
        owner: row.get(4).map_err(unavailable)?,
    })
}

impl SqlOperationStore {
    /// A store in a fresh in-memory SQLite database.
    pub async fn in_memory() -> Result<Self, StoreError> {
        Self::open(Db::sqlite_memory().await.map_err(unavailable)?).await
    }

    /// A store in `db` (`Db::sqlite_file`, `Db::sqlite_memory`, or a `PgPool`, which converts into it), whose schema is created
    /// or checked.
    pub async fn open(db: impl Into<Db>) -> Result<Self, StoreError> {
        let db = db.into();
        db.migrate(COMPONENT, SCHEMA_VERSION, &schema(db.dialect()))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self { db })
    }

    /// Reads an operation, changes it with `change` unless it is done, and writes it back, in
    /// one transaction that holds the row. Returns the operation as it then stands and whether
    /// it changed.
    async fn change(
        &self,
        id: &str,
        change: impl FnOnce(&mut Operation),
    ) -> Result<(Operation, bool), StoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let body: Option<Vec<u8>> = tx
            .fetch_scalar(
                &query(format!(
                    "SELECT body FROM op_operations WHERE id = $1{}",
                    tx.dialect().for_update()
                ))
                .bind(id),
            )
            .await
            .map_err(unavailable)?;
        let mut op = decode(&body.ok_or_else(|| StoreError::NotFound(id.to_owned()))?)?;
        if op.done {
            return Ok((op, false));
        }
        change(&mut op);
        tx.execute(
            &query("UPDATE op_operations SET body = $1, done = $2 WHERE id = $3")
                .bind(op.encode_to_vec())
                .bind(op.done)
                .bind(id),
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok((op, true))
    }

    fn records(rows: &[Row]) -> Result<Vec<OperationRecord>, StoreError> {
        rows.iter().map(record).collect()
    }
}

#[async_trait]
impl OperationStore for SqlOperationStore {
    async fn create(&self, new: NewOperation) -> Result<Created, StoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let op = new.operation;
        if let Some(key) = &new.idempotency_key {
            let taken = tx
                .execute(
                    &query(
                        "INSERT INTO op_idempotency (created_by, method, key, operation_id) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(&op.created_by)
                    .bind(&new.method)
                    .bind(key)
                    .bind(&op.id),
                )
                .await
                .map_err(unavailable)?
                == 0;
            if taken {
                tx.rollback().await.map_err(unavailable)?;
                // The key's holder may have committed only now; read it outside this
                // transaction.
                let existing = self
                    .find_by_idempotency_key(&op.created_by, &new.method, key)
                    .await?;
                return existing.map(Created::Existing).ok_or_else(|| {
                    unavailable("an idempotency key names an operation that is not stored")
                });
            }
        }
        tx.execute(
            &query(
                "INSERT INTO op_operations (id, resource_id, method, created_at, done, owner, request, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&op.id)
            .bind(&new.resource_id)
            .bind(&new.method)
            .bind(nanos(op.created_at.unwrap_or_default()))
            .bind(op.done)
            .bind(&new.owner)
            .bind(new.request.clone())
            .bind(op.encode_to_vec()),
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Created::New(op))
    }

    async fn get(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        let body: Option<Vec<u8>> = self
            .db
            .fetch_scalar(&query("SELECT body FROM op_operations WHERE id = $1").bind(id))
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
        let row = self
            .db
            .fetch_optional(
                &query(format!(
                    "SELECT {RECORD_COLUMNS} FROM op_operations WHERE id = \
                     (SELECT operation_id FROM op_idempotency WHERE created_by = $1 AND method = $2 AND key = $3)"
                ))
                .bind(created_by)
                .bind(method)
                .bind(key),
            )
            .await
            .map_err(unavailable)?;
        row.as_ref().map(record).transpose()
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
        let mut sql =
            query("SELECT body FROM op_operations WHERE resource_id = $1").bind(resource_id);
        if let Some(cursor) = after {
            sql.push(" AND (created_at, id) < (")
                .push_bind(nanos(cursor.created_at))
                .push(", ")
                .push_bind(&cursor.id)
                .push(")");
        }
        sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = self.db.fetch_all(&sql).await.map_err(unavailable)?;
        rows.iter()
            .map(|row| decode(&row.get::<Vec<u8>>(0).map_err(unavailable)?))
            .collect()
    }

    async fn unfinished(&self) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = self
            .db
            .fetch_all(&query(format!(
                "SELECT {RECORD_COLUMNS} FROM op_operations WHERE NOT done ORDER BY id"
            )))
            .await
            .map_err(unavailable)?;
        Self::records(&rows)
    }

    async fn heartbeat(&self, owner: &str, expires_at: Timestamp) -> Result<(), StoreError> {
        self.db
            .execute(
                &query(
                    "INSERT INTO op_leases (owner, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at",
                )
                .bind(owner)
                .bind(nanos(expires_at)),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        self.db
            .execute(&query("DELETE FROM op_leases WHERE owner = $1").bind(owner))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim_abandoned(
        &self,
        owner: &str,
        now: Timestamp,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = self
            .db
            .fetch_all(
                &query(format!(
                    "UPDATE op_operations SET owner = $1 WHERE NOT done AND \
                     (owner = $2 OR owner NOT IN (SELECT owner FROM op_leases WHERE expires_at > $3)) \
                     RETURNING {RECORD_COLUMNS}"
                ))
                .bind(owner)
                .bind(owner)
                .bind(nanos(now)),
            )
            .await
            .map_err(unavailable)?;
        let mut records = Self::records(&rows)?;
        records.sort_by(|a, b| a.operation.id.cmp(&b.operation.id));
        Ok(records)
    }

    async fn token_keys(&self, now: Timestamp) -> Result<Vec<TokenKey>, StoreError> {
        let now = nanos(now);
        let (rotate, lifetime) = crate::memory::key_ages(now);
        let newest = self
            .db
            .fetch_optional(&query(
                "SELECT id, created_at FROM op_token_keys ORDER BY id DESC LIMIT 1",
            ))
            .await
            .map_err(unavailable)?;
        let newest: Option<(i64, i64)> = newest
            .map(|row| {
                Ok::<_, StoreError>((
                    row.get(0).map_err(unavailable)?,
                    row.get(1).map_err(unavailable)?,
                ))
            })
            .transpose()?;
        if newest.is_none_or(|(_, created_at)| created_at < rotate) {
            // Of replicas doing this at once, one inserts the key and the rest find it.
            let key = TokenKey::generate(newest.map_or(1, |(id, _)| id + 1), now);
            self.db
                .execute(
                    &query(
                        "INSERT INTO op_token_keys (id, secret, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(key.id)
                    .bind(key.secret)
                    .bind(key.created_at),
                )
                .await
                .map_err(unavailable)?;
            self.db
                .execute(
                    &query(
                        "DELETE FROM op_token_keys WHERE created_at < $1 AND id < \
                         (SELECT MAX(id) FROM op_token_keys)",
                    )
                    .bind(lifetime),
                )
                .await
                .map_err(unavailable)?;
        }
        let rows = self
            .db
            .fetch_all(&query(
                "SELECT id, secret, created_at FROM op_token_keys ORDER BY id",
            ))
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(TokenKey {
                    id: row.get(0).map_err(unavailable)?,
                    secret: row.get(1).map_err(unavailable)?,
                    created_at: row.get(2).map_err(unavailable)?,
                })
            })
            .collect()
    }
}
