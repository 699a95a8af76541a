//! The [`ImageStore`] in SQL: on SQLite (in memory for tests and embedding, or in a file) or
//! on PostgreSQL (shared by replicas), one implementation through [`yc_sql`].
//!
//! Images are rows of `cr_images` with the columns List filters and sorts on, and the rest of
//! the `Image` message, tags included, encoded in `body`; `cr_tags` maps a repository's tags to
//! images. Every List is one query
//! whose scope, `name` conditions, order and keyset cursor a partial index on
//! `(scope column, sort column, id)` serves; deleted rows stay (with `deleted_at`) for a day so
//! that page tokens which stop at them keep working.

use async_trait::async_trait;
use prost::Message;
use yc_api_runtime::list::sql::{
    KeysetSelect, cursor_gone, json_follows_body, mark_deleted, nanos, page_columns, purge_deleted,
    read_page_row, sort_keys, stored_forms,
};
use yc_api_runtime::list::{FilterOp, PageRows};
use yc_api_runtime::stored::Stored;
use yc_proto_types::encoded::Form;
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::yandex::cloud::containerregistry::v1::Image;
use yc_sql::{Db, Query, Step, Tx, query};

use crate::store::{
    ImageQuery, ImageStore, ImageStoreError, PushImage, Pushed, Referrer, Referring, Registry,
    RegistryChange, RegistryFacts, RegistryModified, RegistryQuery, Repository, RepositoryQuery,
    RepositoryScope, Scope,
};
use yc_proto_types::yandex::cloud::containerregistry::v1::registry;

const COMPONENT: &str = "registry-image";
/// Version 5 added each image's JSON form (`cr_images.json`), which REST List pages are
/// written from.
const SCHEMA_VERSION: i64 = 5;

/// From version 1, whose registries had only an id, a folder and a name (all ACTIVE).
fn upgrades(dialect: yc_sql::Dialect) -> Vec<(i64, Vec<Step>)> {
    let yc_sql::ColumnTypes { text, int, bytes } = dialect.types();
    vec![
        (
            2,
            vec![
                Step::add_column(
                    "cr_registries",
                    "status",
                    format!("{text} NOT NULL DEFAULT 'ACTIVE'"),
                ),
                Step::add_column(
                    "cr_registries",
                    "created_at",
                    format!("{int} NOT NULL DEFAULT 0"),
                ),
                Step::add_column("cr_registries", "body", bytes),
                Step::add_column("cr_registries", "deleted_at", int),
            ],
        ),
        (5, vec![Step::add_column("cr_images", "json", text)]),
    ]
}

