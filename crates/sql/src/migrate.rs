//! Schema versions: each component (the operation store, the image stores, …) records the
//! version of its tables in `yc_schema`, and a server refuses a database a newer one wrote.

use crate::{ColumnTypes, Db, DbError, Dialect, query};

/// Serializes schema set-up among PostgreSQL replicas that start at once.
const SCHEMA_LOCK: i64 = 0x7963_696d_6167_6573;

/// One step of an upgrade (see [`Db::migrate_from`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A statement, run as it is (`CREATE TABLE …`).
    Sql(String),
    /// Adds `column` (declared `definition`: its type and constraints) to `table` where the
    /// table exists without it. A table the database does not hold yet is left to the
    /// schema's statements, which create it with the column.
    AddColumn {
        /// The table.
        table: &'static str,
        /// The new column's name.
        column: &'static str,
        /// Its type and constraints (`TEXT`, `BIGINT NOT NULL DEFAULT 0`).
        definition: String,
    },
}

impl Step {
    /// [`Step::AddColumn`].
    pub fn add_column(
        table: &'static str,
        column: &'static str,
        definition: impl Into<String>,
    ) -> Self {
        Step::AddColumn {
            table,
            column,
            definition: definition.into(),
        }
    }
}

impl From<String> for Step {
    fn from(statement: String) -> Self {
        Step::Sql(statement)
    }
}

/// Why a schema could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateError {
    /// The database holds the component's tables in a newer version than this server knows.
    Newer {
        /// The component.
        component: String,
        /// The version in the database.
        found: i64,
        /// The version this server writes.
        known: i64,
    },
    /// The database failed.
    Db {
        /// The component.
        component: String,
        /// What failed.
        error: DbError,
    },
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::Newer {
                component,
                found,
                known,
            } => write!(
                f,
                "the database holds {component} data in schema version {found}, newer than this \
                 server's {known}; run a newer yc-images"
            ),
            MigrateError::Db { component, error } => {
                write!(f, "setting up the {component} schema: {error}")
            }
        }
    }
}

impl std::error::Error for MigrateError {}

impl Db {
    /// Creates or migrates a component's schema, once among replicas that start at once:
    /// checks its recorded version (a database written by a newer server is
    /// [`MigrateError::Newer`]), runs `statements` (written for this database's dialect, see
    /// [`Dialect::types`]) and records `version`, all in one transaction.
    pub async fn migrate(
        &self,
        component: &str,
        version: i64,
        statements: &[String],
    ) -> Result<(), MigrateError> {
        self.migrate_from(component, version, &[], statements)
            .await
            .map(drop)
    }

