//! List queries in SQL: a scope, filter conditions, sort keys ending in the id, and a keyset
//! cursor, written as one `SELECT` that an index on (scope column, sort column, id) serves.
//! Both image services' stores build their List queries here, for SQLite and PostgreSQL.
//!
//! The cursor is the id of the last row of the previous page; the statement itself reads that
//! row's sort keys (one scalar subquery per key, by primary key, evaluated once: an index
//! range bound on both databases), so a later page costs one statement, not two. A cursor
//! row that is gone gives an empty page, which [`cursor_gone`] then tells from a listing that
//! ended.

use super::{Condition, FilterOp, OrderItem, PageRows};
use crate::stored::json_from_body;
use yc_proto_types::encoded::Form;
use yc_sql::{Db, DbError, Dialect, Query, RowRef, Tx, query};

/// A List query's parts, in column terms.
#[derive(Debug, Clone)]
pub struct KeysetSelect<'a> {
    /// The columns selected.
    pub columns: &'a str,
    /// The table, which the cursor's sort keys are read from too.
    pub table: &'a str,
    /// The condition of the table's live rows (`deleted_at IS NULL`), if some are not.
    pub live: Option<&'a str>,
    /// The scope column and its value.
    pub scope: (&'a str, String),
    /// Prefix the scope term with a unary `+` on SQLite, so that it serves the query from the
    /// index of a more selective filter column rather than the scope's. (PostgreSQL weighs
    /// the indexes by their statistics.)
    pub steer_from_scope: bool,
    /// Filter conditions, each with its column.
    pub conditions: Vec<(&'static str, &'a Condition)>,
    /// Sort keys, most significant first, ending in the id (see [`sort_keys`]).
    pub keys: Vec<(&'static str, bool)>,
    /// The id of the row to continue after (deleted rows keep their sort keys for this).
    pub after: Option<String>,
    /// The most rows to return.
    pub limit: usize,
}

/// The sort keys of an order, each field mapped to its column, then `id` with the direction of
/// the last key, so that the order is total.
pub fn sort_keys(
    order: &[OrderItem],
    column: impl Fn(&str) -> &'static str,
) -> Vec<(&'static str, bool)> {
    let mut keys: Vec<(&'static str, bool)> = order
        .iter()
        .map(|item| (column(&item.field), item.descending))
        .collect();
    let last = keys.last().is_some_and(|(_, descending)| *descending);
    if keys.last().is_none_or(|(c, _)| *c != "id") {
        keys.push(("id", last));
    }
    keys
}

/// The cursor `after` (a row of `table`) of a page that came back empty because that row is
/// gone (deleted rows kept for their sort keys count as there), not because the listing
/// ended: asked only of an empty page, to tell a page token too old to continue. `None`
/// when the page is not empty, has no cursor, or its cursor is there.
pub async fn cursor_gone<'a>(
    db: &Db,
    table: &str,
    after: Option<&'a str>,
    page_empty: bool,
) -> Result<Option<&'a str>, yc_sql::DbError> {
    let Some(id) = after.filter(|_| page_empty) else {
        return Ok(None);
    };
    let found = db
        .fetch_optional(&query(format!("SELECT id FROM {table} WHERE id = $1")).bind(id))
        .await?;
    Ok(found.is_none().then_some(id))
}

impl KeysetSelect<'_> {
    /// The statement, in `dialect`.
    pub fn build(&self, dialect: Dialect) -> Query {
        let mut sql = query(format!(
            "SELECT {} FROM {} WHERE ",
            self.columns, self.table
        ));
        if let Some(live) = self.live {
            sql.push(live).push(" AND ");
        }
        if self.steer_from_scope && dialect == Dialect::Sqlite {
            sql.push("+");
        }
        sql.push(self.scope.0)
            .push(" = ")
            .push_bind(self.scope.1.clone());
        for (column, condition) in &self.conditions {
            sql.push(" AND ").push(column);
            match condition.op {
                FilterOp::Eq | FilterOp::Ne => {
                    sql.push(if condition.op == FilterOp::Eq {
                        " = "
                    } else {
                        " <> "
                    });
                    sql.push_bind(condition.values.first().cloned().unwrap_or_default());
                }
                FilterOp::In | FilterOp::NotIn => {
                    sql.push(if condition.op == FilterOp::In {
                        " IN ("
                    } else {
                        " NOT IN ("
                    });
                    for (i, value) in condition.values.iter().enumerate() {
                        if i > 0 {
                            sql.push(", ");
                        }
                        sql.push_bind(value.clone());
                    }
                    sql.push(")");
                }
            }
        }
        if let Some(id) = &self.after {
            self.push_after(&mut sql, id);
        }
        let order: Vec<String> = self
            .keys
            .iter()
            .map(|(c, d)| format!("{c} {}", if *d { "DESC" } else { "ASC" }))
            .collect();
        sql.push(" ORDER BY ").push(&order.join(", "));
        sql.push(" LIMIT ")
            .push_bind(i64::try_from(self.limit).unwrap_or(i64::MAX));
        sql
    }

    /// `AND <the row comes after the cursor row in the order>`, the cursor row's sort keys
    /// read by subqueries on its id.
    fn push_after(&self, sql: &mut Query, id: &str) {
        let at_cursor = |sql: &mut Query, column: &str| {
            sql.push("(SELECT ")
                .push(column)
                .push(" FROM ")
                .push(self.table)
                .push(" WHERE id = ")
                .push_bind(id.to_owned())
                .push(")");
        };
        // A sort key that a condition fixes to one value orders nothing among the rows: left
        // out, so that the cursor bounds the index search that follows the equality.
        let keys: Vec<&(&str, bool)> = self
            .keys
            .iter()
            .filter(|(column, _)| {
                !self
                    .conditions
                    .iter()
                    .any(|(c, condition)| c == column && condition.op == FilterOp::Eq)
            })
            .collect();
        if keys.is_empty() {
            // Every key fixed, the id too: the one row there is came on the last page.
            sql.push(" AND 1 = 0");
            return;
        }
        sql.push(" AND (");
        let first_direction = keys.first().is_some_and(|(_, d)| *d);
        if keys.iter().all(|(_, d)| *d == first_direction) {
            // One direction: a row-value comparison, which the index on the same columns serves.
            sql.push("(");
            sql.push(&keys.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "));
            sql.push(if first_direction { ") < (" } else { ") > (" });
            for (i, (column, _)) in keys.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                at_cursor(sql, column);
            }
            sql.push(")");
        } else {
            // Mixed directions: (k1 after v1) OR (k1 = v1 AND k2 after v2) OR …
            for (i, (column, descending)) in keys.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(");
                for (equal, _) in keys.iter().take(i) {
                    sql.push(equal).push(" = ");
                    at_cursor(sql, equal);
                    sql.push(" AND ");
                }
                sql.push(column)
                    .push(if *descending { " < " } else { " > " });
                at_cursor(sql, column);
                sql.push(")");
            }
        }
        sql.push(")");
    }
}

