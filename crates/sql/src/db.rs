//! [`Db`], a pool of either database, and [`Tx`], a write transaction on it.

use std::str::FromStr as _;

use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::sqlite::{SqliteConn, SqlitePool, SqliteTarget, sqlite_map_rows, sqlite_run, writes};
use crate::{Column, DbError, Dialect, Query, Row, RowRef, Value, query};

fn pg_query(q: &Query) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    let mut s = sqlx::query(&q.sql);
    for value in &q.args {
        s = match value {
            Value::Text(v) => s.bind(v.as_str()),
            Value::Int(v) => s.bind(*v),
            Value::Bytes(v) => s.bind(v.as_slice()),
            Value::Bool(v) => s.bind(*v),
            Value::NullText => s.bind(None::<&str>),
        };
    }
    s
}

/// A database: a pool of SQLite or PostgreSQL connections.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        Db::Postgres(pool)
    }
}

impl Db {
    /// A fresh in-memory SQLite database: one connection, since each connection to
    /// `:memory:` would be a database of its own.
    pub async fn sqlite_memory() -> Result<Db, DbError> {
        let pool = SqlitePool::new(SqliteTarget::Memory, 1);
        drop(pool.acquire().await?);
        Ok(Db::Sqlite(pool))
    }

    /// A SQLite database in a file, created if missing, with up to `max_connections`
    /// connections.
    pub async fn sqlite_file(
        path: impl Into<std::path::PathBuf>,
        max_connections: u32,
    ) -> Result<Db, DbError> {
        let pool = SqlitePool::new(SqliteTarget::File(path.into()), max_connections);
        drop(pool.acquire().await?);
        Ok(Db::Sqlite(pool))
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// The dialect of this database.
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The pool's connections: how many are open, and how many of them are in use.
    pub fn pool_use(&self) -> PoolUse {
        let (open, in_use) = match self {
            Db::Sqlite(pool) => pool.stats(),
            Db::Postgres(pool) => {
                let open = usize::try_from(pool.size()).unwrap_or(usize::MAX);
                (open, open.saturating_sub(pool.num_idle()))
            }
        };
        PoolUse { open, in_use }
    }

    async fn sqlite(pool: &SqlitePool, q: &Query) -> Result<crate::sqlite::Ran, DbError> {
        let mut conn = pool.acquire().await?;
        if writes(&q.sql) {
            conn.run_blocking(q.clone()).await
        } else {
            sqlite_run(conn.conn()?, q)
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&self, q: &Query) -> Result<u64, DbError> {
        match self {
            Db::Sqlite(pool) => Ok(Self::sqlite(pool, q).await?.changed),
            Db::Postgres(pool) => Ok(pg_query(q).execute(pool).await?.rows_affected()),
        }
    }

    /// Every row of a query.
    pub async fn fetch_all(&self, q: &Query) -> Result<Vec<Row>, DbError> {
        match self {
            Db::Sqlite(pool) => Ok(Self::sqlite(pool, q)
                .await?
                .rows
                .into_iter()
                .map(Row::Sqlite)
                .collect()),
            Db::Postgres(pool) => {
                let rows = pg_query(q).fetch_all(pool).await?;
                Ok(rows.into_iter().map(Row::Postgres).collect())
            }
        }
    }

    /// Every row of a query, each handed to `f` as the database holds it, its columns read
    /// in place without a copy ([`RowRef`]): for List pages, whose rows are decoded or
    /// copied into the answer as they are read.
    pub async fn fetch_with<T>(
        &self,
        q: &Query,
        mut f: impl FnMut(RowRef<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        match self {
            Db::Sqlite(pool) => {
                let conn = pool.acquire().await?;
                if writes(&q.sql) {
                    return Err(DbError::new(format!(
                        "fetch_with reads; this statement writes: {}",
                        q.sql
                    )));
                }
                sqlite_map_rows(conn.conn()?, q, &mut f)
            }
            Db::Postgres(pool) => {
                let rows = pg_query(q).fetch_all(pool).await?;
                rows.iter().map(|row| f(RowRef::Postgres(row))).collect()
            }
        }
    }

    /// The stored protobuf messages (the first column of every row) of a query, decoded as
    /// [`fetch_with`](Self::fetch_with) reads them; `what` names them in the error of one
    /// that does not decode.
    pub async fn fetch_messages<M: prost::Message + Default>(
        &self,
        q: &Query,
        what: &str,
    ) -> Result<Vec<M>, DbError> {
        self.fetch_with(q, |row| {
            M::decode(row.bytes(0)?.unwrap_or_default())
                .map_err(|e| DbError::new(format!("a stored {what} does not decode: {e}")))
        })
        .await
    }

    /// The first row of a query, if any.
    pub async fn fetch_optional(&self, q: &Query) -> Result<Option<Row>, DbError> {
        match self {
            Db::Sqlite(pool) => Ok(Self::sqlite(pool, q)
                .await?
                .rows
                .into_iter()
                .next()
                .map(Row::Sqlite)),
            Db::Postgres(pool) => Ok(pg_query(q).fetch_optional(pool).await?.map(Row::Postgres)),
        }
    }

    /// The first column of the first row of a query, if any.
    pub async fn fetch_scalar<T: Column>(&self, q: &Query) -> Result<Option<T>, DbError> {
        self.fetch_optional(q)
            .await?
            .map(|row| row.get(0))
            .transpose()
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                conn.run_blocking(query("BEGIN IMMEDIATE")).await?;
                Tx::Sqlite(conn)
            }
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// The plan the database chooses for a query, one line per step. PostgreSQL is asked
    /// with sequential scans and sorts priced out, so that the plan shows whether an index
    /// can serve the query at all, whatever the size of the tables.
    pub async fn query_plan(&self, q: &Query) -> Result<Vec<String>, DbError> {
        match self {
            Db::Sqlite(_) => {
                let explain = Query {
                    sql: format!("EXPLAIN QUERY PLAN {}", q.sql),
                    args: q.args.clone(),
                };
                let rows = self.fetch_all(&explain).await?;
                rows.iter().map(|r| r.get::<String>(3)).collect()
            }
            Db::Postgres(_) => {
                let mut tx = self.begin().await?;
                for setting in ["enable_seqscan", "enable_sort", "enable_bitmapscan"] {
                    tx.execute(&query(format!("SET LOCAL {setting} = off")))
                        .await?;
                }
                let explain = Query {
                    sql: format!("EXPLAIN {}", q.sql),
                    args: q.args.clone(),
                };
                let rows = tx.fetch_all(&explain).await?;
                tx.rollback().await?;
                rows.iter().map(|r| r.get::<String>(0)).collect()
            }
        }
    }
}

/// How a pool's connections are used ([`Db::pool_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open.
    pub open: usize,
    /// Connections in use.
    pub in_use: usize,
}

/// A write transaction; dropped without [`Tx::commit`], it rolls back.
pub enum Tx {
    /// On SQLite: a connection inside `BEGIN IMMEDIATE`.
    Sqlite(SqliteConn),
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tx({:?})", self.dialect())
    }
}

impl Tx {
    /// The dialect of the database.
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, q: &Query) -> Result<u64, DbError> {
        match self {
            Tx::Sqlite(conn) => Ok(sqlite_run(conn.conn()?, q)?.changed),
            Tx::Postgres(tx) => Ok(pg_query(q).execute(&mut **tx).await?.rows_affected()),
        }
    }

