//! One SQL layer over the two databases the server runs on: SQLite (embedded, in a file or in
//! memory, through rusqlite) and PostgreSQL (shared by replicas, through sqlx).
//!
//! A store is written once against [`Db`]: statements use `?` placeholders (numbered `$1, $2,
//! …` for PostgreSQL when they run), values are [`Value`]s, rows are read by position with
//! [`Row::get`]. Schema statements are written in SQLite's words `TEXT`, `INTEGER` and `BLOB`,
//! which [`Dialect::ddl`] turns into PostgreSQL's (`TEXT COLLATE "C"`, so that both databases
//! sort text by code point, `BIGINT`, `BYTEA`). Write transactions ([`Db::begin`]) take
//! SQLite's write lock at `BEGIN`, so concurrent writers queue instead of failing to upgrade;
//! on PostgreSQL rows a transaction decides on are locked with [`Dialect::for_update`].
//!
//! SQLite runs in the process: a read is a few microseconds of work on the calling task's
//! thread, with no hand-over to another thread per statement or per row; what may wait on the
//! disk or on another writer (autocommit writes, `BEGIN IMMEDIATE`, `COMMIT`) runs on tokio's
//! blocking threads.

use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which database a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// A schema statement written in SQLite's type names, in this dialect.
    pub fn ddl(self, statement: &str) -> String {
        match self {
            Dialect::Sqlite => statement.to_owned(),
            Dialect::Postgres => {
                let mut out = String::with_capacity(statement.len() + 32);
                let mut word = String::new();
                let flush = |word: &mut String, out: &mut String| {
                    out.push_str(match word.as_str() {
                        "TEXT" => "TEXT COLLATE \"C\"",
                        "INTEGER" => "BIGINT",
                        "BLOB" => "BYTEA",
                        other => other,
                    });
                    word.clear();
                };
                for c in statement.chars() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        word.push(c);
                    } else {
                        flush(&mut word, &mut out);
                        out.push(c);
                    }
                }
                flush(&mut word, &mut out);
                out
            }
        }
    }

    /// ` FOR UPDATE` on PostgreSQL, where a transaction locks the rows it reads to decide on;
    /// nothing on SQLite, whose write transactions hold the whole database.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The statement with its `?` placeholders numbered for PostgreSQL.
    fn placeholders(self, sql: &str) -> std::borrow::Cow<'_, str> {
        match self {
            Dialect::Sqlite => sql.into(),
            Dialect::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out.into()
            }
        }
    }
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text.
    Text(String),
    /// A 64-bit integer.
    Int(i64),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A boolean.
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

/// A statement and its values, in order of their `?` placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    sql: String,
    args: Vec<Value>,
}

/// A statement with `?` placeholders; bind its values with [`Query::bind`].
pub fn query(sql: impl Into<String>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

impl Query {
    /// Binds the next placeholder.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder and binds it.
    pub fn push_bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.sql.push('?');
        self.args.push(value.into());
        self
    }

    /// The statement as written, with `?` placeholders.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// A database failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    message: String,
    unique_violation: bool,
}

impl DbError {
    fn new(message: impl Into<String>) -> Self {
        DbError {
            message: message.into(),
            unique_violation: false,
        }
    }

    /// Whether a unique index or primary key refused the change.
    pub fn is_unique_violation(&self) -> bool {
        self.unique_violation
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        let unique_violation = matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation());
        DbError {
            message: e.to_string(),
            unique_violation,
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        let unique_violation = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        );
        DbError {
            message: e.to_string(),
            unique_violation,
        }
    }
}

/// A column type both databases decode: `String`, `i64`, `Vec<u8>`, `bool` and their
/// `Option`s.
pub trait Column: Sized + for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> {
    /// The value from a SQLite column.
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError>;
}

fn wrong_type(value: &SqliteValue, wanted: &str) -> DbError {
    DbError::new(format!("a SQLite column holds {value:?}, not {wanted}"))
}

impl Column for String {
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Text(s) => Ok(s.clone()),
            other => Err(wrong_type(other, "text")),
        }
    }
}

impl Column for i64 {
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Integer(n) => Ok(*n),
            other => Err(wrong_type(other, "an integer")),
        }
    }
}

impl Column for Vec<u8> {
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Blob(b) => Ok(b.clone()),
            // An empty message may be stored as an empty text by other tools.
            SqliteValue::Text(s) if s.is_empty() => Ok(Vec::new()),
            other => Err(wrong_type(other, "bytes")),
        }
    }
}

