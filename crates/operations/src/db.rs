//! One SQL layer over the two databases the server runs on: SQLite (embedded, in a file or in
//! memory) and PostgreSQL (shared by replicas).
//!
//! A store is written once against [`Db`]: statements use `?` placeholders (numbered `$1, $2,
//! …` for PostgreSQL when they run), values are [`Value`]s, rows are read by position with
//! [`Row::get`]. Schema statements are written in SQLite's words `TEXT`, `INTEGER` and `BLOB`,
//! which [`Dialect::ddl`] turns into PostgreSQL's (`TEXT COLLATE "C"`, so that both databases
//! sort text by code point, `BIGINT`, `BYTEA`). Write transactions ([`Db::begin`]) take
//! SQLite's write lock at `BEGIN`, so concurrent writers queue instead of failing to upgrade;
//! on PostgreSQL rows a transaction decides on are locked with [`Dialect::for_update`].

use std::str::FromStr as _;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Postgres, Sqlite};

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

/// A column type both databases decode: `String`, `i64`, `Vec<u8>`, `bool` and their
/// `Option`s.
pub trait Column:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
{
}

impl<T> Column for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
{
}

/// A result row.
pub enum Row {
    /// From SQLite.
    Sqlite(SqliteRow),
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
    pub fn get<T: Column>(&self, index: usize) -> Result<T, sqlx::Error> {
        use sqlx::Row as _;
        match self {
            Row::Sqlite(row) => row.try_get(index),
            Row::Postgres(row) => row.try_get(index),
        }
    }
}

fn sqlite_query(q: &Query) -> sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments<'_>> {
    let mut s = sqlx::query(&q.sql);
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

/// Runs a query's `$method` (`execute`, `fetch_all`, `fetch_optional`) on a SQLite or
/// PostgreSQL executor: one definition of each call for pools and transactions.
macro_rules! dispatch {
    ($target:expr, $q:expr, $method:ident) => {
        match $target {
            Target::Sqlite(e) => sqlite_query($q).$method(e).await.map(Into::into),
            Target::Postgres(e) => {
                let sql = Dialect::Postgres.placeholders(&$q.sql);
                pg_query(&sql, $q).$method(e).await.map(Into::into)
            }
        }
    };
}

/// Where a statement runs.
enum Target<L, P> {
    Sqlite(L),
    Postgres(P),
}

/// A database: a pool of SQLite or PostgreSQL connections.
#[derive(Debug, Clone)]
pub enum Db {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

impl From<SqlitePool> for Db {
    fn from(pool: SqlitePool) -> Self {
        Db::Sqlite(pool)
    }
}

impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        Db::Postgres(pool)
    }
}

/// Rows affected by a statement.
struct Affected(u64);
impl From<sqlx::sqlite::SqliteQueryResult> for Affected {
    fn from(r: sqlx::sqlite::SqliteQueryResult) -> Self {
        Affected(r.rows_affected())
    }
}
impl From<sqlx::postgres::PgQueryResult> for Affected {
    fn from(r: sqlx::postgres::PgQueryResult) -> Self {
        Affected(r.rows_affected())
    }
}

/// Rows of a result.
struct Rows(Vec<Row>);
impl From<Vec<SqliteRow>> for Rows {
    fn from(r: Vec<SqliteRow>) -> Self {
        Rows(r.into_iter().map(Row::Sqlite).collect())
    }
}
impl From<Vec<PgRow>> for Rows {
    fn from(r: Vec<PgRow>) -> Self {
        Rows(r.into_iter().map(Row::Postgres).collect())
    }
}

/// At most one row of a result.
struct MaybeRow(Option<Row>);
impl From<Option<SqliteRow>> for MaybeRow {
    fn from(r: Option<SqliteRow>) -> Self {
        MaybeRow(r.map(Row::Sqlite))
    }
}
impl From<Option<PgRow>> for MaybeRow {
    fn from(r: Option<PgRow>) -> Self {
        MaybeRow(r.map(Row::Postgres))
    }
}

/// The statements every executor runs: a pool ([`Db`], `&self`) or a transaction ([`Tx`],
/// `&mut self`).
macro_rules! executor_methods {
    ($this:ident, $($receiver:tt)+) => {
        /// Runs a statement; returns the number of rows it changed.
        pub async fn execute($($receiver)+, q: &Query) -> Result<u64, sqlx::Error> {
            let done: Affected = dispatch!($this.target(), q, execute)?;
            Ok(done.0)
        }

        /// Every row of a query.
        pub async fn fetch_all($($receiver)+, q: &Query) -> Result<Vec<Row>, sqlx::Error> {
            let rows: Rows = dispatch!($this.target(), q, fetch_all)?;
            Ok(rows.0)
        }

        /// The first row of a query, if any.
        pub async fn fetch_optional($($receiver)+, q: &Query) -> Result<Option<Row>, sqlx::Error> {
            let row: MaybeRow = dispatch!($this.target(), q, fetch_optional)?;
            Ok(row.0)
        }

        /// The first column of the first row of a query, if any.
        pub async fn fetch_scalar<T: Column>($($receiver)+, q: &Query) -> Result<Option<T>, sqlx::Error> {
            $this.fetch_optional(q).await?.map(|row| row.get(0)).transpose()
        }
    };
}

impl Db {
    /// A fresh in-memory SQLite database: one connection, since each connection to
    /// `:memory:` would be a database of its own.
    pub async fn sqlite_memory() -> Result<Db, sqlx::Error> {
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(sqlx::sqlite::SqliteConnectOptions::new().in_memory(true))
            .await
            .map(Db::Sqlite)
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

    fn target(&self) -> Target<&SqlitePool, &PgPool> {
        match self {
            Db::Sqlite(p) => Target::Sqlite(p),
            Db::Postgres(p) => Target::Postgres(p),
        }
    }

    executor_methods!(self, &self);

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// The plan the database chooses for a query, one line per step. PostgreSQL is asked
    /// with sequential scans and sorts priced out, so that the plan shows whether an index
    /// can serve the query at all, whatever the size of the tables.
    pub async fn query_plan(&self, q: &Query) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let plan = match &mut tx {
            Tx::Sqlite(_) => {
                let explain = Query {
                    sql: format!("EXPLAIN QUERY PLAN {}", q.sql),
                    args: q.args.clone(),
                };
                let rows = tx.fetch_all(&explain).await?;
                rows.iter().map(|r| r.get::<String>(3)).collect()
            }
            Tx::Postgres(_) => {
                for setting in ["enable_seqscan", "enable_sort", "enable_bitmapscan"] {
                    tx.execute(&query(format!("SET LOCAL {setting} = off")))
                        .await?;
                }
                let explain = Query {
                    sql: format!("EXPLAIN {}", q.sql),
                    args: q.args.clone(),
                };
                let rows = tx.fetch_all(&explain).await?;
                rows.iter().map(|r| r.get::<String>(0)).collect()
            }
        };
        tx.rollback().await?;
        plan
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
        let fail = |e: sqlx::Error| format!("setting up the {component} schema: {e}");
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
#[derive(Debug)]
pub enum Tx {
    /// On SQLite.
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    fn target(&mut self) -> Target<&mut sqlx::SqliteConnection, &mut sqlx::PgConnection> {
        match self {
            Tx::Sqlite(tx) => Target::Sqlite(&mut **tx),
            Tx::Postgres(tx) => Target::Postgres(&mut **tx),
        }
    }

    executor_methods!(self, &mut self);

    /// The dialect of the database.
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Makes the transaction's changes durable.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    /// Undoes the transaction's changes.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await,
            Tx::Postgres(tx) => tx.rollback().await,
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