    /// Every row of a query.
    pub async fn fetch_all(&mut self, q: &Query) -> Result<Vec<Row>, DbError> {
        match self {
            Tx::Sqlite(conn) => Ok(sqlite_run(conn.conn()?, q)?
                .rows
                .into_iter()
                .map(Row::Sqlite)
                .collect()),
            Tx::Postgres(tx) => {
                let rows = pg_query(q).fetch_all(&mut **tx).await?;
                Ok(rows.into_iter().map(Row::Postgres).collect())
            }
        }
    }

    /// The first row of a query, if any.
    pub async fn fetch_optional(&mut self, q: &Query) -> Result<Option<Row>, DbError> {
        Ok(self.fetch_all(q).await?.into_iter().next())
    }

    /// The first column of the first row of a query, if any.
    pub async fn fetch_scalar<T: Column>(&mut self, q: &Query) -> Result<Option<T>, DbError> {
        self.fetch_optional(q)
            .await?
            .map(|row| row.get(0))
            .transpose()
    }

    /// Makes the transaction's changes durable.
    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(mut conn) => conn.run_blocking(query("COMMIT")).await.map(drop),
            Tx::Postgres(tx) => Ok(tx.commit().await?),
        }
    }

    /// Undoes the transaction's changes.
    pub async fn rollback(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(conn) => {
                sqlite_run(conn.conn()?, &query("ROLLBACK"))?;
                Ok(())
            }
            Tx::Postgres(tx) => Ok(tx.rollback().await?),
        }
    }
}

/// Connects to a PostgreSQL database by URL (`postgres://user@host:port/database`, with
/// libpq's parameters, e.g. `?options=-csearch_path%3Dmy_schema`).
pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
}
