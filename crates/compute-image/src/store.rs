//! Where Compute images live: the [`ComputeImageStore`] trait, and its SQL implementation on
//! SQLite or PostgreSQL (through [`yc_sql`]).
//!
//! Images are rows of `ci_images` with the columns List filters and sorts on (`name`,
//! `family`, `status` by name, `created_at`) and the `Image` message in `body`. Names are
//! unique in a folder (an index enforces it); every List is one keyset query through
//! `yc_api_runtime::list::sql`, served by a partial index on (folder, sort column, id).
//! An image's access bindings are one row of `ci_image_access`, gone with the image.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prost::Message;
use yc_api_runtime::list::sql::{
    KeysetSelect, cursor_gone, json_follows_body, mark_deleted, nanos, page_columns, purge_deleted,
    read_page_row, sort_keys, stored_forms,
};
use yc_api_runtime::list::{FilterExpr, OrderItem, PageRows};
use yc_api_runtime::stored::Stored;
use yc_proto_types::encoded::Form;
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::access::{
    AccessBinding, AccessBindingDelta, ListAccessBindingsResponse,
};
use yc_proto_types::yandex::cloud::compute::v1::{Image, image};
use yc_sql::{ColumnTypes, Db, Query, Step, query};

const COMPONENT: &str = "compute-image";
/// Version 2 added `ci_image_access`, the images' access bindings; version 3 each image's
/// JSON form (`ci_images.json`), which REST List pages are written from.
const SCHEMA_VERSION: i64 = 3;

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

/// A change of a stored image for [`ComputeImageStore::modify`]: it edits the image as stored
/// now, or refuses it with the status a caller sees.
pub type ImageChange<'a> = dyn Fn(&mut Image) -> Result<(), Status> + Send + Sync + 'a;

/// What [`ComputeImageStore::modify`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Modified {
    /// The image as stored now.
    Changed(Box<Image>),
    /// The change refused the image as it was; nothing was stored.
    Refused(Status),
    /// There is no such image.
    Missing,
}

/// A change of an image's access bindings for
/// [`ComputeImageStore::change_access_bindings`]: it edits them as stored now and returns the
/// deltas that took effect, or refuses with the status a caller sees.
pub type BindingsChange<'a> =
    dyn Fn(&mut Vec<AccessBinding>) -> Result<Vec<AccessBindingDelta>, Status> + Send + Sync + 'a;

/// What [`ComputeImageStore::change_access_bindings`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingsChanged {
    /// The deltas that took effect, now stored.
    Changed(Vec<AccessBindingDelta>),
    /// The change refused the bindings as they were; nothing was stored.
    Refused(Status),
    /// There is no such image.
    Missing,
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
    /// The image with this id, with its stored forms (which Get answers with).
    async fn get(&self, id: &str) -> Result<Option<Arc<Stored<Image>>>, ComputeStoreError>;
    /// Changes the stored image in one transaction: `change` gets the image as it is stored
    /// now and edits it, or refuses with the status a caller sees. Concurrent changes of one
    /// image apply one after the other, each to the result of the one before, on every
    /// replica of a shared database.
    async fn modify(
        &self,
        id: &str,
        change: &ImageChange<'_>,
    ) -> Result<Modified, ComputeStoreError>;
    /// Deletes an image; returns whether it existed.
    async fn delete(&self, id: &str, at: Timestamp) -> Result<bool, ComputeStoreError>;
    /// One page of a List, served by an index: each image (up to `query.limit`) put into
    /// `rows` as it is read, in the rows' form.
    async fn list(
        &self,
        query: &ComputeQuery,
        rows: &mut PageRows,
    ) -> Result<(), ComputeStoreError>;
    /// The newest READY image of a family in a folder; of several created at the same time,
    /// the one with the greatest id.
    async fn latest_by_family(
        &self,
        folder_id: &str,
        family: &str,
    ) -> Result<Option<Image>, ComputeStoreError>;
    /// The access bindings of an image; `None` when there is no such image.
    async fn access_bindings(
        &self,
        id: &str,
    ) -> Result<Option<Vec<AccessBinding>>, ComputeStoreError>;
    /// Changes an image's access bindings in one transaction, as [`modify`](Self::modify)
    /// changes the image: concurrent changes apply one after the other, on every replica.
    async fn change_access_bindings(
        &self,
        id: &str,
        change: &BindingsChange<'_>,
    ) -> Result<BindingsChanged, ComputeStoreError>;
}

/// Compute images in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlComputeImageStore {
    db: Db,
    cache: Option<Arc<ImageCache>>,
}