/// The schema, in `dialect`.
fn schema(dialect: yc_sql::Dialect) -> Vec<String> {
    let yc_sql::ColumnTypes { text, int, bytes } = dialect.types();
    vec![
        format!("CREATE TABLE IF NOT EXISTS cr_registries (
        id {text} PRIMARY KEY,
        folder_id {text} NOT NULL,
        name {text} NOT NULL,
        status {text} NOT NULL DEFAULT 'ACTIVE',
        created_at {int} NOT NULL DEFAULT 0,
        body {bytes},
        deleted_at {int}
    )"),
        // A name is unique within its folder; many registries may have none.
        "CREATE UNIQUE INDEX IF NOT EXISTS cr_registries_name ON cr_registries (folder_id, name) WHERE deleted_at IS NULL AND name <> ''".to_owned(),
        // List: a folder's registries in id order.
        "CREATE INDEX IF NOT EXISTS cr_registries_folder ON cr_registries (folder_id, id) WHERE deleted_at IS NULL".to_owned(),
        "CREATE INDEX IF NOT EXISTS cr_registries_deleted ON cr_registries (deleted_at) WHERE deleted_at IS NOT NULL".to_owned(),
        // A repository while it holds an image; List by registry or folder, by name or id.
        format!("CREATE TABLE IF NOT EXISTS cr_repositories (
        id {text} PRIMARY KEY,
        registry_id {text} NOT NULL,
        folder_id {text} NOT NULL,
        name {text} NOT NULL UNIQUE
    )"),
        "CREATE INDEX IF NOT EXISTS cr_repositories_registry_name ON cr_repositories (registry_id, name, id)".to_owned(),
        "CREATE INDEX IF NOT EXISTS cr_repositories_registry_id ON cr_repositories (registry_id, id)".to_owned(),
        "CREATE INDEX IF NOT EXISTS cr_repositories_folder_name ON cr_repositories (folder_id, name, id)".to_owned(),
        "CREATE INDEX IF NOT EXISTS cr_repositories_folder_id ON cr_repositories (folder_id, id)".to_owned(),
        // The blobs each live image needs: what garbage collection keeps.
        format!("CREATE TABLE IF NOT EXISTS cr_image_blobs (
        image_id {text} NOT NULL,
        registry_id {text} NOT NULL,
        digest {text} NOT NULL,
        PRIMARY KEY (image_id, digest)
    )"),
        "CREATE INDEX IF NOT EXISTS cr_image_blobs_digest ON cr_image_blobs (registry_id, digest)".to_owned(),
        // Manifests that refer to another (signatures, SBOMs), for the referrers API.
        format!("CREATE TABLE IF NOT EXISTS cr_referrers (
        image_id {text} PRIMARY KEY,
        name {text} NOT NULL,
        subject {text} NOT NULL,
        digest {text} NOT NULL,
        media_type {text} NOT NULL,
        artifact_type {text} NOT NULL,
        size {int} NOT NULL,
        annotations {text} NOT NULL
    )"),
        "CREATE INDEX IF NOT EXISTS cr_referrers_subject ON cr_referrers (name, subject, digest)".to_owned(),
        format!("CREATE TABLE IF NOT EXISTS cr_images (
        id {text} PRIMARY KEY,
        registry_id {text} NOT NULL,
        folder_id {text} NOT NULL,
        name {text} NOT NULL,
        digest {text} NOT NULL,
        created_at {int} NOT NULL,
        last_modified {int} NOT NULL,
        body {bytes} NOT NULL,
        deleted_at {int},
        json {text}
    )"),
        "CREATE UNIQUE INDEX IF NOT EXISTS cr_images_manifest ON cr_images (name, digest) WHERE deleted_at IS NULL".to_owned(),
        "CREATE INDEX IF NOT EXISTS cr_images_deleted ON cr_images (deleted_at) WHERE deleted_at IS NOT NULL".to_owned(),
        format!("CREATE TABLE IF NOT EXISTS cr_tags (
        name {text} NOT NULL,
        tag {text} NOT NULL,
        image_id {text} NOT NULL,
        PRIMARY KEY (name, tag)
    )"),
        "CREATE INDEX IF NOT EXISTS cr_tags_image ON cr_tags (image_id, tag)".to_owned(),
    ]
}

/// The scope columns and sort columns that List indexes cover: one partial index for each
/// pair, ending in the id that breaks ties.
const SCOPE_COLUMNS: &[&str] = &["name", "registry_id", "folder_id"];
const SORT_COLUMNS: &[&str] = &["name", "digest", "created_at", "last_modified"];

/// Registry images in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlImageStore {
    db: Db,
}

fn unavailable(e: yc_sql::DbError) -> ImageStoreError {
    ImageStoreError::Unavailable(e.to_string())
}

impl SqlImageStore {
    /// A store in a fresh in-memory SQLite database.
    pub async fn in_memory() -> Result<Self, ImageStoreError> {
        Self::open(Db::sqlite_memory().await.map_err(unavailable)?).await
    }

    /// Pushes many images in one transaction, each as [`ImageStore::push`] would: for
    /// seeding a large registry at once.
    pub async fn push_many(
        &self,
        pushes: impl IntoIterator<Item = (PushImage, Timestamp)>,
    ) -> Result<usize, ImageStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let mut count = 0;
        for (push, at) in pushes {
            push_in(&mut tx, push, at).await?;
            count += 1;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(count)
    }

    /// The query plan the database chooses for a List, one line per step (see
    /// [`Db::query_plan`]): to check that an index serves it, never a scan of every image.
    pub async fn query_plan(&self, query: &ImageQuery) -> Result<Vec<String>, ImageStoreError> {
        let sql = self.list_sql(query, Form::Protobuf);
        self.db.query_plan(&sql).await.map_err(unavailable)
    }

    /// The query plan of a List of repositories (see [`SqlImageStore::query_plan`]).
    pub async fn repositories_query_plan(
        &self,
        list: &RepositoryQuery,
    ) -> Result<Vec<String>, ImageStoreError> {
        let sql = self.repositories_sql(list);
        self.db.query_plan(&sql).await.map_err(unavailable)
    }

    /// The query plan of a List of registries (see [`SqlImageStore::query_plan`]).
    pub async fn registries_query_plan(
        &self,
        list: &RegistryQuery,
    ) -> Result<Vec<String>, ImageStoreError> {
        let sql = self.registries_sql(list);
        self.db.query_plan(&sql).await.map_err(unavailable)
    }

