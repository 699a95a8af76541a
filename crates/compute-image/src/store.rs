//! Where Compute images live: the [`ComputeImageStore`] trait, and its SQLite implementation.
//!
//! Images are rows of `ci_images` with the columns List filters and sorts on (`name`,
//! `family`, `status` by name, `created_at`) and the `Image` message in `body`. Names are
//! unique in a folder (an index enforces it); every List is one keyset query through
//! `yc_operations::query::sql`, served by a partial index on (folder, sort column, id).

use async_trait::async_trait;
use prost::Message;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use yc_operations::query::sql::{
    KeysetSelect, check_schema, cursor_values, memory_pool, nanos, purge_deleted, query_plan,
    record_schema, sort_keys,
};
use yc_operations::query::{FilterExpr, OrderItem};
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::yandex::cloud::compute::v1::{Image, image};

const COMPONENT: &str = "compute-image";
const SCHEMA_VERSION: i64 = 1;

/// The columns List sorts by, each served by an index on (folder_id, column, id).
const SORT_COLUMNS: &[&str] = &["name", "family", "status", "created_at"];

/// A List: folder, filter, order (the id breaks ties) and where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeQuery {
    /// The folder.
    pub folder_id: String,
    /// Conditions on `name`, `family`, `status` (by name) and `id`.
    pub filter: FilterExpr,
    /// Sort keys among `id`, `name`, `family`, `status`, `created_at`.
    pub order: Vec<OrderItem>,
    /// Continue after this image.
    pub after: Option<String>,
    /// The page size.
    pub limit: usize,
}

/// A store failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComputeStoreError {
    /// Another image of the folder has this name.
    NameTaken(String),
    /// A page token's image is no longer known.
    CursorGone(String),
    /// The store could not do it now; the text is for the log.
    Unavailable(String),
}

impl std::fmt::Display for ComputeStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeStoreError::NameTaken(name) => write!(f, "an image named {name:?} exists"),
            ComputeStoreError::CursorGone(id) => write!(f, "image {id} is no longer known"),
            ComputeStoreError::Unavailable(why) => write!(f, "image store unavailable: {why}"),
        }
    }
}

impl std::error::Error for ComputeStoreError {}

/// Persistence of Compute images. Each method is atomic.
#[async_trait]
pub trait ComputeImageStore: Send + Sync + 'static {
    /// Stores a new image; its name must be free in its folder.
    async fn insert(&self, image: &Image) -> Result<(), ComputeStoreError>;
    /// The image with this id.
    async fn get(&self, id: &str) -> Result<Option<Image>, ComputeStoreError>;
    /// Replaces a stored image; returns whether it existed. Its name must be free.
    async fn update(&self, image: &Image) -> Result<bool, ComputeStoreError>;
    /// Deletes an image; returns whether it existed.
    async fn delete(&self, id: &str, at: Timestamp) -> Result<bool, ComputeStoreError>;
    /// One page of a List, served by an index.
    async fn list(&self, query: &ComputeQuery) -> Result<Vec<Image>, ComputeStoreError>;
    /// The newest READY image of a family in a folder; of several created at the same time,
    /// the one with the greatest id.
    async fn latest_by_family(
        &self,
        folder_id: &str,
        family: &str,
    ) -> Result<Option<Image>, ComputeStoreError>;
}

/// Compute images in SQLite.
#[derive(Debug, Clone)]
pub struct SqliteComputeImageStore {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> ComputeStoreError {
    ComputeStoreError::Unavailable(e.to_string())
}

fn status_name(image: &Image) -> String {
    image::Status::try_from(image.status)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| image.status.to_string())
}

fn decode(body: &[u8]) -> Result<Image, ComputeStoreError> {
    Image::decode(body)
        .map_err(|e| ComputeStoreError::Unavailable(format!("a stored image does not decode: {e}")))
}

/// A unique-index violation on the folder's names.
fn name_conflict(e: sqlx::Error, image: &Image) -> ComputeStoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            ComputeStoreError::NameTaken(image.name.clone())
        }
        _ => unavailable(e),
    }
}

fn column(field: &str) -> &'static str {
    match field {
        "name" => "name",
        "family" => "family",
        "status" => "status",
        "created_at" => "created_at",
        _ => "id",
    }
}

impl SqliteComputeImageStore {
    /// A store in a fresh in-memory database.
    pub async fn in_memory() -> Result<Self, ComputeStoreError> {
        Self::open(memory_pool().await.map_err(unavailable)?).await
    }