/// Images by id, kept in memory for Get when this process is the only writer of its database
/// (the embedded store, whose data directory it holds locked). A read fills it only if no
/// write happened while it read, and every write drops the image after it is stored, so it
/// never serves an image older than the store's.
#[derive(Debug)]
struct ImageCache {
    writes: AtomicU64,
    images: Mutex<HashMap<String, Arc<Stored<Image>>>>,
    capacity: usize,
}

impl ImageCache {
    fn get(&self, id: &str) -> Option<Arc<Stored<Image>>> {
        self.images.lock().ok()?.get(id).cloned()
    }

    /// Keeps `image`, read when the write count was `writes`, unless a write came since.
    fn fill(&self, image: &Arc<Stored<Image>>, writes: u64) {
        let Ok(mut images) = self.images.lock() else {
            return;
        };
        if self.writes.load(Ordering::SeqCst) != writes {
            return;
        }
        if images.len() >= self.capacity {
            let evicted = images.keys().next().cloned();
            if let Some(evicted) = evicted {
                images.remove(&evicted);
            }
        }
        images.insert(image.message().id.clone(), image.clone());
    }

    /// After a write of `id` is stored.
    fn written(&self, id: &str) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut images) = self.images.lock() {
            images.remove(id);
        }
    }
}

fn unavailable(e: yc_sql::DbError) -> ComputeStoreError {
    ComputeStoreError::Unavailable(e.to_string())
}

fn status_name(image: &Image) -> String {
    image::Status::try_from(image.status)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| image.status.to_string())
}

/// Stored bindings: a `ListAccessBindingsResponse` with all of them; none without a row.
fn decode_bindings(body: Option<&[u8]>) -> Result<Vec<AccessBinding>, ComputeStoreError> {
    let Some(body) = body else {
        return Ok(Vec::new());
    };
    ListAccessBindingsResponse::decode(body)
        .map(|stored| stored.access_bindings)
        .map_err(|e| {
            ComputeStoreError::Unavailable(format!("stored access bindings do not decode: {e}"))
        })
}

fn decode(body: &[u8]) -> Result<Image, ComputeStoreError> {
    Image::decode(body)
        .map_err(|e| ComputeStoreError::Unavailable(format!("a stored image does not decode: {e}")))
}

