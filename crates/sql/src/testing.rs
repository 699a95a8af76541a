//! A PostgreSQL schema of its own for each test suite.

use sqlx::postgres::PgPool;

use crate::connect_postgres;

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
    /// no PostgreSQL is reachable. With `YC_REQUIRE_POSTGRES=1` (which `cargo xtask ci` sets
    /// when it finds one) or `CI=true`, an unreachable database fails the test instead.
    pub async fn fresh() -> Option<TestPostgres> {
        let url = std::env::var("YC_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let required = std::env::var_os("YC_REQUIRE_POSTGRES").is_some_and(|v| v == "1")
            || std::env::var_os("CI").is_some_and(|v| v == "true");
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
        let mut random = [0u8; 8];
        if let Err(e) = getrandom::fill(&mut random) {
            panic!("no randomness for a schema name: {e}");
        }
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let schema = format!("yc_test_{suffix}");
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
