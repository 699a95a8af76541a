//! SQLite: a pool of rusqlite connections, statements run on the calling thread or, what may
//! wait, on tokio's blocking threads.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{DbError, Query, RowRef, SqliteValue, Value};

/// What a SQLite statement gave: its rows and how many rows it changed.
pub(crate) struct Ran {
    pub(crate) rows: Vec<Vec<SqliteValue>>,
    pub(crate) changed: u64,
}

/// `q`'s statement, prepared (or taken from the connection's cache) with its values bound.
/// The placeholder `$n` takes the `n`th value, wherever it first appears in the statement.
fn bound<'c>(
    conn: &'c rusqlite::Connection,
    q: &Query,
) -> Result<rusqlite::CachedStatement<'c>, DbError> {
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
            Value::NullText => statement.raw_bind_parameter(index, rusqlite::types::Null)?,
        }
    }
    Ok(statement)
}

/// Runs a statement on a SQLite connection, reading every row it returns.
pub(crate) fn sqlite_run(conn: &rusqlite::Connection, q: &Query) -> Result<Ran, DbError> {
    let mut statement = bound(conn, q)?;
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

/// Runs a query whose first column is a blob, handing each row's blob to `f` where SQLite
/// holds it (no copy), and returns what `f` made of them.
pub(crate) fn sqlite_map_rows<T>(
    conn: &rusqlite::Connection,
    q: &Query,
    f: &mut dyn FnMut(RowRef<'_>) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    let mut statement = bound(conn, q)?;
    let mut out = Vec::new();
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next()? {
        out.push(f(RowRef::Sqlite(row))?);
    }
    Ok(out)
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
    /// Dropped with the pool, which stops its checkpointer.
    _checkpointer: Option<std::sync::mpsc::Sender<()>>,
    /// Connections taken so far: the checkpointer waits for reads to pause too.
    taken: Arc<std::sync::atomic::AtomicU64>,
}

/// How often the checkpointer looks at the write-ahead log.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// A log at least this large is checkpointed once it stops growing.
const CHECKPOINT_IDLE_BYTES: u64 = 4 << 20;
/// A log this large is checkpointed even while it grows.
const CHECKPOINT_BUSY_BYTES: u64 = 1 << 30;
/// A log left this long uncopied is checkpointed even while the database is busy.
const CHECKPOINT_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Copies the write-ahead log of the database at `path` into it in the background, when the
/// database is idle (no connection taken and the log not grown since the last look; or the
/// log very large, or left uncopied for a while), so that commits only append to the log: a
/// large write (a layer being pushed) is written to the disk once while it is acknowledged,
/// and a read that follows it (its pull) does not share the disk with the copy. Commits still
/// checkpoint themselves past `wal_autocheckpoint` (see `open_sqlite`) should this thread fall
/// behind. Stops when `stop`'s sender is dropped.
fn checkpointer(
    path: std::path::PathBuf,
    taken: Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    let wal = {
        let mut name = path.clone().into_os_string();
        name.push("-wal");
        std::path::PathBuf::from(name)
    };
    let mut conn = None;
    let mut last = (0u64, 0u64);
    let mut copied = std::time::Instant::now();
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY)
    {
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        let now = (size, taken.load(std::sync::atomic::Ordering::Relaxed));
        let idle = now == last;
        last = now;
        let due = size >= CHECKPOINT_IDLE_BYTES
            && (idle || copied.elapsed() >= CHECKPOINT_AT_LEAST_EVERY);
        if !(due || size >= CHECKPOINT_BUSY_BYTES) {
            continue;
        }
        copied = std::time::Instant::now();
        if conn.is_none() {
            conn = open_sqlite(&SqliteTarget::File(path.clone())).ok();
        }
        if let Some(c) = &conn {
            // PASSIVE: copies what no reader needs, never waits for or blocks a writer.
            // On failure, a new connection next time; commits checkpoint meanwhile.
            if c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .is_err()
            {
                conn = None;
            }
        }
    }
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
        let taken = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let checkpointing = match &target {
            SqliteTarget::File(path) => {
                let (stop, stopped) = std::sync::mpsc::channel();
                let (path, taken) = (path.clone(), taken.clone());
                std::thread::Builder::new()
                    .name("sqlite-checkpoint".into())
                    .spawn(move || checkpointer(path, taken, stopped))
                    .ok()
                    .map(|_| stop)
            }
            SqliteTarget::Memory => None,
        };
        SqlitePool {
            inner: Arc::new(SqliteInner {
                target,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(max)),
                max,
                _checkpointer: checkpointing,
                taken,
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
        self.inner
            .taken
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            // The checkpointer copies the log into the database when writes pause; a commit
            // does it only past 1 GiB of log, should the checkpointer fall behind. The log
            // file is cut back to 64 MiB once copied.
            conn.pragma_update(None, "wal_autocheckpoint", 262_144)?;
            conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
            conn
        }
    };
    conn.set_prepared_statement_cache_capacity(256);
    // Plans that do not depend on the values bound: every List is planned for its index
    // whatever the values, and without this SQLite (built with STAT4) prepares a cached
    // statement again whenever a value its planner looked at is bound anew, which was a
    // fifth of a List page's time.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

/// Whether a statement outside a transaction may wait on the disk or another writer.
pub(crate) fn writes(sql: &str) -> bool {
    !sql.trim_start()
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case("SELECT"))
}

#[cfg(test)]
mod tests {
    use crate::{Db, DbError, query};

    /// `fetch_with` hands each row to its function in the order of the rows, its columns read
    /// in place (bytes, text, NULL), stops at the function's error, and refuses a column read
    /// as bytes that holds a number, or as text that is not UTF-8.
    #[tokio::test]
    async fn rows_are_read_in_place() {
        let db = Db::sqlite_memory().await.unwrap();
        let t = db.dialect().types();
        db.execute(&query(format!(
            "CREATE TABLE m (n {} PRIMARY KEY, body {})",
            t.int, t.bytes
        )))
        .await
        .unwrap();
        for n in 0..5i64 {
            db.execute(
                &query("INSERT INTO m (n, body) VALUES ($1, $2)")
                    .bind(n)
                    .bind(vec![n as u8; n as usize + 1]),
            )
            .await
            .unwrap();
        }
        let select = query("SELECT body, NULL, 'é' FROM m WHERE n >= $1 ORDER BY n").bind(1i64);
        let lengths = db
            .fetch_with(&select, |row| {
                assert_eq!(row.bytes(1)?, None);
                assert_eq!(row.text(2)?, Some("é"));
                Ok(row.bytes(0)?.map(<[u8]>::len))
            })
            .await
            .unwrap();
        assert_eq!(lengths, [Some(2), Some(3), Some(4), Some(5)]);
        let failed = db
            .fetch_with(&select, |row| {
                if row.bytes(0)?.unwrap_or_default().len() > 3 {
                    Err(DbError::new("too long"))
                } else {
                    Ok(())
                }
            })
            .await
            .unwrap_err();
        assert_eq!(failed.to_string(), "too long");
        let not_bytes = db
            .fetch_with(&query("SELECT n FROM m"), |row| row.bytes(0).map(drop))
            .await
            .unwrap_err();
        assert!(
            not_bytes.to_string().contains("not bytes or text"),
            "{not_bytes}"
        );
        let not_text = db
            .fetch_with(&query("SELECT x'ff'"), |row| row.text(0).map(drop))
            .await
            .unwrap_err();
        assert!(not_text.to_string().contains("not UTF-8"), "{not_text}");
    }

    /// A large write goes to the log at commit, and into the database file once writes
    /// pause, without a commit waiting for it.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_log_is_copied_into_the_database_when_writes_pause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let db = Db::sqlite_file(&path, 2).await.unwrap();
        let t = db.dialect().types();
        db.execute(&query(format!(
            "CREATE TABLE IF NOT EXISTS b (n {} PRIMARY KEY, data {})",
            t.int, t.bytes
        )))
        .await
        .unwrap();
        let mut tx = db.begin().await.unwrap();
        for n in 0..16i64 {
            tx.execute(
                &query("INSERT INTO b (n, data) VALUES ($1, $2)")
                    .bind(n)
                    .bind(vec![n as u8; 1 << 20]),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let wal = dir.path().join("db.sqlite-wal");
        assert!(size(&wal) >= 16 << 20, "the commit wrote the log");
        assert!(size(&path) < 1 << 20, "and nothing more yet");
        let mut copied = false;
        for _ in 0..100 {
            if size(&path) >= 16 << 20 {
                copied = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(copied, "the log was not copied into the database");
        let count: Option<i64> = db
            .fetch_scalar(&query("SELECT COUNT(*) FROM b"))
            .await
            .unwrap();
        assert_eq!(count, Some(16));
        db.close().await;
    }
}