/// A unique-index violation on the folder's names.
fn name_conflict(e: yc_sql::DbError, image: &Image) -> ComputeStoreError {
    if e.is_unique_violation() {
        ComputeStoreError::NameTaken(image.name.clone())
    } else {
        unavailable(e)
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

impl SqlComputeImageStore {
    /// A store in a fresh in-memory SQLite database.
    pub async fn in_memory() -> Result<Self, ComputeStoreError> {
        Self::open(Db::sqlite_memory().await.map_err(unavailable)?).await
    }

    /// A store in `db` (`Db::sqlite_file`, `Db::sqlite_memory`, or a `PgPool`, which converts into it), whose schema is created
    /// or checked.
    pub async fn open(db: impl Into<Db>) -> Result<Self, ComputeStoreError> {
        let db = db.into();
        let ColumnTypes { text, int, bytes } = db.dialect().types();
        let mut schema: Vec<String> = vec![
            format!("CREATE TABLE IF NOT EXISTS ci_images (
                id {text} PRIMARY KEY,
                folder_id {text} NOT NULL,
                name {text} NOT NULL,
                family {text} NOT NULL,
                status {text} NOT NULL,
                created_at {int} NOT NULL,
                body {bytes} NOT NULL,
                deleted_at {int},
                json {text}
            )"),
            "CREATE UNIQUE INDEX IF NOT EXISTS ci_images_folder_name_unique ON ci_images (folder_id, name) \
             WHERE deleted_at IS NULL AND name <> ''".to_owned(),
            "CREATE INDEX IF NOT EXISTS ci_images_folder_id ON ci_images (folder_id, id) WHERE deleted_at IS NULL".to_owned(),
            "CREATE INDEX IF NOT EXISTS ci_images_family_latest ON ci_images (folder_id, family, status, created_at, id) \
             WHERE deleted_at IS NULL".to_owned(),
            "CREATE INDEX IF NOT EXISTS ci_images_deleted ON ci_images (deleted_at) WHERE deleted_at IS NOT NULL".to_owned(),
            format!("CREATE TABLE IF NOT EXISTS ci_image_access (
                image_id {text} PRIMARY KEY,
                body {bytes} NOT NULL
            )"),
        ];
        for sort in SORT_COLUMNS {
            schema.push(format!(
                "CREATE INDEX IF NOT EXISTS ci_images_folder_{sort} ON ci_images (folder_id, {sort}, id) WHERE deleted_at IS NULL"
            ));
        }
        schema.extend(json_follows_body(db.dialect(), "ci_images"));
        let upgrades = [(3, vec![Step::add_column("ci_images", "json", text)])];
        db.migrate_from(COMPONENT, SCHEMA_VERSION, &upgrades, &schema)
            .await
            .map_err(|e| ComputeStoreError::Unavailable(e.to_string()))?;
        Ok(Self { db, cache: None })
    }

    /// The same store, keeping up to `capacity` images in memory for Get. Only for a database
    /// no other process writes (the embedded store): a change made elsewhere would not be
    /// seen.
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new(ImageCache {
            writes: AtomicU64::new(0),
            images: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }));
        self
    }

    fn written(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.written(id);
        }
    }

    /// Reads the image in a write transaction (its row locked on PostgreSQL), changes it and
    /// writes it back.
    async fn modify_row(
        &self,
        id: &str,
        change: &ImageChange<'_>,
    ) -> Result<Modified, ComputeStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let sql = format!(
            "SELECT body FROM ci_images WHERE id = $1 AND deleted_at IS NULL{}",
            tx.dialect().for_update()
        );
        let body: Option<Vec<u8>> = tx
            .fetch_scalar(&query(sql).bind(id))
            .await
            .map_err(unavailable)?;
        let Some(body) = body else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(Modified::Missing);
        };
        let mut image = decode(&body)?;
        if let Err(refused) = change(&mut image) {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(Modified::Refused(refused));
        }
        let (body, json) = stored_forms(&image);
        tx.execute(
            &query(
                "UPDATE ci_images SET name = $1, family = $2, status = $3, body = $4, json = $5 \
                 WHERE id = $6 AND deleted_at IS NULL",
            )
            .bind(&image.name)
            .bind(&image.family)
            .bind(status_name(&image))
            .bind(body)
            .bind(json)
            .bind(&image.id),
        )
        .await
        .map_err(|e| name_conflict(e, &image))?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Modified::Changed(Box::new(image)))
    }

    /// Marks an image deleted, and purges images deleted long ago.
    async fn delete_row(&self, id: &str, at: Timestamp) -> Result<bool, ComputeStoreError> {
        let now = nanos(at);
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let deleted = mark_deleted(&mut tx, "ci_images", id, now)
            .await
            .map_err(unavailable)?;
        if deleted {
            tx.execute(&query("DELETE FROM ci_image_access WHERE image_id = $1").bind(id))
                .await
                .map_err(unavailable)?;
        }
        purge_deleted(&mut tx, "ci_images", now)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(deleted)
    }

    /// Reads the bindings with the image's row locked (on PostgreSQL; SQLite writes one at a
    /// time), changes them and writes them back.
    async fn change_bindings_rows(
        &self,
        id: &str,
        change: &BindingsChange<'_>,
    ) -> Result<BindingsChanged, ComputeStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let sql = format!(
            "SELECT id FROM ci_images WHERE id = $1 AND deleted_at IS NULL{}",
            tx.dialect().for_update()
        );
        let found: Option<String> = tx
            .fetch_scalar(&query(sql).bind(id))
            .await
            .map_err(unavailable)?;
        if found.is_none() {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(BindingsChanged::Missing);
        }
        let body: Option<Vec<u8>> = tx
            .fetch_scalar(&query("SELECT body FROM ci_image_access WHERE image_id = $1").bind(id))
            .await
            .map_err(unavailable)?;
        let mut bindings = decode_bindings(body.as_deref())?;
        let deltas = match change(&mut bindings) {
            Ok(deltas) => deltas,
            Err(refused) => {
                tx.rollback().await.map_err(unavailable)?;
                return Ok(BindingsChanged::Refused(refused));
            }
        };
        if bindings.is_empty() {
            tx.execute(&query("DELETE FROM ci_image_access WHERE image_id = $1").bind(id))
                .await
                .map_err(unavailable)?;
        } else {
            let body = ListAccessBindingsResponse {
                access_bindings: bindings,
                next_page_token: String::new(),
            };
            tx.execute(
                &query(
                    "INSERT INTO ci_image_access (image_id, body) VALUES ($1, $2) \
                     ON CONFLICT (image_id) DO UPDATE SET body = excluded.body",
                )
                .bind(id)
                .bind(body.encode_to_vec()),
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(BindingsChanged::Changed(deltas))
    }

    fn list_sql(&self, query: &ComputeQuery, form: Form) -> Query {
        let keys = sort_keys(&query.order, column);
        KeysetSelect {
            columns: page_columns(form),
            table: "ci_images",
            live: Some("deleted_at IS NULL"),
            scope: ("folder_id", query.folder_id.clone()),
            steer_from_scope: false,
            conditions: query
                .filter
                .conditions
                .iter()
                .map(|c| (column(&c.field), c))
                .collect(),
            keys,
            after: query.after.clone(),
            limit: query.limit,
        }
        .build(self.db.dialect())
    }

    /// The database's plan for a List, one line per step (see [`Db::query_plan`]).
    pub async fn query_plan(&self, query: &ComputeQuery) -> Result<Vec<String>, ComputeStoreError> {
        let sql = self.list_sql(query, Form::Protobuf);
        self.db.query_plan(&sql).await.map_err(unavailable)
    }

    async fn body(&self, sql: &Query) -> Result<Option<Image>, ComputeStoreError> {
        let body: Option<Vec<u8>> = self.db.fetch_scalar(sql).await.map_err(unavailable)?;
        body.map(|b| decode(&b)).transpose()
    }
}