impl Column for bool {
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Integer(n) => Ok(*n != 0),
            other => Err(wrong_type(other, "a boolean")),
        }
    }
}

impl<T: Column> Column for Option<T>
where
    Option<T>: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    fn from_sqlite(value: &SqliteValue) -> Result<Self, DbError> {
        match value {
            SqliteValue::Null => Ok(None),
            other => T::from_sqlite(other).map(Some),
        }
    }
}

/// A SQLite value.
pub type SqliteValue = rusqlite::types::Value;

/// A result row.
pub enum Row {
    /// From SQLite: the columns' values.
    Sqlite(Vec<SqliteValue>),
    /// From PostgreSQL.
    Postgres(PgRow),
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use sqlx::Row as _;
        let columns = match self {
            Row::Sqlite(row) => row.len(),
            Row::Postgres(row) => row.len(),
        };
        write!(f, "Row({columns} columns)")
    }
}

impl Row {
    /// The value of the column at `index`.
    pub fn get<T: Column>(&self, index: usize) -> Result<T, DbError> {
        use sqlx::Row as _;
        match self {
            Row::Sqlite(row) => match row.get(index) {
                Some(value) => T::from_sqlite(value),
                None => Err(DbError::new(format!("no column {index} in the row"))),
            },
            Row::Postgres(row) => Ok(row.try_get(index)?),
        }
    }
}

fn pg_query<'q>(
    sql: &'q str,
    q: &'q Query,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let mut s = sqlx::query(sql);
    for value in &q.args {
        s = match value {
            Value::Text(v) => s.bind(v.as_str()),
            Value::Int(v) => s.bind(*v),
            Value::Bytes(v) => s.bind(v.as_slice()),
            Value::Bool(v) => s.bind(*v),
        };
    }
    s
}

/// What a SQLite statement gave: its rows and how many rows it changed.
struct Ran {
    rows: Vec<Vec<SqliteValue>>,
    changed: u64,
}