    /// A store in the database behind `pool`, whose schema is created or checked.
    pub async fn open(pool: SqlitePool) -> Result<Self, ComputeStoreError> {
        let mut tx = pool.begin().await.map_err(unavailable)?;
        check_schema(&mut tx, COMPONENT, SCHEMA_VERSION)
            .await
            .map_err(unavailable)?
            .map_err(ComputeStoreError::Unavailable)?;
        let mut statements = vec![
            "CREATE TABLE IF NOT EXISTS ci_images (
                id TEXT PRIMARY KEY,
                folder_id TEXT NOT NULL,
                name TEXT NOT NULL,
                family TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                body BLOB NOT NULL,
                deleted_at INTEGER
            )"
            .to_owned(),
            "CREATE UNIQUE INDEX IF NOT EXISTS ci_images_folder_name_unique ON ci_images (folder_id, name) \
             WHERE deleted_at IS NULL AND name <> ''"
                .to_owned(),
            "CREATE INDEX IF NOT EXISTS ci_images_folder_id ON ci_images (folder_id, id) WHERE deleted_at IS NULL"
                .to_owned(),
            "CREATE INDEX IF NOT EXISTS ci_images_family_latest ON ci_images (folder_id, family, status, created_at, id) \
             WHERE deleted_at IS NULL"
                .to_owned(),
            "CREATE INDEX IF NOT EXISTS ci_images_deleted ON ci_images (deleted_at) WHERE deleted_at IS NOT NULL"
                .to_owned(),
        ];
        for sort in SORT_COLUMNS {
            statements.push(format!(
                "CREATE INDEX IF NOT EXISTS ci_images_folder_{sort} ON ci_images (folder_id, {sort}, id) WHERE deleted_at IS NULL"
            ));
        }
        for statement in &statements {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        record_schema(&mut tx, COMPONENT, SCHEMA_VERSION)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Self { pool })
    }

    async fn list_sql(
        &self,
        query: &ComputeQuery,
        prefix: &str,
    ) -> Result<QueryBuilder<'static, Sqlite>, ComputeStoreError> {
        let keys = sort_keys(&query.order, column);
        let cursor = match &query.after {
            None => None,
            Some(id) => Some(
                cursor_values(&self.pool, "ci_images", &keys, &["created_at"], id)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| ComputeStoreError::CursorGone(id.clone()))?,
            ),
        };
        Ok(KeysetSelect {
            prefix,
            select: "SELECT body FROM ci_images WHERE deleted_at IS NULL",
            scope: ("folder_id", query.folder_id.clone()),
            steer_from_scope: false,
            conditions: query
                .filter
                .conditions
                .iter()
                .map(|c| (column(&c.field), c))
                .collect(),
            keys,
            cursor,
            limit: query.limit,
        }
        .build())
    }

    /// SQLite's plan for a List, one line per step.
    pub async fn query_plan(&self, query: &ComputeQuery) -> Result<Vec<String>, ComputeStoreError> {
        let sql = self.list_sql(query, "EXPLAIN QUERY PLAN ").await?;
        query_plan(sql, &self.pool).await.map_err(unavailable)
    }
}

#[async_trait]
impl ComputeImageStore for SqliteComputeImageStore {
    async fn insert(&self, image: &Image) -> Result<(), ComputeStoreError> {
        sqlx::query(
            "INSERT INTO ci_images (id, folder_id, name, family, status, created_at, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&image.id)
        .bind(&image.folder_id)
        .bind(&image.name)
        .bind(&image.family)
        .bind(status_name(image))
        .bind(nanos(image.created_at.unwrap_or_default()))
        .bind(image.encode_to_vec())
        .execute(&self.pool)
        .await
        .map_err(|e| name_conflict(e, image))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Image>, ComputeStoreError> {
        let body: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM ci_images WHERE id = ? AND deleted_at IS NULL")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        body.map(|b| decode(&b)).transpose()
    }

    async fn update(&self, image: &Image) -> Result<bool, ComputeStoreError> {
        let done = sqlx::query(
            "UPDATE ci_images SET name = ?, family = ?, status = ?, body = ? WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(&image.name)
        .bind(&image.family)
        .bind(status_name(image))
        .bind(image.encode_to_vec())
        .bind(&image.id)
        .execute(&self.pool)
        .await
        .map_err(|e| name_conflict(e, image))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete(&self, id: &str, at: Timestamp) -> Result<bool, ComputeStoreError> {
        let now = nanos(at);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let deleted =
            sqlx::query("UPDATE ci_images SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?
                .rows_affected()
                > 0;
        purge_deleted(&mut tx, "ci_images", now)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(deleted)
    }

    async fn list(&self, query: &ComputeQuery) -> Result<Vec<Image>, ComputeStoreError> {
        let mut sql = self.list_sql(query, "").await?;
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|r| decode(r.get::<&[u8], _>("body")))
            .collect()
    }

    async fn latest_by_family(
        &self,
        folder_id: &str,
        family: &str,
    ) -> Result<Option<Image>, ComputeStoreError> {
        let body: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM ci_images WHERE deleted_at IS NULL AND folder_id = ? AND family = ? AND status = ? \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(folder_id)
        .bind(family)
        .bind(image::Status::Ready.as_str_name())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        body.map(|b| decode(&b)).transpose()
    }
}