#[async_trait]
impl ComputeImageStore for SqlComputeImageStore {
    async fn insert(&self, image: &Image) -> Result<(), ComputeStoreError> {
        let (body, json) = stored_forms(image);
        let done = self
            .db
            .execute(
                &query(
                    "INSERT INTO ci_images (id, folder_id, name, family, status, created_at, body, json) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&image.id)
                .bind(&image.folder_id)
                .bind(&image.name)
                .bind(&image.family)
                .bind(status_name(image))
                .bind(nanos(image.created_at.unwrap_or_default()))
                .bind(body)
                .bind(json),
            )
            .await;
        // Whatever the outcome, the cache forgets the image.
        self.written(&image.id);
        done.map_err(|e| name_conflict(e, image))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Arc<Stored<Image>>>, ComputeStoreError> {
        let writes = match &self.cache {
            Some(cache) => match cache.get(id) {
                Some(image) => return Ok(Some(image)),
                None => cache.writes.load(Ordering::SeqCst),
            },
            None => 0,
        };
        let image = Stored::fetch(
            &self.db,
            &query("SELECT body, json FROM ci_images WHERE id = $1 AND deleted_at IS NULL")
                .bind(id),
        )
        .await
        .map_err(unavailable)?
        .map(Arc::new);
        if let (Some(cache), Some(image)) = (&self.cache, &image) {
            cache.fill(image, writes);
        }
        Ok(image)
    }

    async fn modify(
        &self,
        id: &str,
        change: &ImageChange<'_>,
    ) -> Result<Modified, ComputeStoreError> {
        let modified = self.modify_row(id, change).await;
        self.written(id);
        modified
    }

    async fn delete(&self, id: &str, at: Timestamp) -> Result<bool, ComputeStoreError> {
        let deleted = self.delete_row(id, at).await;
        self.written(id);
        deleted
    }

    async fn list(
        &self,
        query: &ComputeQuery,
        rows: &mut PageRows,
    ) -> Result<(), ComputeStoreError> {
        let sql = self.list_sql(query, rows.form());
        self.db
            .fetch_with(&sql, |row| read_page_row::<Image>(row, rows))
            .await
            .map_err(unavailable)?;
        match cursor_gone(
            &self.db,
            "ci_images",
            query.after.as_deref(),
            rows.is_empty(),
        )
        .await
        .map_err(unavailable)?
        {
            Some(id) => Err(ComputeStoreError::CursorGone(id.to_owned())),
            None => Ok(()),
        }
    }

    async fn latest_by_family(
        &self,
        folder_id: &str,
        family: &str,
    ) -> Result<Option<Image>, ComputeStoreError> {
        self.body(
            &query(
                "SELECT body FROM ci_images WHERE deleted_at IS NULL AND folder_id = $1 AND family = $2 \
                 AND status = $3 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(folder_id)
            .bind(family)
            .bind(image::Status::Ready.as_str_name()),
        )
        .await
    }

    async fn access_bindings(
        &self,
        id: &str,
    ) -> Result<Option<Vec<AccessBinding>>, ComputeStoreError> {
        let rows = self
            .db
            .fetch_all(
                &query(
                    "SELECT a.body FROM ci_images i LEFT JOIN ci_image_access a ON a.image_id = i.id \
                     WHERE i.id = $1 AND i.deleted_at IS NULL",
                )
                .bind(id),
            )
            .await
            .map_err(unavailable)?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let body: Option<Vec<u8>> = row.get(0).map_err(unavailable)?;
        decode_bindings(body.as_deref()).map(Some)
    }

    async fn change_access_bindings(
        &self,
        id: &str,
        change: &BindingsChange<'_>,
    ) -> Result<BindingsChanged, ComputeStoreError> {
        self.change_bindings_rows(id, change).await
    }
}