/// Runs a statement on a SQLite connection, reading every row it returns.
fn sqlite_run(conn: &rusqlite::Connection, q: &Query) -> Result<Ran, DbError> {
    let mut statement = conn.prepare_cached(&q.sql)?;
    for (i, value) in q.args.iter().enumerate() {
        let index = i + 1;
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
enum SqliteTarget {
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
    fn conn(&self) -> Result<&rusqlite::Connection, DbError> {
        self.conn
            .as_ref()
            .ok_or_else(|| DbError::new("the SQLite connection was lost"))
    }

    /// Runs a statement on a blocking thread, for what may wait on the disk or a lock.
    async fn run_blocking(&mut self, q: Query) -> Result<Ran, DbError> {
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
    fn new(target: SqliteTarget, max_connections: u32) -> SqlitePool {
        SqlitePool {
            inner: Arc::new(SqliteInner {
                target,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(
                    usize::try_from(max_connections.max(1)).unwrap_or(1),
                )),
            }),
        }
    }

    async fn acquire(&self) -> Result<SqliteConn, DbError> {
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

    async fn close(&self) {
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
fn writes(sql: &str) -> bool {
    !sql.trim_start()
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case("SELECT"))
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

    async fn sqlite(pool: &SqlitePool, q: &Query) -> Result<Ran, DbError> {
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
            Db::Postgres(pool) => {
                let sql = Dialect::Postgres.placeholders(&q.sql);
                Ok(pg_query(&sql, q).execute(pool).await?.rows_affected())
            }
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
                let sql = Dialect::Postgres.placeholders(&q.sql);
                let rows = pg_query(&sql, q).fetch_all(pool).await?;
                Ok(rows.into_iter().map(Row::Postgres).collect())
            }
        }
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
            Db::Postgres(pool) => {
                let sql = Dialect::Postgres.placeholders(&q.sql);
                Ok(pg_query(&sql, q)
                    .fetch_optional(pool)
                    .await?
                    .map(Row::Postgres))
            }
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

    /// Creates or migrates a component's schema, once among replicas that start at once:
    /// checks its recorded version (a database written by a newer server is refused with a
    /// message that says so), runs `statements` (in SQLite's words, see [`Dialect::ddl`]) and
    /// records `version`.
    pub async fn migrate(
        &self,
        component: &str,
        version: i64,
        statements: &[String],
    ) -> Result<(), String> {
        let dialect = self.dialect();
        let fail = |e: DbError| format!("setting up the {component} schema: {e}");
        let mut tx = self.begin().await.map_err(fail)?;
        if dialect == Dialect::Postgres {
            tx.execute(&query("SELECT pg_advisory_xact_lock(?)").bind(SCHEMA_LOCK))
                .await
                .map_err(fail)?;
        }
        tx.execute(&query(dialect.ddl(
            "CREATE TABLE IF NOT EXISTS yc_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
        )))
        .await
        .map_err(fail)?;
        let found: Option<i64> = tx
            .fetch_scalar(
                &query("SELECT version FROM yc_schema WHERE component = ?").bind(component),
            )
            .await
            .map_err(fail)?;
        if let Some(found) = found.filter(|found| *found > version) {
            return Err(format!(
                "the database holds {component} data in schema version {found}, newer than this \
                 server's {version}; run a newer yc-images"
            ));
        }
        for statement in statements {
            tx.execute(&query(dialect.ddl(statement)))
                .await
                .map_err(fail)?;
        }
        tx.execute(
            &query(
                "INSERT INTO yc_schema (component, version) VALUES (?, ?) \
                 ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            )
            .bind(component)
            .bind(version),
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }
}

/// Serializes schema set-up among PostgreSQL replicas that start at once.
const SCHEMA_LOCK: i64 = 0x7963_696d_6167_6573;

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
            Tx::Postgres(tx) => {
                let sql = Dialect::Postgres.placeholders(&q.sql);
                Ok(pg_query(&sql, q).execute(&mut **tx).await?.rows_affected())
            }
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
                let sql = Dialect::Postgres.placeholders(&q.sql);
                let rows = pg_query(&sql, q).fetch_all(&mut **tx).await?;
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

/// A database for a test suite: a fresh schema of the PostgreSQL at `YC_POSTGRES_URL` (by
/// default the local one, `postgres://postgres@127.0.0.1:5432/test`), dropped by
/// [`TestPostgres::drop_schema`].
#[derive(Debug, Clone)]
pub struct TestPostgres {
    /// A pool whose connections use the fresh schema.
    pub pool: PgPool,
    /// The schema's name.
    pub schema: String,
    /// A URL that connects to the same schema, for another process.
    pub url: String,
    admin: PgPool,
}

impl TestPostgres {
    /// A fresh schema, or `None` (said on standard error, so that a skipped test shows) when
    /// no PostgreSQL is reachable. With `YC_REQUIRE_POSTGRES=1`, which `cargo xtask ci` sets
    /// when it finds one, an unreachable database fails the test instead.
    pub async fn fresh() -> Option<TestPostgres> {
        let url = std::env::var("YC_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let required = std::env::var_os("YC_REQUIRE_POSTGRES").is_some_and(|v| v == "1");
        let admin = match connect_postgres(&url, 1).await {
            Ok(pool) => pool,
            Err(e) => {
                assert!(
                    !required,
                    "YC_REQUIRE_POSTGRES=1 but {url} is not reachable: {e}"
                );
                eprintln!("SKIPPED: PostgreSQL tests: {url} is not reachable ({e})");
                return None;
            }
        };
        let schema = format!("yc_test_{}", crate::ids::new_id("pgt"));
        let created = sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await;
        if let Err(e) = created {
            panic!("creating the test schema {schema} in {url}: {e}");
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-csearch_path%3D{schema}");
        let pool = match connect_postgres(&url, 8).await {
            Ok(pool) => pool,
            Err(e) => panic!("connecting to {url}: {e}"),
        };
        Some(TestPostgres {
            pool,
            schema,
            url,
            admin,
        })
    }

    /// Another pool on the same schema, with connections of its own: what a second server
    /// sharing the database has.
    pub async fn replica_pool(&self) -> PgPool {
        match connect_postgres(&self.url, 4).await {
            Ok(pool) => pool,
            Err(e) => panic!("connecting to {}: {e}", self.url),
        }
    }

    /// The collation of every text column of `table` in the schema, by column name.
    pub async fn text_collations(&self, table: &str) -> Vec<(String, Option<String>)> {
        let collations = sqlx::query_as(
            "SELECT column_name::text, collation_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 AND data_type = 'text' \
             ORDER BY column_name",
        )
        .bind(&self.schema)
        .bind(table)
        .fetch_all(&self.pool)
        .await;
        match collations {
            Ok(collations) => collations,
            Err(e) => panic!("reading the collations of {table}: {e}"),
        }
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(self) {
        self.pool.close().await;
        let dropped = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&self.admin)
            .await;
        if let Err(e) = dropped {
            panic!("dropping the test schema {}: {e}", self.schema);
        }
    }
}