    /// [`migrate`](Self::migrate) a component whose tables changed: before `statements`, each
    /// upgrade `(to, steps)` runs its steps (`ALTER TABLE …`) when the database holds the
    /// component in a version older than `to`. A new database gets `statements` only, which
    /// create the tables as the newest version has them. Returns the version the database
    /// held before (`None` for a new one), for upgrades that need more than SQL.
    pub async fn migrate_from(
        &self,
        component: &str,
        version: i64,
        upgrades: &[(i64, Vec<Step>)],
        statements: &[String],
    ) -> Result<Option<i64>, MigrateError> {
        let fail = |error: DbError| MigrateError::Db {
            component: component.to_owned(),
            error,
        };
        let dialect = self.dialect();
        let mut tx = self.begin().await.map_err(fail)?;
        if dialect == Dialect::Postgres {
            tx.execute(&query("SELECT pg_advisory_xact_lock($1)").bind(SCHEMA_LOCK))
                .await
                .map_err(fail)?;
        }
        let ColumnTypes { text, int, .. } = dialect.types();
        tx.execute(&query(format!(
            "CREATE TABLE IF NOT EXISTS yc_schema (component {text} PRIMARY KEY, version {int} NOT NULL)"
        )))
        .await
        .map_err(fail)?;
        let found: Option<i64> = tx
            .fetch_scalar(
                &query("SELECT version FROM yc_schema WHERE component = $1").bind(component),
            )
            .await
            .map_err(fail)?;
        if let Some(found) = found.filter(|found| *found > version) {
            return Err(MigrateError::Newer {
                component: component.to_owned(),
                found,
                known: version,
            });
        }
        if let Some(found) = found {
            for (to, steps) in upgrades {
                if found < *to {
                    for step in steps {
                        run_step(&mut tx, step).await.map_err(fail)?;
                    }
                }
            }
        }
        for statement in statements {
            tx.execute(&query(statement.as_str())).await.map_err(fail)?;
        }
        tx.execute(
            &query(
                "INSERT INTO yc_schema (component, version) VALUES ($1, $2) \
                 ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            )
            .bind(component)
            .bind(version),
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(found)
    }
}

async fn run_step(tx: &mut crate::Tx, step: &Step) -> Result<(), DbError> {
    match step {
        Step::Sql(statement) => tx.execute(&query(statement.as_str())).await.map(drop),
        Step::AddColumn {
            table,
            column,
            definition,
        } => {
            let (has_table, has_column) = match tx.dialect() {
                Dialect::Sqlite => (
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
                    "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2",
                ),
                Dialect::Postgres => (
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name = $1",
                    "SELECT COUNT(*) FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
                ),
            };
            let tables: Option<i64> = tx.fetch_scalar(&query(has_table).bind(*table)).await?;
            let columns: Option<i64> = tx
                .fetch_scalar(&query(has_column).bind(*table).bind(*column))
                .await?;
            if tables.unwrap_or(0) == 0 || columns.unwrap_or(0) > 0 {
                return Ok(());
            }
            tx.execute(&query(format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            )))
            .await
            .map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_schema_is_refused_and_an_older_one_migrated() {
        let db = Db::sqlite_memory().await.unwrap();
        let t = db.dialect().types();
        let create = format!("CREATE TABLE IF NOT EXISTS a (id {} PRIMARY KEY)", t.text);
        db.migrate("a", 2, std::slice::from_ref(&create))
            .await
            .unwrap();
        let refused = db.migrate("a", 1, &[]).await.unwrap_err();
        assert_eq!(
            refused,
            MigrateError::Newer {
                component: "a".into(),
                found: 2,
                known: 1
            }
        );
        db.migrate("a", 3, &[]).await.unwrap();
        let found: Option<i64> = db
            .fetch_scalar(&query("SELECT version FROM yc_schema WHERE component = $1").bind("a"))
            .await
            .unwrap();
        assert_eq!(found, Some(3));
        // A statement that fails leaves nothing of the migration behind.
        let bad = db
            .migrate("b", 1, &[create.clone(), "NOT SQL".to_owned()])
            .await
            .unwrap_err();
        assert!(matches!(bad, MigrateError::Db { .. }), "{bad}");
        let b: Option<i64> = db
            .fetch_scalar(&query("SELECT version FROM yc_schema WHERE component = $1").bind("b"))
            .await
            .unwrap();
        assert_eq!(b, None);
    }

    #[tokio::test]
    async fn upgrades_run_only_on_databases_older_than_them() {
        upgrades_run_once(
            Db::sqlite_memory().await.unwrap(),
            Db::sqlite_memory().await.unwrap(),
        )
        .await;
    }

    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn upgrades_run_only_on_postgres_databases_older_than_them() {
        let (Some(old), Some(new)) = (
            crate::TestPostgres::fresh().await,
            crate::TestPostgres::fresh().await,
        ) else {
            return;
        };
        upgrades_run_once(old.pool.clone().into(), new.pool.clone().into()).await;
        old.drop_schema().await;
        new.drop_schema().await;
    }

    async fn upgrades_run_once(db: Db, fresh: Db) {
        let t = db.dialect().types();
        let v1 = format!("CREATE TABLE IF NOT EXISTS r (id {} PRIMARY KEY)", t.text);
        let v2 = format!(
            "CREATE TABLE IF NOT EXISTS r (id {} PRIMARY KEY, size {} NOT NULL DEFAULT 7)",
            t.text, t.int
        );
        let upgrade = vec![(
            2,
            vec![
                Step::add_column("r", "size", format!("{} NOT NULL DEFAULT 7", t.int)),
                // A table the database does not hold yet: the schema creates it whole.
                Step::add_column("later", "size", t.int),
            ],
        )];
        db.migrate("r", 1, std::slice::from_ref(&v1)).await.unwrap();
        db.execute(&query("INSERT INTO r (id) VALUES ('kept')"))
            .await
            .unwrap();
        db.migrate_from("r", 2, &upgrade, std::slice::from_ref(&v2))
            .await
            .unwrap();
        let size: Option<i64> = db
            .fetch_scalar(&query("SELECT size FROM r WHERE id = 'kept'"))
            .await
            .unwrap();
        assert_eq!(size, Some(7));
        // Again at version 2: the column exists, so the upgrade must not run twice.
        db.migrate_from("r", 2, &upgrade, std::slice::from_ref(&v2))
            .await
            .unwrap();
        // Recorded as version 1 with the column there already (a step that ran before a
        // failure elsewhere): adding it again is skipped, not an error.
        db.execute(&query(
            "UPDATE yc_schema SET version = 1 WHERE component = 'r'",
        ))
        .await
        .unwrap();
        db.migrate_from("r", 2, &upgrade, std::slice::from_ref(&v2))
            .await
            .unwrap();
        // A new database gets the newest tables without the upgrade.
        fresh
            .migrate_from("r", 2, &upgrade, std::slice::from_ref(&v2))
            .await
            .unwrap();
        fresh
            .execute(&query("INSERT INTO r (id) VALUES ('new')"))
            .await
            .unwrap();
    }
}
