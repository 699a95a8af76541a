//! SQLite: a pool of rusqlite connections, statements run on the calling thread or, what may
//! wait, on tokio's blocking threads.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{DbError, Query, SqliteValue, Value};

/// What a SQLite statement gave: its rows and how many rows it changed.
pub(crate) struct Ran {
    pub(crate) rows: Vec<Vec<SqliteValue>>,
    pub(crate) changed: u64,
}

/// Runs a statement on a SQLite connection, reading every row it returns. The placeholder
/// `$n` takes the `n`th value, wherever it first appears in the statement.
pub(crate) fn sqlite_run(conn: &rusqlite::Connection, q: &Query) -> Result<Ran, DbError> {
    let mut statement = conn.prepare_cached(&q.sql)?;
    if statement.parameter_count() != q.args.len() {
        return Err(DbError::new(format!(
            "the statement has {} placeholders and {} values: {}",
            statement.parameter_count(),
            q.args.len(),
            q.sql
        )));
    }
    let mut name = String::with_capacity(4);
    for (i, value) in q.args.iter().enumerate() {
        name.clear();
        // Into the one buffer: no allocation per value.
        let _ = write!(name, "${}", i + 1);
        let Some(index) = statement.parameter_index(&name)? else {
            return Err(DbError::new(format!(
                "the statement has no {name}: {}",
                q.sql
            )));
        };
        match value {
            Value::Text(v) => statement.raw_bind_parameter(index, v.as_str())?,
            Value::Int(v) => statement.raw_bind_parameter(index, *v)?,
            Value::Bytes(v) => statement.raw_bind_parameter(index, v.as_slice())?,
            Value::Bool(v) => statement.raw_bind_parameter(index, i64::from(*v))?,
        }
    }
    let columns = statement.column_count();
    let mut rows = Vec::new();
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(row.get::<_, SqliteValue>(i)?);
        }
        rows.push(values);
    }
    drop(cursor);
    Ok(Ran {
        rows,
        changed: conn.changes(),
    })
}

/// How to open the connections of a SQLite pool.
#[derive(Debug, Clone)]
pub(crate) enum SqliteTarget {
    Memory,
    File(std::path::PathBuf),
}

/// A pool of SQLite connections.
#[derive(Clone)]
pub struct SqlitePool {
    inner: Arc<SqliteInner>,
}

struct SqliteInner {
    target: SqliteTarget,
    idle: Mutex<Vec<rusqlite::Connection>>,
    permits: Arc<Semaphore>,
    max: usize,
}

impl std::fmt::Debug for SqlitePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlitePool({:?})", self.inner.target)
    }
}

/// A connection taken from a [`SqlitePool`], returned to it when dropped (rolled back first if
/// a transaction is open).
pub struct SqliteConn {
    conn: Option<rusqlite::Connection>,
    pool: Arc<SqliteInner>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for SqliteConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
                return; // closed: SQLite rolls back what it had
            }
            if let Ok(mut idle) = self.pool.idle.lock() {
                idle.push(conn);
            }
        }
    }
}

impl SqliteConn {
    pub(crate) fn conn(&self) -> Result<&rusqlite::Connection, DbError> {
        self.conn
            .as_ref()
            .ok_or_else(|| DbError::new("the SQLite connection was lost"))
    }

    /// Runs a statement on a blocking thread, for what may wait on the disk or a lock.
    pub(crate) async fn run_blocking(&mut self, q: Query) -> Result<Ran, DbError> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| DbError::new("the SQLite connection was lost"))?;
        let (conn, ran) = tokio::task::spawn_blocking(move || {
            let ran = sqlite_run(&conn, &q);
            (conn, ran)
        })
        .await
        .map_err(|e| DbError::new(format!("a SQLite statement failed to run: {e}")))?;
        self.conn = Some(conn);
        ran
    }
}

impl SqlitePool {
    pub(crate) fn new(target: SqliteTarget, max_connections: u32) -> SqlitePool {
        let max = usize::try_from(max_connections.max(1)).unwrap_or(1);
        SqlitePool {
            inner: Arc::new(SqliteInner {
                target,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max)),
                max,
            }),
        }
    }

    pub(crate) async fn acquire(&self) -> Result<SqliteConn, DbError> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DbError::new("the SQLite pool is closed"))?;
        let idle = self
            .inner
            .idle
            .lock()
            .map_err(|_| DbError::new("the SQLite pool is poisoned"))?
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let target = self.inner.target.clone();
                tokio::task::spawn_blocking(move || open_sqlite(&target))
                    .await
                    .map_err(|e| DbError::new(format!("opening SQLite failed: {e}")))??
            }
        };
        Ok(SqliteConn {
            conn: Some(conn),
            pool: self.inner.clone(),
            _permit: permit,
        })
    }

    /// Connections open (idle or in use) and in use.
    pub(crate) fn stats(&self) -> (usize, usize) {
        let idle = self.inner.idle.lock().map_or(0, |idle| idle.len());
        let max = self.inner.max;
        let in_use = max.saturating_sub(self.inner.permits.available_permits());
        (idle + in_use, in_use)
    }

    pub(crate) async fn close(&self) {
        self.inner.permits.close();
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.clear();
        }
    }
}

/// Opens a connection: in a file in WAL mode with `synchronous = FULL` (a commit is on disk
/// before it returns) and a busy timeout, or the one in-memory database.
fn open_sqlite(target: &SqliteTarget) -> Result<rusqlite::Connection, DbError> {
    let conn = match target {
        SqliteTarget::Memory => rusqlite::Connection::open_in_memory()?,
        SqliteTarget::File(path) => {
            let conn = rusqlite::Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(DbError::new(format!(
                    "{} cannot be put in WAL mode (it is in {mode} mode)",
                    path.display()
                )));
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn
        }
    };
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// Whether a statement outside a transaction may wait on the disk or another writer.
pub(crate) fn writes(sql: &str) -> bool {
    !sql.trim_start()
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case("SELECT"))
}
