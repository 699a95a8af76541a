//! One SQL layer over the two databases the yc-images server runs on: SQLite (embedded, in a
//! file or in memory, through rusqlite) and PostgreSQL (shared by replicas, through sqlx).
//!
//! A store is written once against [`Db`]. Statements are written in PostgreSQL's placeholder
//! form, `$1, $2, …`, which SQLite reads as named parameters; the text of a statement is never
//! rewritten. Values are [`Value`]s, rows are read by position with [`Row::get`]. What differs
//! between the databases is said where a statement is written: column types through
//! [`Dialect::types`] (text sorted by code point in both, `TEXT COLLATE "C"` on PostgreSQL),
//! row locks through [`Dialect::for_update`]. Write transactions ([`Db::begin`]) take SQLite's
//! write lock at `BEGIN`, so that concurrent writers queue instead of failing to upgrade.
//!
//! ```
//! use yc_sql::{ColumnTypes, Db, query};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Db::sqlite_memory().await?;
//! let ColumnTypes { text, int, .. } = db.dialect().types();
//! db.migrate("demo", 1, &[format!("CREATE TABLE t (id {text} PRIMARY KEY, n {int} NOT NULL)")])
//!     .await?;
//! db.execute(&query("INSERT INTO t (id, n) VALUES ($1, $2)").bind("a").bind(7)).await?;
//! let n: Option<i64> = db.fetch_scalar(&query("SELECT n FROM t WHERE id = $1").bind("a")).await?;
//! assert_eq!(n, Some(7));
//! # Ok(()) }
//! ```
//!
//! SQLite runs in the process: a read is a few microseconds of work on the calling task's
//! thread, with no hand-over to another thread per statement or per row; what may wait on the
//! disk or on another writer (autocommit writes, `BEGIN IMMEDIATE`, `COMMIT`) runs on tokio's
//! blocking threads.

mod db;
mod dialect;
mod error;
mod migrate;
mod row;
mod sqlite;
#[cfg(feature = "testing")]
mod testing;
mod value;

pub use db::{Db, PoolUse, Tx, connect_postgres};
pub use dialect::{ColumnTypes, Dialect};
pub use error::DbError;
pub use migrate::{MigrateError, Step};
pub use row::{Column, Row, RowRef, SqliteValue};
pub use sqlite::SqlitePool;
#[cfg(feature = "testing")]
pub use testing::TestPostgres;
pub use value::{Query, Value, query};

/// The PostgreSQL pool type, for callers that connect themselves.
pub use sqlx::postgres::PgPool;