    /// `CursorGone` when a page after `after` came back empty because that row of `table` is
    /// gone (see [`cursor_gone`]).
    async fn check_cursor(
        &self,
        table: &str,
        after: Option<&str>,
        page_empty: bool,
    ) -> Result<(), ImageStoreError> {
        match cursor_gone(&self.db, table, after, page_empty)
            .await
            .map_err(unavailable)?
        {
            Some(id) => Err(ImageStoreError::CursorGone(id.to_owned())),
            None => Ok(()),
        }
    }

    /// The SQL of a List of repositories.
    fn repositories_sql(&self, list: &RepositoryQuery) -> Query {
        let keys = sort_keys(
            &list.order,
            |field| if field == "name" { "name" } else { "id" },
        );
        let scope = match &list.scope {
            RepositoryScope::Registry(id) => ("registry_id", id.clone()),
            RepositoryScope::Folder(id) => ("folder_id", id.clone()),
        };
        // Every row is a live repository.
        KeysetSelect {
            columns: "id, name",
            table: "cr_repositories",
            live: None,
            steer_from_scope: false,
            scope,
            conditions: list.filter.conditions.iter().map(|c| ("name", c)).collect(),
            keys,
            after: list.after.clone(),
            limit: list.limit,
        }
        .build(self.db.dialect())
    }

    /// The SQL of a List of registries.
    fn registries_sql(&self, list: &RegistryQuery) -> Query {
        let keys = vec![("id", false)];
        KeysetSelect {
            columns: REGISTRY_COLUMNS,
            table: "cr_registries",
            live: Some("deleted_at IS NULL"),
            steer_from_scope: false,
            scope: ("folder_id", list.folder_id.clone()),
            conditions: list.filter.conditions.iter().map(|c| ("name", c)).collect(),
            keys,
            after: list.after.clone(),
            limit: list.limit,
        }
        .build(self.db.dialect())
    }

    /// The SQL of a List.
    fn list_sql(&self, query: &ImageQuery, form: Form) -> Query {
        let keys = sort_keys(&query.order, column);
        let scope = match &query.scope {
            Scope::Repository(name) => ("name", name.clone()),
            Scope::Registry(id) => ("registry_id", id.clone()),
            Scope::Folder(id) => ("folder_id", id.clone()),
        };
        // With `name = …` or `name IN (…)` among the conditions, the index on (name, sort
        // key, id) reads only the matching repositories, not the whole scope.
        let selective_name = query
            .filter
            .conditions
            .iter()
            .any(|c| matches!(c.op, FilterOp::Eq | FilterOp::In));
        KeysetSelect {
            columns: page_columns(form),
            table: "cr_images",
            live: Some("deleted_at IS NULL"),
            steer_from_scope: selective_name && scope.0 != "name",
            scope: (scope.0, scope.1),
            conditions: query
                .filter
                .conditions
                .iter()
                .map(|c| ("name", c))
                .collect(),
            keys,
            after: query.after.clone(),
            limit: query.limit,
        }
        .build(self.db.dialect())
    }

    /// A store in `db` (`Db::sqlite_file`, `Db::sqlite_memory`, or a `PgPool`, which converts into it), whose schema is created
    /// or checked.
    pub async fn open(db: impl Into<Db>) -> Result<Self, ImageStoreError> {
        let db = db.into();
        let mut schema = schema(db.dialect());
        for scope in SCOPE_COLUMNS {
            for sort in SORT_COLUMNS.iter().filter(|s| *s != scope) {
                schema.push(format!(
                    "CREATE INDEX IF NOT EXISTS cr_images_{scope}_{sort} ON cr_images ({scope}, {sort}, id) WHERE deleted_at IS NULL"
                ));
            }
        }
        // Listing one repository by name (its default order) needs (name, id).
        schema.push("CREATE INDEX IF NOT EXISTS cr_images_name_id ON cr_images (name, id) WHERE deleted_at IS NULL".to_owned());
        schema.extend(json_follows_body(db.dialect(), "cr_images"));
        let found = db
            .migrate_from(COMPONENT, SCHEMA_VERSION, &upgrades(db.dialect()), &schema)
            .await
            .map_err(|e| ImageStoreError::Unavailable(e.to_string()))?;
        let store = Self { db };
        if found.is_some_and(|found| found < 3) {
            store.fill_repositories().await?;
        }
        if found.is_some_and(|found| found < 4) {
            store.fill_image_blobs().await?;
        }
        Ok(store)
    }