/// A time as nanoseconds since the epoch, the form stores sort and compare times in.
pub fn nanos(t: yc_proto_types::google::protobuf::Timestamp) -> i64 {
    let n = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// How long a deleted row keeps its sort keys, so that page tokens stopping at it continue.
pub const KEEP_DELETED: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Marks the row `id` of `table` deleted at `now` (nanoseconds), keeping its sort keys for
/// page tokens; false when there is no such row or it was deleted already.
pub async fn mark_deleted(
    tx: &mut Tx,
    table: &str,
    id: &str,
    now: i64,
) -> Result<bool, yc_sql::DbError> {
    let changed = tx
        .execute(
            &query(format!(
                "UPDATE {table} SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL"
            ))
            .bind(now)
            .bind(id),
        )
        .await?;
    Ok(changed > 0)
}

/// Removes the rows of `table` deleted (soft, with `deleted_at`) longer ago than
/// [`KEEP_DELETED`] before `now` (nanoseconds).
pub async fn purge_deleted(tx: &mut Tx, table: &str, now: i64) -> Result<(), yc_sql::DbError> {
    let keep = i64::try_from(KEEP_DELETED.as_nanos()).unwrap_or(i64::MAX);
    tx.execute(
        &query(format!(
            "DELETE FROM {table} WHERE deleted_at IS NOT NULL AND deleted_at < $1"
        ))
        .bind(now.saturating_sub(keep)),
    )
    .await
    .map(drop)
}

/// The columns a List reads in `form`, from a table that keeps each resource in both forms
/// (`body`: protobuf, `json`: its proto3 JSON, see [`stored_forms`]): the id, then the form's
/// column; for JSON also the body of a row written before it had JSON.
pub fn page_columns(form: Form) -> &'static str {
    match form {
        Form::Protobuf => "id, body",
        Form::Json => "id, json, CASE WHEN json IS NULL THEN body END",
    }
}

/// The statements that keep a table's stored JSON true to its body: an update that changes
/// `body` and leaves `json` as it was (a server of an older version, which knows no `json`,
/// sharing the database during an upgrade) clears `json`, so that the row's JSON is written
/// from its body until it is stored again. Safe to run at every start.
pub fn json_follows_body(dialect: Dialect, table: &str) -> Vec<String> {
    match dialect {
        Dialect::Sqlite => vec![format!(
            "CREATE TRIGGER IF NOT EXISTS {table}_json_follows_body \
             AFTER UPDATE OF body ON {table} \
             WHEN NEW.body IS NOT OLD.body AND NEW.json IS OLD.json \
             BEGIN UPDATE {table} SET json = NULL WHERE id = NEW.id; END"
        )],
        Dialect::Postgres => vec![
            "CREATE OR REPLACE FUNCTION yc_json_follows_body() RETURNS trigger \
             LANGUAGE plpgsql AS $body$ BEGIN \
             IF NEW.body IS DISTINCT FROM OLD.body AND NEW.json IS NOT DISTINCT FROM OLD.json \
             THEN NEW.json := NULL; END IF; RETURN NEW; END $body$"
                .to_owned(),
            format!("DROP TRIGGER IF EXISTS {table}_json_follows_body ON {table}"),
            format!(
                "CREATE TRIGGER {table}_json_follows_body BEFORE UPDATE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION yc_json_follows_body()"
            ),
        ],
    }
}

/// Reads a row of [`page_columns`] into `rows`; `M` is the stored message, whose JSON is
/// written from the body where the row has none.
pub fn read_page_row<M>(row: RowRef<'_>, rows: &mut PageRows) -> Result<(), DbError>
where
    M: prost::Message + Default + serde::Serialize,
{
    let id = row.text(0)?.unwrap_or_default();
    match (rows.form(), row.bytes(1)?) {
        (_, Some(item)) => rows.push(id, item),
        (Form::Protobuf, None) => rows.push(id, &[]),
        (Form::Json, None) => {
            rows.push(id, &json_from_body::<M>(row.bytes(2)?.unwrap_or_default())?);
        }
    }
    Ok(())
}

/// The two forms a message is stored in, for the `body` and `json` columns: its protobuf
/// encoding and its proto3 JSON, which List pages are written from without decoding.
/// (The generated serializers write every message; were one to fail, the row keeps no JSON
/// and its pages are written from the body.)
pub fn stored_forms<M: prost::Message + serde::Serialize>(
    message: &M,
) -> (Vec<u8>, Option<String>) {
    (message.encode_to_vec(), serde_json::to_string(message).ok())
}