    /// Records the blobs of the images of a database from before they were recorded (schema
    /// version 4): once, when it is upgraded. Those images are single-platform: their
    /// manifest, config and layers.
    async fn fill_image_blobs(&self) -> Result<(), ImageStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let rows = tx
            .fetch_all(&query(
                "SELECT registry_id, body FROM cr_images WHERE deleted_at IS NULL",
            ))
            .await
            .map_err(unavailable)?;
        for row in rows {
            let registry_id: String = row.get(0).map_err(unavailable)?;
            let image = decode(&row.get::<Vec<u8>>(1).map_err(unavailable)?)?;
            let blobs: Vec<String> = std::iter::once(image.digest.clone())
                .chain(image.config.iter().map(|c| c.digest.clone()))
                .chain(image.layers.iter().map(|l| l.digest.clone()))
                .collect();
            record_blobs(&mut tx, &image.id, &registry_id, &blobs).await?;
        }
        tx.commit().await.map_err(unavailable)
    }

    /// Records the repositories of a database from before repositories were recorded
    /// (schema version 3): once, when it is upgraded.
    async fn fill_repositories(&self) -> Result<(), ImageStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let rows = tx
            .fetch_all(&query(
                "SELECT DISTINCT name, registry_id, folder_id FROM cr_images WHERE deleted_at IS NULL",
            ))
            .await
            .map_err(unavailable)?;
        for row in rows {
            let name: String = row.get(0).map_err(unavailable)?;
            let registry_id: String = row.get(1).map_err(unavailable)?;
            let folder_id: String = row.get(2).map_err(unavailable)?;
            record_repository(&mut tx, &name, &registry_id, &folder_id).await?;
        }
        tx.commit().await.map_err(unavailable)
    }
}

fn decode(body: &[u8]) -> Result<Image, ImageStoreError> {
    Image::decode(body)
        .map_err(|e| ImageStoreError::Unavailable(format!("a stored image does not decode: {e}")))
}

/// The column of a sort field; the fields are checked by the query parser, and anything else
/// sorts by id.
fn column(field: &str) -> &'static str {
    match field {
        "name" => "name",
        "digest" => "digest",
        "created_at" => "created_at",
        "last_modified" => "last_modified",
        _ => "id",
    }
}

async fn push_in(tx: &mut Tx, push: PushImage, at: Timestamp) -> Result<Pushed, ImageStoreError> {
    let now = nanos(at);
    // Locking the registry's row serializes pushes into it among replicas.
    let row = tx
        .fetch_optional(
            &query(format!(
                "SELECT folder_id, status FROM cr_registries WHERE id = $1 AND deleted_at IS NULL{}",
                tx.dialect().for_update()
            ))
            .bind(&push.registry_id),
        )
        .await
        .map_err(unavailable)?;
    let Some(row) = row else {
        return Err(ImageStoreError::NoRegistry(push.registry_id));
    };
    let folder_id: String = row.get(0).map_err(unavailable)?;
    let status: String = row.get(1).map_err(unavailable)?;
    if status != registry::Status::Active.as_str_name() {
        return Err(ImageStoreError::RegistryNotActive(push.registry_id));
    }
    // With the registry locked, garbage collection of its blobs waits for this push (see
    // `SqlBlobStore::collect_garbage`); what it took before is not there.
    if !push.linked.is_empty() {
        let mut sql = query("SELECT digest FROM cr_blob_links WHERE registry_id = ");
        sql.push_bind(push.registry_id.clone())
            .push(" AND digest IN (");
        for (i, digest) in push.linked.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push_bind(digest.clone());
        }
        sql.push(")");
        let present: Vec<String> = tx
            .fetch_all(&sql)
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| row.get(0))
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        let gone: Vec<String> = push
            .linked
            .iter()
            .filter(|d| !present.contains(d))
            .cloned()
            .collect();
        if !gone.is_empty() {
            return Err(ImageStoreError::BlobsGone(gone));
        }
    }
    let existing: Option<String> = tx
        .fetch_scalar(
            &query(
                "SELECT id FROM cr_images WHERE name = $1 AND digest = $2 AND deleted_at IS NULL",
            )
            .bind(&push.repository)
            .bind(&push.digest),
        )
        .await
        .map_err(unavailable)?;
    let created = existing.is_none();
    let id = match existing {
        Some(id) => id,
        None => {
            let id = yc_api_runtime::ids::new_id("crp");
            let image = Image {
                id: id.clone(),
                name: push.repository.clone(),
                digest: push.digest.clone(),
                compressed_size: push.compressed_size,
                config: (!push.config.digest.is_empty()).then(|| push.config.clone()),
                layers: push.layers.clone(),
                tags: Vec::new(),
                created_at: Some(at),
            };
            let (body, json) = stored_forms(&image);
            tx.execute(
                &query(
                    "INSERT INTO cr_images (id, registry_id, folder_id, name, digest, created_at, last_modified, body, json) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&id)
                .bind(&push.registry_id)
                .bind(&folder_id)
                .bind(&push.repository)
                .bind(&push.digest)
                .bind(now)
                .bind(now)
                .bind(body)
                .bind(json),
            )
            .await
            .map_err(unavailable)?;
            record_repository(tx, &push.repository, &push.registry_id, &folder_id).await?;
            record_blobs(tx, &id, &push.registry_id, &push.blobs).await?;
            if let Some(referrer) = &push.referrer {
                tx.execute(
                    &query(
                        "INSERT INTO cr_referrers (image_id, name, subject, digest, media_type, \
                         artifact_type, size, annotations) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(&id)
                    .bind(&push.repository)
                    .bind(&referrer.subject)
                    .bind(&push.digest)
                    .bind(&referrer.media_type)
                    .bind(&referrer.artifact_type)
                    .bind(referrer.size)
                    .bind(&referrer.annotations),
                )
                .await
                .map_err(unavailable)?;
            }
            id
        }
    };
    if let Some(tag) = &push.tag {
        let holder: Option<String> = tx
            .fetch_scalar(
                &query("SELECT image_id FROM cr_tags WHERE name = $1 AND tag = $2")
                    .bind(&push.repository)
                    .bind(tag),
            )
            .await
            .map_err(unavailable)?;
        if holder.as_deref() != Some(id.as_str()) {
            tx.execute(
                &query(
                    "INSERT INTO cr_tags (name, tag, image_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (name, tag) DO UPDATE SET image_id = excluded.image_id",
                )
                .bind(&push.repository)
                .bind(tag)
                .bind(&id),
            )
            .await
            .map_err(unavailable)?;
            // Both the image that gets the tag and the one that loses it have changed.
            for changed in std::iter::once(&id).chain(holder.as_ref()) {
                refresh_tags(tx, changed, now).await?;
            }
        }
    }
    let image = body(tx, &id).await?;
    Ok(Pushed { image, created })
}

/// Records that the image `id` of `registry_id` needs `blobs`.
async fn record_blobs(
    tx: &mut Tx,
    id: &str,
    registry_id: &str,
    blobs: &[String],
) -> Result<(), ImageStoreError> {
    for digest in blobs {
        tx.execute(
            &query(
                "INSERT INTO cr_image_blobs (image_id, registry_id, digest) VALUES ($1, $2, $3) \
                 ON CONFLICT (image_id, digest) DO NOTHING",
            )
            .bind(id)
            .bind(registry_id)
            .bind(digest),
        )
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Records the repository `name` (a no-op when it is recorded).
async fn record_repository(
    tx: &mut Tx,
    name: &str,
    registry_id: &str,
    folder_id: &str,
) -> Result<(), ImageStoreError> {
    tx.execute(
        &query(
            "INSERT INTO cr_repositories (id, registry_id, folder_id, name) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(crate::store::repository_id(name))
        .bind(registry_id)
        .bind(folder_id)
        .bind(name),
    )
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// The stored image `id`.
async fn body(tx: &mut Tx, id: &str) -> Result<Image, ImageStoreError> {
    let body: Vec<u8> = tx
        .fetch_scalar(&query("SELECT body FROM cr_images WHERE id = $1").bind(id))
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ImageStoreError::Unavailable(format!("image {id} vanished mid-push")))?;
    decode(&body)
}

/// Writes an image's current tags into its stored body, which carries them so that Get and
/// List read one row per image, and marks it modified.
async fn refresh_tags(tx: &mut Tx, id: &str, now: i64) -> Result<(), ImageStoreError> {
    let mut image = body(tx, id).await?;
    image.tags = tx
        .fetch_all(&query("SELECT tag FROM cr_tags WHERE image_id = $1 ORDER BY tag").bind(id))
        .await
        .map_err(unavailable)?
        .iter()
        .map(|row| row.get(0))
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    let (body, json) = stored_forms(&image);
    tx.execute(
        &query("UPDATE cr_images SET body = $1, json = $2, last_modified = $3 WHERE id = $4")
            .bind(body)
            .bind(json)
            .bind(now)
            .bind(id),
    )
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// The columns a registry is read from, in [`registry_of_row`]'s order.
const REGISTRY_COLUMNS: &str = "id, folder_id, name, status, created_at, body";

/// A registry from its row: its body, or for a registry stored before registries had one
/// (schema version 1), its columns.
fn registry_of_row(row: &yc_sql::Row) -> Result<Registry, ImageStoreError> {
    if let Some(body) = row.get::<Option<Vec<u8>>>(5).map_err(unavailable)? {
        return Registry::decode(body.as_slice()).map_err(|e| {
            ImageStoreError::Unavailable(format!("a stored registry does not decode: {e}"))
        });
    }
    let status: String = row.get(3).map_err(unavailable)?;
    let created: i64 = row.get(4).map_err(unavailable)?;
    Ok(Registry {
        id: row.get(0).map_err(unavailable)?,
        folder_id: row.get(1).map_err(unavailable)?,
        name: row.get(2).map_err(unavailable)?,
        status: registry::Status::from_str_name(&status).unwrap_or(registry::Status::Active) as i32,
        created_at: Some(Timestamp {
            seconds: created.div_euclid(1_000_000_000),
            nanos: i32::try_from(created.rem_euclid(1_000_000_000)).unwrap_or_default(),
        }),
        labels: Default::default(),
    })
}

fn repository_of_row(row: &yc_sql::Row) -> Result<Repository, ImageStoreError> {
    Ok(Repository {
        id: row.get(0).map_err(unavailable)?,
        name: row.get(1).map_err(unavailable)?,
    })
}

/// The text of a registry's status in its column.
fn registry_status(registry: &Registry) -> &'static str {
    registry::Status::try_from(registry.status)
        .unwrap_or(registry::Status::Unspecified)
        .as_str_name()
}

fn registry_name_conflict(e: yc_sql::DbError, registry: &Registry) -> ImageStoreError {
    if e.is_unique_violation() {
        ImageStoreError::NameTaken(registry.name.clone())
    } else {
        unavailable(e)
    }
}

async fn insert_registry(tx: &mut Tx, registry: &Registry) -> Result<(), ImageStoreError> {
    tx.execute(
        &query(
            "INSERT INTO cr_registries (id, folder_id, name, status, created_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&registry.id)
        .bind(&registry.folder_id)
        .bind(&registry.name)
        .bind(registry_status(registry))
        .bind(nanos(registry.created_at.unwrap_or_default()))
        .bind(registry.encode_to_vec()),
    )
    .await
    .map_err(|e| registry_name_conflict(e, registry))?;
    Ok(())
}

#[async_trait]
impl ImageStore for SqlImageStore {
    async fn ensure_registry(&self, registry: &Registry) -> Result<bool, ImageStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let known: Option<String> = tx
            .fetch_scalar(&query("SELECT id FROM cr_registries WHERE id = $1").bind(&registry.id))
            .await
            .map_err(unavailable)?;
        if known.is_some() {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(false);
        }
        let registry = Registry {
            status: registry::Status::Active as i32,
            created_at: registry.created_at.or_else(|| Some(Timestamp::now())),
            ..registry.clone()
        };
        insert_registry(&mut tx, &registry).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn create_registry(&self, registry: &Registry) -> Result<(), ImageStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        insert_registry(&mut tx, registry).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn registry(&self, id: &str) -> Result<Option<Registry>, ImageStoreError> {
        let row = self
            .db
            .fetch_optional(
                &query(format!(
                    "SELECT {REGISTRY_COLUMNS} FROM cr_registries WHERE id = $1 AND deleted_at IS NULL"
                ))
                .bind(id),
            )
            .await
            .map_err(unavailable)?;
        row.as_ref().map(registry_of_row).transpose()
    }

    async fn modify_registry(
        &self,
        id: &str,
        change: &RegistryChange<'_>,
    ) -> Result<RegistryModified, ImageStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        // The row lock serializes the change with pushes into the registry (see `push_in`).
        let row = tx
            .fetch_optional(
                &query(format!(
                    "SELECT {REGISTRY_COLUMNS} FROM cr_registries WHERE id = $1 AND deleted_at IS NULL{}",
                    tx.dialect().for_update()
                ))
                .bind(id),
            )
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(RegistryModified::Missing);
        };
        let mut registry = registry_of_row(&row)?;
        let image: Option<String> = tx
            .fetch_scalar(
                &query(
                    "SELECT id FROM cr_images WHERE registry_id = $1 AND deleted_at IS NULL LIMIT 1",
                )
                .bind(id),
            )
            .await
            .map_err(unavailable)?;
        let facts = RegistryFacts {
            has_images: image.is_some(),
        };
        if let Err(refused) = change(&mut registry, facts) {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(RegistryModified::Refused(refused));
        }
        tx.execute(
            &query(
                "UPDATE cr_registries SET name = $1, status = $2, body = $3 \
                 WHERE id = $4 AND deleted_at IS NULL",
            )
            .bind(&registry.name)
            .bind(registry_status(&registry))
            .bind(registry.encode_to_vec())
            .bind(id),
        )
        .await
        .map_err(|e| registry_name_conflict(e, &registry))?;
        tx.commit().await.map_err(unavailable)?;
        Ok(RegistryModified::Changed(Box::new(registry)))
    }

    async fn delete_registry(&self, id: &str, at: Timestamp) -> Result<bool, ImageStoreError> {
        let now = nanos(at);
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let deleted = mark_deleted(&mut tx, "cr_registries", id, now)
            .await
            .map_err(unavailable)?;
        purge_deleted(&mut tx, "cr_registries", now)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(deleted)
    }

    async fn catalog(
        &self,
        folders: Option<&[&str]>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, ImageStoreError> {
        let mut sql = query("SELECT name FROM cr_repositories WHERE name > ");
        sql.push_bind(after.to_owned());
        if let Some(folders) = folders {
            if folders.is_empty() {
                return Ok(Vec::new());
            }
            // The index on (folder_id, name, id) serves each folder in name order.
            sql.push(" AND folder_id IN (");
            for (i, folder) in folders.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push_bind((*folder).to_owned());
            }
            sql.push(")");
        }
        sql.push(" ORDER BY name LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = self.db.fetch_all(&sql).await.map_err(unavailable)?;
        rows.iter()
            .map(|row| row.get(0))
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    async fn untag(
        &self,
        repository: &str,
        tag: &str,
        at: Timestamp,
    ) -> Result<bool, ImageStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let image: Option<String> = tx
            .fetch_scalar(
                &query(format!(
                    "SELECT image_id FROM cr_tags WHERE name = $1 AND tag = $2{}",
                    tx.dialect().for_update()
                ))
                .bind(repository)
                .bind(tag),
            )
            .await
            .map_err(unavailable)?;
        let Some(image) = image else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(false);
        };
        tx.execute(
            &query("DELETE FROM cr_tags WHERE name = $1 AND tag = $2")
                .bind(repository)
                .bind(tag),
        )
        .await
        .map_err(unavailable)?;
        refresh_tags(&mut tx, &image, nanos(at)).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn referrers(
        &self,
        repository: &str,
        subject: &str,
    ) -> Result<Vec<Referring>, ImageStoreError> {
        let rows = self
            .db
            .fetch_all(
                &query(
                    "SELECT digest, media_type, artifact_type, size, annotations FROM cr_referrers \
                     WHERE name = $1 AND subject = $2 ORDER BY digest",
                )
                .bind(repository)
                .bind(subject),
            )
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok(Referring {
                    digest: row.get(0)?,
                    referrer: Referrer {
                        subject: subject.to_owned(),
                        media_type: row.get(1)?,
                        artifact_type: row.get(2)?,
                        size: row.get(3)?,
                        annotations: row.get(4)?,
                    },
                })
            })
            .collect::<Result<_, yc_sql::DbError>>()
            .map_err(unavailable)
    }

    async fn repository(&self, id: &str) -> Result<Option<Repository>, ImageStoreError> {
        let row = self
            .db
            .fetch_optional(&query("SELECT id, name FROM cr_repositories WHERE id = $1").bind(id))
            .await
            .map_err(unavailable)?;
        row.as_ref().map(repository_of_row).transpose()
    }

    async fn repository_by_name(&self, name: &str) -> Result<Option<Repository>, ImageStoreError> {
        let row = self
            .db
            .fetch_optional(
                &query("SELECT id, name FROM cr_repositories WHERE name = $1").bind(name),
            )
            .await
            .map_err(unavailable)?;
        row.as_ref().map(repository_of_row).transpose()
    }

    async fn list_repositories(
        &self,
        list: &RepositoryQuery,
    ) -> Result<Vec<Repository>, ImageStoreError> {
        let sql = self.repositories_sql(list);
        let rows = self.db.fetch_all(&sql).await.map_err(unavailable)?;
        self.check_cursor("cr_repositories", list.after.as_deref(), rows.is_empty())
            .await?;
        rows.iter().map(repository_of_row).collect()
    }

    async fn list_registries(
        &self,
        list: &RegistryQuery,
    ) -> Result<Vec<Registry>, ImageStoreError> {
        let sql = self.registries_sql(list);
        let rows = self.db.fetch_all(&sql).await.map_err(unavailable)?;
        self.check_cursor("cr_registries", list.after.as_deref(), rows.is_empty())
            .await?;
        rows.iter().map(registry_of_row).collect()
    }

    async fn push(&self, push: PushImage, at: Timestamp) -> Result<Pushed, ImageStoreError> {
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let pushed = push_in(&mut tx, push, at).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(pushed)
    }

    async fn get(&self, id: &str) -> Result<Option<Stored<Image>>, ImageStoreError> {
        Stored::fetch(
            &self.db,
            &query("SELECT body, json FROM cr_images WHERE id = $1 AND deleted_at IS NULL")
                .bind(id),
        )
        .await
        .map_err(unavailable)
    }

    async fn resolve(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Image>, ImageStoreError> {
        let sql = if reference.starts_with("sha256:") {
            "SELECT body FROM cr_images WHERE name = $1 AND digest = $2 AND deleted_at IS NULL"
        } else {
            "SELECT i.body FROM cr_tags t JOIN cr_images i ON i.id = t.image_id \
             WHERE t.name = $1 AND t.tag = $2 AND i.deleted_at IS NULL"
        };
        let body: Option<Vec<u8>> = self
            .db
            .fetch_scalar(&query(sql).bind(repository).bind(reference))
            .await
            .map_err(unavailable)?;
        body.map(|b| decode(&b)).transpose()
    }

    async fn tags(
        &self,
        repository: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, ImageStoreError> {
        // The primary key (name, tag) serves it.
        let rows = self
            .db
            .fetch_all(
                &query(
                    "SELECT tag FROM cr_tags WHERE name = $1 AND tag > $2 ORDER BY tag LIMIT $3",
                )
                .bind(repository)
                .bind(after.unwrap_or_default())
                .bind(i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| row.get(0))
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    async fn delete(&self, id: &str, at: Timestamp) -> Result<bool, ImageStoreError> {
        let now = nanos(at);
        let mut tx = self.db.begin().await.map_err(unavailable)?;
        let row = tx
            .fetch_optional(
                &query(
                    "SELECT name, registry_id FROM cr_images WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id),
            )
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(false);
        };
        let name: String = row.get(0).map_err(unavailable)?;
        let registry_id: String = row.get(1).map_err(unavailable)?;
        // Serialized with pushes into the registry (see `push_in`), so that a repository is
        // recorded exactly while it holds an image.
        let _: Option<String> = tx
            .fetch_scalar(
                &query(format!(
                    "SELECT id FROM cr_registries WHERE id = $1{}",
                    tx.dialect().for_update()
                ))
                .bind(&registry_id),
            )
            .await
            .map_err(unavailable)?;
        let deleted = mark_deleted(&mut tx, "cr_images", id, now)
            .await
            .map_err(unavailable)?;
        if deleted {
            for table in ["cr_tags", "cr_image_blobs", "cr_referrers"] {
                tx.execute(&query(format!("DELETE FROM {table} WHERE image_id = $1")).bind(id))
                    .await
                    .map_err(unavailable)?;
            }
            tx.execute(
                &query(
                    "DELETE FROM cr_repositories WHERE name = $1 AND NOT EXISTS \
                     (SELECT 1 FROM cr_images WHERE name = $1 AND deleted_at IS NULL)",
                )
                .bind(&name),
            )
            .await
            .map_err(unavailable)?;
        }
        purge_deleted(&mut tx, "cr_images", now)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(deleted)
    }

    async fn list(&self, query: &ImageQuery, rows: &mut PageRows) -> Result<(), ImageStoreError> {
        let sql = self.list_sql(query, rows.form());
        self.db
            .fetch_with(&sql, |row| read_page_row::<Image>(row, rows))
            .await
            .map_err(unavailable)?;
        self.check_cursor("cr_images", query.after.as_deref(), rows.is_empty())
            .await
    }
}
