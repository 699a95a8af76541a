//! Blob content for the OCI distribution API ([`crate::distribution`]): uploads in progress and
//! the blobs they became, in SQL (SQLite or PostgreSQL, through [`yc_sql`]) so that
//! every replica sharing a database sees the same blobs.
//!
//! Content is kept in pieces of at most [`PIECE`] bytes (`cr_blob_data`, keyed by a storage id
//! and a sequence number): an upload appends pieces as its bytes arrive (several pieces per
//! commit), so nothing holds a whole layer in memory, and finishing it checks the digest —
//! the running digest of the bytes as they arrived when this process received them all,
//! else by reading the pieces back — and then only renames: the blob's storage is the
//! upload's. A blob is stored once per digest and
//! linked to every registry it was pushed to (`cr_blob_links`); a registry sees only the blobs
//! linked to it.
//!
//! # One writer at a time
//!
//! A request that writes to an upload (appending, or finishing it) first claims it
//! (`cr_upload_writers`): while one request holds the claim, another is refused
//! ([`BlobError::Busy`]) without changing the upload, so bytes a request was answered for are
//! never overwritten or removed by another. The claim is renewed while the bytes come, and
//! runs out [`WRITER_LEASE`] after the last renewal, so that an upload whose writer died (a
//! killed server) can be continued. Bytes are counted in the upload only when the request
//! that brought them ends well; a failed request leaves the upload as it was.

mod moves;
mod objects;
#[cfg(feature = "testing")]
mod testing;

pub use moves::{Moved, Placement};
pub use objects::{DEFAULT_PART_SIZE, MIN_PART_SIZE, ObjectStorage, ObjectStorageConfig};
#[cfg(feature = "testing")]
pub use testing::TestS3;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use yc_api_runtime::list::sql::nanos;
use yc_proto_types::google::protobuf::Timestamp;
use yc_sql::{Db, DbError, Step, query};

const COMPONENT: &str = "registry-blobs";
const SCHEMA_VERSION: i64 = 4;

/// The schema, in `dialect`.
fn schema(dialect: yc_sql::Dialect) -> Vec<String> {
    let yc_sql::ColumnTypes { text, int, bytes } = dialect.types();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS cr_blob_data (
        storage {text} NOT NULL,
        seq {int} NOT NULL,
        data {bytes} NOT NULL,
        PRIMARY KEY (storage, seq)
    )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS cr_uploads (
        id {text} PRIMARY KEY,
        registry_id {text} NOT NULL,
        size {int} NOT NULL,
        pieces {int} NOT NULL,
        started_at {int} NOT NULL,
        multipart {text},
        parts {int} NOT NULL DEFAULT 0
    )"
        ),
        "CREATE INDEX IF NOT EXISTS cr_uploads_started ON cr_uploads (started_at)".to_owned(),
        format!(
            "CREATE TABLE IF NOT EXISTS cr_blobs (
        digest {text} PRIMARY KEY,
        size {int} NOT NULL,
        storage {text} NOT NULL,
        pieces {int} NOT NULL,
        in_objects {int} NOT NULL DEFAULT 0
    )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS cr_blob_links (
        registry_id {text} NOT NULL,
        digest {text} NOT NULL,
        linked_at {int} NOT NULL DEFAULT 0,
        PRIMARY KEY (registry_id, digest)
    )"
        ),
        // The one request writing to an upload, until its claim runs out.
        format!(
            "CREATE TABLE IF NOT EXISTS cr_upload_writers (
        upload_id {text} PRIMARY KEY,
        writer {text} NOT NULL,
        until_at {int} NOT NULL
    )"
        ),
    ]
    .into_iter()
    .chain(object_tables(dialect))
    .collect()
}

/// The parts of multipart uploads into object storage, and the objects and multipart uploads
/// to remove (what a cancelled upload, a blob stored twice or garbage collection left): rows
/// written in the transaction that drops their content, removed once it is gone from the
/// object storage, so that a crash between the two leaves nothing behind for ever.
fn object_tables(dialect: yc_sql::Dialect) -> Vec<String> {
    let yc_sql::ColumnTypes { text, int, .. } = dialect.types();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS cr_upload_parts (
        upload_id {text} NOT NULL,
        part {int} NOT NULL,
        etag {text} NOT NULL,
        size {int} NOT NULL,
        PRIMARY KEY (upload_id, part)
    )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS cr_object_trash (
        storage {text} PRIMARY KEY,
        multipart {text}
    )"
        ),
        // Copies being made by `move_blobs`, removed when the blob switches to its copy; what
        // a stopped move left is removed by the next.
        format!(
            "CREATE TABLE IF NOT EXISTS cr_blob_moves (
        storage {text} PRIMARY KEY,
        multipart {text},
        in_objects {int} NOT NULL
    )"
        ),
    ]
}

/// From version 2, whose links had no time: they count as made when the database is
/// upgraded, so garbage collection waits a whole grace period before it may remove them.
fn upgrades(dialect: yc_sql::Dialect) -> Vec<(i64, Vec<Step>)> {
    let yc_sql::ColumnTypes { text, int, .. } = dialect.types();
    let now = nanos(Timestamp::now());
    vec![
        (
            3,
            vec![Step::add_column(
                "cr_blob_links",
                "linked_at",
                format!("{int} NOT NULL DEFAULT {now}"),
            )],
        ),
        // Content in object storage.
        (
            4,
            [
                Step::add_column("cr_uploads", "multipart", text),
                Step::add_column("cr_uploads", "parts", format!("{int} NOT NULL DEFAULT 0")),
                Step::add_column(
                    "cr_blobs",
                    "in_objects",
                    format!("{int} NOT NULL DEFAULT 0"),
                ),
            ]
            .into_iter()
            .chain(object_tables(dialect).into_iter().map(Step::Sql))
            .collect(),
        ),
    ]
}

/// Blob bytes this process has stored and read back, for the server's metrics.
static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);
static BYTES_READ: AtomicU64 = AtomicU64::new(0);

/// Blob bytes this process stored (uploads) and read (pulls, digests checked at finishing)
/// since it started.
pub fn blob_bytes() -> (u64, u64) {
    (
        BYTES_WRITTEN.load(Ordering::Relaxed),
        BYTES_READ.load(Ordering::Relaxed),
    )
}

/// A blob's content as it is read.
pub type BlobStream = futures_util::stream::BoxStream<'static, Result<Bytes, BlobError>>;

/// The largest piece of content stored in one row.
pub const PIECE: usize = 1 << 20;

/// How many pieces a blob's reader keeps ready ahead of its client.
pub const READ_AHEAD: usize = 4;

/// How long a request's claim on an upload lasts without being renewed; it is renewed while
/// its bytes arrive.
pub const WRITER_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Uploads not finished within this long are removed (when a store opens, and by garbage
/// collection), unless [`SqlBlobStore::with_upload_lifetime`] says otherwise.
pub const UPLOAD_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A file's content as a stream of pieces of `size` bytes (the last one shorter), read one at
/// a time: for storing and for pushing blobs without holding them in memory.
pub(crate) fn file_pieces(
    file: tokio::fs::File,
    size: usize,
) -> impl Stream<Item = std::io::Result<Bytes>> {
    use tokio::io::AsyncReadExt as _;
    futures_util::stream::try_unfold(file, move |mut file| async move {
        let mut piece = Vec::with_capacity(size);
        (&mut file)
            .take(size as u64)
            .read_to_end(&mut piece)
            .await?;
        Ok((!piece.is_empty()).then(|| (Bytes::from(piece), file)))
    })
}

/// Makes a blob visible in a registry.
/// Links a blob to a registry, or renews the link's time: a blob pushed again (or named by a
/// manifest being pushed) is kept a grace period from now by garbage collection.
const LINK: &str = "INSERT INTO cr_blob_links (registry_id, digest, linked_at) VALUES ($1, $2, $3) \
     ON CONFLICT (registry_id, digest) DO UPDATE SET linked_at = excluded.linked_at";

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Links of registries to blobs no image of theirs needs.
    pub links_removed: u64,
    /// Blobs no registry links any more, content and all.
    pub blobs_removed: u64,
    /// The bytes of their content.
    pub bytes_freed: i64,
    /// Uploads removed unfinished after the upload lifetime.
    pub uploads_expired: u64,
}

/// The columns of [`blob_info`]'s row.
const BLOB_COLUMNS: &str = "size, storage, pieces, in_objects";

/// The blob `digest` from a row of [`BLOB_COLUMNS`].
fn blob_info(digest: &str, row: &yc_sql::Row) -> Result<BlobInfo, BlobError> {
    Ok(BlobInfo {
        digest: digest.to_owned(),
        size: row.get(0)?,
        storage: row.get(1)?,
        pieces: row.get(2)?,
        in_objects: row.get::<i64>(3)? != 0,
    })
}

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    storage: String,
    pieces: i64,
    /// Whether the content is an object in object storage (else rows in the database).
    in_objects: bool,
}

impl BlobInfo {
    /// Whether the content is in object storage rather than in the database.
    pub fn in_object_storage(&self) -> bool {
        self.in_objects
    }
}

/// An upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Its id, in its URL.
    pub id: String,
    /// The registry it is for.
    pub registry_id: String,
    /// The bytes received so far.
    pub size: i64,
    /// Pieces in the database: all its bytes, or for an upload into object storage the bytes
    /// after its last whole part.
    pieces: i64,
    /// The multipart upload into object storage, if the content goes there.
    multipart: Option<String>,
    /// The parts uploaded into it.
    parts: i64,
}

/// The columns of [`upload_of`]'s row.
const UPLOAD_COLUMNS: &str = "registry_id, size, pieces, multipart, parts";

fn upload_of(id: &str, row: &yc_sql::Row) -> Result<Upload, BlobError> {
    Ok(Upload {
        id: id.to_owned(),
        registry_id: row.get(0)?,
        size: row.get(1)?,
        pieces: row.get(2)?,
        multipart: row.get(3)?,
        parts: row.get(4)?,
    })
}

/// Why a blob operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobError {
    /// No such upload (never started, finished, cancelled or expired).
    UploadUnknown(String),
    /// The bytes arrived out of order: the upload has `size` bytes and the request continued
    /// elsewhere.
    OutOfOrder {
        /// The bytes the upload holds.
        size: i64,
    },
    /// Another request is writing to the upload.
    Busy {
        /// The bytes the upload holds.
        size: i64,
    },
    /// The request's body is not as long as its `Content-Range` says.
    LengthMismatch {
        /// What the range says.
        expected: i64,
        /// What came.
        received: i64,
    },
    /// The content's digest is not the one claimed.
    DigestMismatch {
        /// Claimed.
        expected: String,
        /// Computed from the bytes.
        actual: String,
    },
    /// Reading the request's body failed.
    Body(String),
    /// The database failed.
    Unavailable(String),
}

impl std::fmt::Display for BlobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobError::UploadUnknown(id) => write!(f, "upload {id} is not known"),
            BlobError::OutOfOrder { size } => write!(
                f,
                "the upload holds {size} bytes; continue at byte {size}, one request at a time"
            ),
            BlobError::Busy { size } => write!(
                f,
                "another request is writing to the upload (it holds {size} bytes); send one \
                 request at a time"
            ),
            BlobError::LengthMismatch { expected, received } => write!(
                f,
                "Content-Range says {expected} bytes, the body has {received}"
            ),
            BlobError::DigestMismatch { expected, actual } => {
                write!(f, "the content's digest is {actual}, not {expected}")
            }
            BlobError::Body(why) => write!(f, "reading the request body: {why}"),
            BlobError::Unavailable(why) => write!(f, "blob store unavailable: {why}"),
        }
    }
}

impl std::error::Error for BlobError {}

impl From<DbError> for BlobError {
    fn from(e: DbError) -> Self {
        BlobError::Unavailable(e.to_string())
    }
}

/// Blobs and uploads in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlBlobStore {
    db: Db,
    digests: std::sync::Arc<RunningDigests>,
    /// Where new content goes, when not in the database; blobs there are read from it.
    objects: Option<ObjectStorage>,
    /// How long an unfinished upload is kept.
    upload_lifetime: std::time::Duration,
}

impl SqlBlobStore {
    /// The store in `db`, its schema created or checked. Uploads past their lifetime (a day,
    /// unless [`with_upload_lifetime`](Self::with_upload_lifetime) says otherwise) are removed
    /// by [`expire_uploads`](Self::expire_uploads) and by every collection, never here: a
    /// store given a longer lifetime once open keeps what it should.
    pub async fn open(db: impl Into<Db>) -> Result<Self, BlobError> {
        let db = db.into();
        db.migrate_from(
            COMPONENT,
            SCHEMA_VERSION,
            &upgrades(db.dialect()),
            &schema(db.dialect()),
        )
        .await
        .map_err(|e| BlobError::Unavailable(e.to_string()))?;
        let store = Self {
            db,
            digests: Default::default(),
            objects: None,
            upload_lifetime: UPLOAD_LIFETIME,
        };
        Ok(store)
    }

    /// The store with new content going to `objects` rather than into the database (blobs
    /// stored before stay where they are, and are read from there). Checks that the object
    /// storage answers, and finishes removing what a stopped server left to remove there.
    pub async fn with_object_storage(mut self, objects: ObjectStorage) -> Result<Self, BlobError> {
        objects.check().await?;
        self.objects = Some(objects);
        self.try_empty_trash().await;
        Ok(self)
    }

    /// Lets go of every upload's writer: for a server that has the database to itself (the
    /// embedded store), whose uploads' writers before it started are gone, so that a client
    /// continues an upload at once after a crash rather than after [`WRITER_LEASE`].
    pub async fn forget_writers(&self) -> Result<(), BlobError> {
        self.db
            .execute(&query("DELETE FROM cr_upload_writers"))
            .await?;
        Ok(())
    }

    /// The object storage new content goes to, if any.
    pub fn object_storage(&self) -> Option<&ObjectStorage> {
        self.objects.as_ref()
    }

    fn objects_for(&self, what: &str) -> Result<&ObjectStorage, BlobError> {
        self.objects.as_ref().ok_or_else(|| {
            BlobError::Unavailable(format!(
                "{what} is in object storage, and this server has none (start it with \
                 --blob-store)"
            ))
        })
    }

    /// Removes the objects and aborts the multipart uploads listed in `cr_object_trash`.
    /// Without object storage they wait for a server that has it.
    pub async fn empty_trash(&self) -> Result<u64, BlobError> {
        let Some(objects) = &self.objects else {
            return Ok(0);
        };
        let rows = self
            .db
            .fetch_all(&query("SELECT storage, multipart FROM cr_object_trash"))
            .await?;
        let mut removed = 0;
        for row in rows {
            let storage: String = row.get(0)?;
            let multipart: Option<String> = row.get(1)?;
            if let Some(multipart) = &multipart {
                objects.abort(&storage, multipart).await?;
            }
            objects.delete(&storage).await?;
            self.db
                .execute(&query("DELETE FROM cr_object_trash WHERE storage = $1").bind(&storage))
                .await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// A store in a fresh in-memory SQLite database.
    pub async fn in_memory() -> Result<Self, BlobError> {
        Self::open(Db::sqlite_memory().await?).await
    }

    /// The store with uploads removed once they are `lifetime` old unfinished.
    pub fn with_upload_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.upload_lifetime = lifetime;
        self
    }

    /// Removes the uploads started longer ago than the upload lifetime and not finished (a
    /// client that went away): what they received goes, and their multipart uploads in object
    /// storage are aborted. Returns how many.
    pub async fn expire_uploads(&self) -> Result<u64, BlobError> {
        let lifetime = i64::try_from(self.upload_lifetime.as_nanos()).unwrap_or(i64::MAX);
        let before = nanos(Timestamp::now()).saturating_sub(lifetime);
        let mut tx = self.db.begin().await?;
        tx.execute(
            &query(
                "INSERT INTO cr_object_trash (storage, multipart) SELECT id, multipart \
                 FROM cr_uploads WHERE started_at < $1 AND multipart IS NOT NULL \
                 ON CONFLICT DO NOTHING",
            )
            .bind(before),
        )
        .await?;
        for (table, column) in [
            ("cr_blob_data", "storage"),
            ("cr_upload_writers", "upload_id"),
            ("cr_upload_parts", "upload_id"),
        ] {
            tx.execute(
                &query(format!(
                    "DELETE FROM {table} WHERE {column} IN \
                     (SELECT id FROM cr_uploads WHERE started_at < $1)"
                ))
                .bind(before),
            )
            .await?;
        }
        let expired = tx
            .execute(&query("DELETE FROM cr_uploads WHERE started_at < $1").bind(before))
            .await?;
        tx.commit().await?;
        if expired > 0 {
            self.try_empty_trash().await;
        }
        Ok(expired)
    }

    /// The blob `digest` if it is linked to the registry.
    pub async fn blob(
        &self,
        registry_id: &str,
        digest: &str,
    ) -> Result<Option<BlobInfo>, BlobError> {
        let row = self
            .db
            .fetch_optional(
                &query(format!(
                    "SELECT {BLOB_COLUMNS} FROM cr_blob_links l \
                     JOIN cr_blobs b ON b.digest = l.digest \
                     WHERE l.registry_id = $1 AND l.digest = $2"
                ))
                .bind(registry_id)
                .bind(digest),
            )
            .await?;
        row.map(|row| blob_info(digest, &row)).transpose()
    }

    /// Links the blob `digest`, if it is stored, to `registry_id` as well (a cross-repository
    /// mount). Returns the blob, or `None` when it is not stored.
    pub async fn link(
        &self,
        registry_id: &str,
        digest: &str,
    ) -> Result<Option<BlobInfo>, BlobError> {
        // The blob's row stays locked until the link is in, so that garbage collection,
        // which locks it before it removes the content, sees the link or removes first.
        let mut tx = self.db.begin().await?;
        let row = tx
            .fetch_optional(
                &query(format!(
                    "SELECT {BLOB_COLUMNS} FROM cr_blobs WHERE digest = $1{}",
                    tx.dialect().for_update()
                ))
                .bind(digest),
            )
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        tx.execute(
            &query(LINK)
                .bind(registry_id)
                .bind(digest)
                .bind(nanos(Timestamp::now())),
        )
        .await?;
        tx.commit().await?;
        blob_info(digest, &row).map(Some)
    }

    /// Renews the links of `digests` to `registry_id` (see [`LINK`]): a manifest being pushed
    /// does this for the blobs it names, so that garbage collection keeps them until the
    /// image is stored. Returns the digests that are not linked (garbage collection removed
    /// them, or they were never pushed).
    pub async fn touch(
        &self,
        registry_id: &str,
        digests: &[&str],
    ) -> Result<Vec<String>, BlobError> {
        let now = nanos(Timestamp::now());
        let mut missing = Vec::new();
        for digest in digests {
            let renewed = self
                .db
                .execute(
                    &query(
                        "UPDATE cr_blob_links SET linked_at = $1 WHERE registry_id = $2 AND digest = $3",
                    )
                    .bind(now)
                    .bind(registry_id)
                    .bind(*digest),
                )
                .await?;
            if renewed == 0 {
                missing.push((*digest).to_owned());
            }
        }
        Ok(missing)
    }

    /// The bytes of blob content stored, and how many blobs: what garbage collection frees.
    pub async fn stored(&self) -> Result<(i64, i64), BlobError> {
        let row = self
            .db
            .fetch_optional(&query(
                "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM cr_blobs",
            ))
            .await?;
        match row {
            Some(row) => Ok((row.get(1)?, row.get(0)?)),
            None => Ok((0, 0)),
        }
    }

    /// Removes the uploads past their lifetime ([`expire_uploads`](Self::expire_uploads)) and
    /// the blobs no image needs: first each link of a registry to a blob that no live
    /// image of that registry needs (`cr_image_blobs`, kept by the image store) and that is
    /// older than `grace` (a blob just pushed for a manifest not yet written is kept), then
    /// the content of every blob no registry links any more. Safe while pushes and pulls run,
    /// on one server or on replicas sharing PostgreSQL: a manifest being pushed renews the
    /// links it needs ([`touch`](Self::touch)), and its image is stored only if they are still
    /// there, checked under the registry's row lock, which the links' removal takes too;
    /// content is removed only under its blob's row lock, which linking holds too. Needs the
    /// image store's tables in the same database.
    pub async fn collect_garbage(
        &self,
        grace: std::time::Duration,
    ) -> Result<Collected, BlobError> {
        let uploads_expired = self.expire_uploads().await?;
        let cutoff = nanos(Timestamp::now()) - i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX);
        const UNNEEDED: &str = "linked_at < $1 AND NOT EXISTS (SELECT 1 FROM cr_image_blobs i \
             WHERE i.registry_id = cr_blob_links.registry_id AND i.digest = cr_blob_links.digest)";
        let registries = self
            .db
            .fetch_all(
                &query(format!(
                    "SELECT DISTINCT registry_id FROM cr_blob_links WHERE {UNNEEDED}"
                ))
                .bind(cutoff),
            )
            .await?;
        let mut links = 0;
        for row in registries {
            let registry_id: String = row.get(0)?;
            // A registry at a time, under its row lock, which a push holds from checking that
            // its blobs are linked until its image (and what it needs) is stored.
            let mut tx = self.db.begin().await?;
            let _: Option<String> = tx
                .fetch_scalar(
                    &query(format!(
                        "SELECT id FROM cr_registries WHERE id = $1{}",
                        tx.dialect().for_update()
                    ))
                    .bind(&registry_id),
                )
                .await?;
            links += tx
                .execute(
                    &query(format!(
                        "DELETE FROM cr_blob_links WHERE {UNNEEDED} AND registry_id = $2"
                    ))
                    .bind(cutoff)
                    .bind(&registry_id),
                )
                .await?;
            tx.commit().await?;
        }
        let unlinked = self
            .db
            .fetch_all(&query(
                "SELECT digest FROM cr_blobs b WHERE NOT EXISTS \
                 (SELECT 1 FROM cr_blob_links l WHERE l.digest = b.digest)",
            ))
            .await?;
        let mut collected = Collected {
            links_removed: links,
            uploads_expired,
            ..Collected::default()
        };
        for row in unlinked {
            let digest: String = row.get(0)?;
            let mut tx = self.db.begin().await?;
            let blob = tx
                .fetch_optional(
                    &query(format!(
                        "SELECT {BLOB_COLUMNS} FROM cr_blobs WHERE digest = $1{}",
                        tx.dialect().for_update()
                    ))
                    .bind(&digest),
                )
                .await?;
            // With the row locked, a link made meanwhile is seen (each statement reads what
            // was committed before it).
            let linked: Option<String> = tx
                .fetch_scalar(
                    &query("SELECT registry_id FROM cr_blob_links WHERE digest = $1 LIMIT 1")
                        .bind(&digest),
                )
                .await?;
            let (Some(blob), None) = (blob, linked) else {
                tx.rollback().await?;
                continue;
            };
            let blob = blob_info(&digest, &blob)?;
            if blob.in_objects {
                put_in_trash(&mut tx, &blob.storage, None).await?;
            } else {
                tx.execute(
                    &query("DELETE FROM cr_blob_data WHERE storage = $1").bind(&blob.storage),
                )
                .await?;
            }
            tx.execute(&query("DELETE FROM cr_blobs WHERE digest = $1").bind(&digest))
                .await?;
            tx.commit().await?;
            collected.blobs_removed += 1;
            collected.bytes_freed += blob.size;
        }
        self.try_empty_trash().await;
        Ok(collected)
    }

    /// Stores small content (a manifest) whole, linked to the registry; returns its digest.
    pub async fn put(&self, registry_id: &str, content: &[u8]) -> Result<BlobInfo, BlobError> {
        let piece = Ok::<_, std::convert::Infallible>(Bytes::copy_from_slice(content));
        let digest = crate::oci::sha256_digest(content);
        self.put_stream(registry_id, &digest, futures_util::stream::iter([piece]))
            .await
    }

    /// Stores the file `path` as the blob `digest` in `registry_id` (or only links it, when the
    /// blob is stored already), reading it a piece at a time; the digest is checked.
    pub async fn put_file(
        &self,
        registry_id: &str,
        digest: &str,
        path: &std::path::Path,
    ) -> Result<BlobInfo, BlobError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| BlobError::Body(format!("{}: {e}", path.display())))?;
        self.put_stream(registry_id, digest, file_pieces(file, PIECE))
            .await
    }

    /// Stores `content` as the blob `digest` in `registry_id` through an upload of its own
    /// (cancelled if the content cannot be read), or only links the blob when it is stored
    /// already.
    async fn put_stream<S, E>(
        &self,
        registry_id: &str,
        digest: &str,
        content: S,
    ) -> Result<BlobInfo, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        if let Some(blob) = self.link(registry_id, digest).await? {
            return Ok(blob);
        }
        let upload = self.start(registry_id).await?;
        let finished = self.finish_with(&upload.id, content, digest).await;
        if finished.is_err() {
            let _ = self.cancel(&upload.id).await;
        }
        finished
    }

    /// Stores the manifest and every blob of an image read from an OCI layout in `dir` (see
    /// [`crate::oci::read_layout`]), so that it pulls like a pushed image.
    pub async fn put_layout(
        &self,
        registry_id: &str,
        dir: &std::path::Path,
        image: &crate::oci::LayoutImage,
    ) -> Result<(), BlobError> {
        let manifest = &image.manifest;
        for descriptor in manifest.manifest.blobs() {
            let path = crate::oci::blob_path(dir, &descriptor.digest);
            self.put_file(registry_id, &descriptor.digest, &path)
                .await?;
        }
        self.put(registry_id, &manifest.bytes).await?;
        Ok(())
    }

    /// Starts an upload into `registry_id`.
    pub async fn start(&self, registry_id: &str) -> Result<Upload, BlobError> {
        let id = yc_api_runtime::ids::new_id("upl");
        // Content for object storage goes into a multipart upload of its own from the start.
        // (A server killed right after starting one leaves it to the bucket's lifecycle rule
        // for incomplete multipart uploads; see the README.)
        let multipart = match &self.objects {
            Some(objects) => Some(objects.create(&id).await?),
            None => None,
        };
        let inserted = self
            .db
            .execute(
                &query(
                    "INSERT INTO cr_uploads (id, registry_id, size, pieces, started_at, multipart) \
                     VALUES ($1, $2, 0, 0, $3, $4)",
                )
                .bind(&id)
                .bind(registry_id)
                .bind(nanos(Timestamp::now()))
                .bind(multipart.clone()),
            )
            .await;
        if let Err(e) = inserted {
            if let (Some(objects), Some(multipart)) = (&self.objects, &multipart) {
                let _ = objects.abort(&id, multipart).await;
            }
            return Err(e.into());
        }
        Ok(Upload {
            id,
            registry_id: registry_id.to_owned(),
            size: 0,
            pieces: 0,
            multipart,
            parts: 0,
        })
    }

    /// The upload `id`.
    pub async fn upload(&self, id: &str) -> Result<Upload, BlobError> {
        let row = self
            .db
            .fetch_optional(
                &query(format!(
                    "SELECT {UPLOAD_COLUMNS} FROM cr_uploads WHERE id = $1"
                ))
                .bind(id),
            )
            .await?
            .ok_or_else(|| BlobError::UploadUnknown(id.to_owned()))?;
        upload_of(id, &row)
    }

    /// Appends the body's bytes to the upload, in pieces as they arrive. `at`, when given, is
    /// where the client says the bytes go: it must be the upload's size; `length`, when given,
    /// is how many bytes the client says it sends. While another request writes to the
    /// upload this one is refused ([`BlobError::Busy`]). On any failure the upload is left as
    /// it was before.
    pub async fn append<S, E>(
        &self,
        id: &str,
        at: Option<i64>,
        length: Option<i64>,
        body: S,
    ) -> Result<Upload, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut claim = self.claim(id).await?;
        if at.is_some_and(|at| at != claim.upload.size) {
            let size = claim.upload.size;
            claim.release().await;
            return Err(BlobError::OutOfOrder { size });
        }
        match claim.write(body, length).await {
            Ok(()) => claim.commit().await,
            Err(e) => {
                claim.release().await;
                Err(e)
            }
        }
    }

    /// Finishes the upload as the blob `digest`: its bytes are read back and hashed, and on a
    /// match it becomes the blob (or, if the blob is stored already, goes away) and the blob is
    /// linked to the upload's registry. On a mismatch the upload is removed.
    pub async fn finish(&self, id: &str, digest: &str) -> Result<BlobInfo, BlobError> {
        let nothing = futures_util::stream::empty::<Result<Bytes, std::convert::Infallible>>();
        self.finish_with(id, nothing, digest).await
    }

    /// [`finish`](Self::finish) after appending `last`, the bytes that came with the request
    /// that finishes the upload; one request, holding the upload throughout.
    pub async fn finish_with<S, E>(
        &self,
        id: &str,
        last: S,
        digest: &str,
    ) -> Result<BlobInfo, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut claim = self.claim(id).await?;
        if let Err(e) = claim.write(last, None).await {
            claim.release().await;
            return Err(e);
        }
        self.digests.forget(id);
        let content = match claim.upload.multipart.clone() {
            Some(multipart) => self.complete_object(&mut claim, &multipart).await,
            None => self.hash_pieces(&mut claim).await,
        };
        let actual = match content {
            Ok(hasher) => crate::oci::digest_of(hasher),
            Err(e) => {
                claim.release().await;
                return Err(e);
            }
        };
        if actual != digest {
            claim.released = true;
            self.cancel(id).await?;
            return Err(BlobError::DigestMismatch {
                expected: digest.to_owned(),
                actual,
            });
        }
        self.publish(claim, digest).await
    }

    /// The digest of an upload kept in the database: running, when every byte went through
    /// this process, else read back.
    async fn hash_pieces(&self, claim: &mut Claim) -> Result<Sha256, BlobError> {
        if let Some(hasher) = claim.hasher.take() {
            return Ok(hasher);
        }
        let mut hasher = Sha256::new();
        for seq in 0..claim.upload.pieces {
            hasher.update(self.piece(&claim.upload.id, seq).await?);
        }
        Ok(hasher)
    }

    /// Makes an upload into object storage its object: the bytes after the last whole part
    /// become the last part and the multipart upload is completed. Returns the content's
    /// digest: running, when every byte went through this process, else read back from the
    /// object. An upload whose object is complete already (a finish that stopped before its
    /// blob was stored) is only read back.
    async fn complete_object(
        &self,
        claim: &mut Claim,
        multipart: &str,
    ) -> Result<Sha256, BlobError> {
        let objects = self.objects_for("the upload")?.clone();
        let id = claim.upload.id.clone();
        let size = claim.upload.size;
        if let Err(e) = self.complete_parts(claim, &objects, multipart).await {
            // A finish that stopped after completing it: the object is there, whole.
            if objects.size(&id).await? != Some(u64::try_from(size).unwrap_or_default()) {
                return Err(e);
            }
        }
        if let Some(hasher) = claim.hasher.take() {
            return Ok(hasher);
        }
        let mut hasher = Sha256::new();
        let mut content = std::pin::pin!(objects.read(&id, 0, size as u64).await?);
        while let Some(piece) = content.next().await {
            let piece = piece?;
            BYTES_READ.fetch_add(piece.len() as u64, Ordering::Relaxed);
            hasher.update(&piece);
            if claim.renewed.elapsed() > WRITER_LEASE / 3 {
                claim.renew().await?;
            }
        }
        Ok(hasher)
    }

    /// Uploads the claim's tail as the last part and completes the multipart upload with
    /// every part, in order.
    async fn complete_parts(
        &self,
        claim: &mut Claim,
        objects: &ObjectStorage,
        multipart: &str,
    ) -> Result<(), BlobError> {
        let id = claim.upload.id.clone();
        let mut etags: Vec<String> = self
            .db
            .fetch_all(
                &query("SELECT etag FROM cr_upload_parts WHERE upload_id = $1 ORDER BY part")
                    .bind(&id),
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect::<Result<_, _>>()?;
        etags.extend(claim.new_parts.iter().map(|part| part.etag.clone()));
        let (tail, length) = claim.tail.take();
        if length > 0 {
            let number = i64::try_from(etags.len()).unwrap_or(i64::MAX) + 1;
            let length = length as u64;
            claim.renew().await?;
            let etag = objects.put_part(&id, multipart, number, tail).await?;
            BYTES_WRITTEN.fetch_add(length, Ordering::Relaxed);
            etags.push(etag);
        }
        if etags.is_empty() {
            // Empty content: S3 completes no multipart upload without a part.
            objects.put(&id, Bytes::new()).await?;
            objects.abort(&id, multipart).await?;
        } else {
            objects.complete(&id, multipart, etags).await?;
        }
        Ok(())
    }

    /// Stores the upload the claim holds, its digest checked, as the blob `digest` linked to
    /// its registry; or, when that blob is stored already, links it and drops the upload's
    /// content.
    async fn publish(&self, mut claim: Claim, digest: &str) -> Result<BlobInfo, BlobError> {
        let upload = claim.upload.clone();
        let id = upload.id.as_str();
        let in_objects = upload.multipart.is_some();
        // Content in the database is the upload's pieces; an object keeps none.
        let pieces = if in_objects { 0 } else { upload.pieces };
        let mut tx = self.db.begin().await?;
        if !claim.still_held(&mut tx).await? {
            tx.rollback().await?;
            claim.released = true;
            return Err(self.lost(id).await);
        }
        tx.execute(&query("DELETE FROM cr_upload_writers WHERE upload_id = $1").bind(id))
            .await?;
        tx.execute(&query("DELETE FROM cr_uploads WHERE id = $1").bind(id))
            .await?;
        if in_objects {
            for table in [
                "cr_upload_parts WHERE upload_id",
                "cr_blob_data WHERE storage",
            ] {
                tx.execute(&query(format!("DELETE FROM {table} = $1")).bind(id))
                    .await?;
            }
        }
        let insert = "INSERT INTO cr_blobs (digest, size, storage, pieces, in_objects) \
                      VALUES ($1, $2, $3, $4, $5)";
        let stored = tx
            .execute(
                &query(format!("{insert} ON CONFLICT DO NOTHING"))
                    .bind(digest)
                    .bind(upload.size)
                    .bind(id)
                    .bind(pieces)
                    .bind(i64::from(in_objects)),
            )
            .await?;
        let mut dropped = false;
        if stored == 0 {
            // Stored already: that blob's row is locked until the link is in (see `link`);
            // if garbage collection removed it meanwhile, this upload's content is the blob.
            let kept: Option<String> = tx
                .fetch_scalar(
                    &query(format!(
                        "SELECT digest FROM cr_blobs WHERE digest = $1{}",
                        tx.dialect().for_update()
                    ))
                    .bind(digest),
                )
                .await?;
            if kept.is_none() {
                tx.execute(
                    &query(insert)
                        .bind(digest)
                        .bind(upload.size)
                        .bind(id)
                        .bind(pieces)
                        .bind(i64::from(in_objects)),
                )
                .await?;
            } else if in_objects {
                put_in_trash(&mut tx, id, None).await?;
                dropped = true;
            } else {
                tx.execute(&query("DELETE FROM cr_blob_data WHERE storage = $1").bind(id))
                    .await?;
            }
        }
        tx.execute(
            &query(LINK)
                .bind(&upload.registry_id)
                .bind(digest)
                .bind(nanos(Timestamp::now())),
        )
        .await?;
        tx.commit().await?;
        claim.released = true;
        if dropped {
            self.empty_trash_later();
        }
        self.blob(&upload.registry_id, digest)
            .await?
            .ok_or_else(|| BlobError::Unavailable(format!("blob {digest} vanished")))
    }

    /// Empties the trash in the background (a call that put something there answers first);
    /// what fails stays there for the next time.
    fn empty_trash_later(&self) {
        let store = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { store.try_empty_trash().await });
        }
    }

    /// Empties the trash now; what fails stays there for the next time (the change that put
    /// it there stands either way).
    async fn try_empty_trash(&self) {
        if let Err(e) = self.empty_trash().await {
            tracing::warn!(error = %e, "cannot remove objects no blob needs; they are removed later");
        }
    }

    /// Cancels the upload and removes what it received. A request writing to it meanwhile
    /// fails.
    pub async fn cancel(&self, id: &str) -> Result<(), BlobError> {
        self.digests.forget(id);
        let mut tx = self.db.begin().await?;
        // The writer's row first: a writer storing a piece holds it until the piece is in.
        tx.execute(&query("DELETE FROM cr_upload_writers WHERE upload_id = $1").bind(id))
            .await?;
        let multipart: Option<Option<String>> = tx
            .fetch_scalar(&query("SELECT multipart FROM cr_uploads WHERE id = $1").bind(id))
            .await?;
        let Some(multipart) = multipart else {
            tx.rollback().await?;
            return Err(BlobError::UploadUnknown(id.to_owned()));
        };
        tx.execute(&query("DELETE FROM cr_uploads WHERE id = $1").bind(id))
            .await?;
        tx.execute(&query("DELETE FROM cr_blob_data WHERE storage = $1").bind(id))
            .await?;
        if multipart.is_some() {
            tx.execute(&query("DELETE FROM cr_upload_parts WHERE upload_id = $1").bind(id))
                .await?;
            put_in_trash(&mut tx, id, multipart.clone()).await?;
        }
        tx.commit().await?;
        if multipart.is_some() {
            self.empty_trash_later();
        }
        Ok(())
    }

    /// Claims the upload for one request: refused while another request holds it.
    async fn claim(&self, id: &str) -> Result<Claim, BlobError> {
        let now = nanos(Timestamp::now());
        let writer = yc_api_runtime::ids::new_id("wrt");
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "SELECT {UPLOAD_COLUMNS} FROM cr_uploads WHERE id = $1{}",
            tx.dialect().for_update()
        );
        let Some(row) = tx.fetch_optional(&query(sql).bind(id)).await? else {
            tx.rollback().await?;
            return Err(BlobError::UploadUnknown(id.to_owned()));
        };
        let upload = upload_of(id, &row)?;
        let held: Option<i64> = tx
            .fetch_scalar(
                &query("SELECT until_at FROM cr_upload_writers WHERE upload_id = $1").bind(id),
            )
            .await?;
        if held.is_some_and(|until| until >= now) {
            tx.rollback().await?;
            return Err(BlobError::Busy { size: upload.size });
        }
        tx.execute(
            &query(
                "INSERT INTO cr_upload_writers (upload_id, writer, until_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (upload_id) DO UPDATE SET writer = excluded.writer, \
                 until_at = excluded.until_at",
            )
            .bind(id)
            .bind(&writer)
            .bind(now + lease_nanos()),
        )
        .await?;
        // Pieces a writer that died left past the upload's end.
        tx.execute(
            &query("DELETE FROM cr_blob_data WHERE storage = $1 AND seq >= $2")
                .bind(id)
                .bind(upload.pieces),
        )
        .await?;
        tx.commit().await?;
        let mut claim = Claim {
            store: self.clone(),
            hasher: self.digests.get(&upload.id, upload.size),
            upload,
            writer,
            renewed: std::time::Instant::now(),
            released: false,
            tail: Tail::default(),
            new_parts: Vec::new(),
        };
        if claim.upload.multipart.is_some() {
            // The bytes after the last whole part, which this request continues.
            for seq in 0..claim.upload.pieces {
                match self.piece(id, seq).await {
                    Ok(piece) => claim.tail.push(Bytes::from(piece)),
                    Err(e) => {
                        claim.release().await;
                        return Err(e);
                    }
                }
            }
        }
        Ok(claim)
    }

    /// Why a request lost its claim: the upload is gone (cancelled, finished, expired), or
    /// another request took it over after the claim ran out.
    async fn lost(&self, id: &str) -> BlobError {
        match self.upload(id).await {
            Ok(upload) => BlobError::Busy { size: upload.size },
            Err(e) => e,
        }
    }

    async fn piece(&self, storage: &str, seq: i64) -> Result<Vec<u8>, BlobError> {
        let piece: Vec<u8> = self
            .db
            .fetch_scalar(
                &query("SELECT data FROM cr_blob_data WHERE storage = $1 AND seq = $2")
                    .bind(storage)
                    .bind(seq),
            )
            .await?
            .ok_or_else(|| {
                BlobError::Unavailable(format!("piece {seq} of {storage} is missing"))
            })?;
        BYTES_READ.fetch_add(piece.len() as u64, Ordering::Relaxed);
        Ok(piece)
    }

    /// The blob's whole content; for manifests, which are small.
    pub async fn read_all(&self, blob: &BlobInfo) -> Result<Vec<u8>, BlobError> {
        let mut content = Vec::with_capacity(usize::try_from(blob.size).unwrap_or_default());
        if blob.in_objects {
            let mut read = std::pin::pin!(self.read_object(blob, 0, blob.size).await?);
            while let Some(piece) = read.next().await {
                content.extend_from_slice(&piece?);
            }
            return Ok(content);
        }
        for seq in 0..blob.pieces {
            content.extend_from_slice(&self.piece(&blob.storage, seq).await?);
        }
        Ok(content)
    }

    /// `length` bytes of the blob's content from `start` (within its size), as a stream of
    /// pieces read one at a time: for `Range` reads, which resume interrupted pulls.
    pub async fn read_range(
        &self,
        blob: &BlobInfo,
        start: i64,
        length: i64,
    ) -> Result<BlobStream, BlobError> {
        if blob.in_objects {
            return self.read_object(blob, start, length).await;
        }
        // Where each piece begins: pieces are whole `PIECE`s but for the last of each request
        // that wrote the blob.
        let rows = self
            .db
            .fetch_all(
                &query(
                    "SELECT seq, length(data) FROM cr_blob_data WHERE storage = $1 ORDER BY seq",
                )
                .bind(&blob.storage),
            )
            .await?;
        let end = start + length;
        let mut wanted = Vec::new();
        let mut offset = 0i64;
        for row in rows {
            let seq: i64 = row.get(0)?;
            let size: i64 = row.get(1)?;
            let (from, to) = (offset, offset + size);
            offset = to;
            if to <= start || from >= end {
                continue;
            }
            // The part of this piece inside the range.
            let skip = usize::try_from(start.max(from) - from).unwrap_or_default();
            let take = usize::try_from(end.min(to) - start.max(from)).unwrap_or_default();
            wanted.push((seq, skip, take));
        }
        Ok(self.read_ahead(blob, wanted).boxed())
    }

    /// The blob's content as a stream of pieces, read ahead of the client (see
    /// [`READ_AHEAD`]), or as it comes from object storage.
    pub fn read(&self, blob: &BlobInfo) -> BlobStream {
        if blob.in_objects {
            let (store, blob) = (self.clone(), blob.clone());
            return futures_util::stream::once(async move {
                store.read_object(&blob, 0, blob.size).await
            })
            .try_flatten()
            .boxed();
        }
        let whole = usize::MAX;
        self.read_ahead(blob, (0..blob.pieces).map(|seq| (seq, 0, whole)).collect())
            .boxed()
    }

    /// `length` bytes from `start` of a blob in object storage, counted as read.
    async fn read_object(
        &self,
        blob: &BlobInfo,
        start: i64,
        length: i64,
    ) -> Result<BlobStream, BlobError> {
        let objects = self.objects_for(&format!("blob {}", blob.digest))?;
        let read = objects
            .read(
                &blob.storage,
                u64::try_from(start).unwrap_or_default(),
                u64::try_from(length).unwrap_or_default(),
            )
            .await?;
        Ok(read
            .inspect(|piece| {
                if let Ok(piece) = piece {
                    BYTES_READ.fetch_add(piece.len() as u64, Ordering::Relaxed);
                }
            })
            .boxed())
    }

    /// Where a client may read the blob itself: a pre-signed URL into object storage, when
    /// the blob is there and pulls are redirected (see [`ObjectStorageConfig::redirect`]).
    pub async fn redirect(&self, blob: &BlobInfo) -> Result<Option<String>, BlobError> {
        match &self.objects {
            Some(objects) if blob.in_objects => objects.signed_url(&blob.storage).await,
            _ => Ok(None),
        }
    }

    /// The parts `(seq, skip, take)` of the blob's pieces, in order, read by a task of their
    /// own up to [`READ_AHEAD`] pieces ahead of the stream, so that the next piece comes out
    /// of the database while the one before goes to the client. The task stops at the first
    /// error (the stream's last item) or when the stream is dropped (the client went away).
    fn read_ahead(
        &self,
        blob: &BlobInfo,
        parts: Vec<(i64, usize, usize)>,
    ) -> impl Stream<Item = Result<Bytes, BlobError>> + Send + 'static {
        enum State {
            Idle(SqlBlobStore, String, Vec<(i64, usize, usize)>),
            Reading(tokio::sync::mpsc::Receiver<Result<Bytes, BlobError>>),
        }
        let start = State::Idle(self.clone(), blob.storage.clone(), parts);
        futures_util::stream::unfold(start, |state| async move {
            let mut pieces = match state {
                State::Reading(pieces) => pieces,
                State::Idle(store, storage, parts) => {
                    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
                    tokio::spawn(async move {
                        for (seq, skip, take) in parts {
                            let piece = store.piece(&storage, seq).await.map(|piece| {
                                let piece = Bytes::from(piece);
                                let from = skip.min(piece.len());
                                piece.slice(from..from.saturating_add(take).min(piece.len()))
                            });
                            let failed = piece.is_err();
                            if tx.send(piece).await.is_err() || failed {
                                return;
                            }
                        }
                    });
                    rx
                }
            };
            let piece = pieces.recv().await?;
            Some((piece, State::Reading(pieces)))
        })
    }
}

fn lease_nanos() -> i64 {
    i64::try_from(WRITER_LEASE.as_nanos()).unwrap_or(i64::MAX)
}

/// One request's hold on an upload (see the module docs). Dropped without
/// [`commit`](Claim::commit) or [`release`](Claim::release) (a client that went away), it is
/// released in the background.
struct Claim {
    store: SqlBlobStore,
    /// The upload as claimed, advanced by what this request wrote.
    upload: Upload,
    writer: String,
    renewed: std::time::Instant,
    released: bool,
    /// The running digest of every byte of the upload, when this process wrote them all.
    hasher: Option<Sha256>,
    /// For an upload into object storage: the bytes after its last whole part (fewer than a
    /// part), kept in the database between requests.
    tail: Tail,
    /// The parts this request uploaded.
    new_parts: Vec<Part>,
}

/// The bytes of an upload into object storage after its last whole part, as they came.
#[derive(Debug, Default)]
struct Tail {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Tail {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    /// The chunks and their length, leaving the tail empty.
    fn take(&mut self) -> (Vec<Bytes>, usize) {
        let len = std::mem::take(&mut self.len);
        (std::mem::take(&mut self.chunks), len)
    }

    /// The bytes in pieces of [`PIECE`] (the last one shorter), for the database.
    fn pieces(&self) -> Vec<Vec<u8>> {
        let (mut pieces, mut piece) = (Vec::new(), Vec::with_capacity(PIECE.min(self.len)));
        for chunk in &self.chunks {
            fill_pieces(&mut piece, chunk, &mut pieces);
        }
        if !piece.is_empty() {
            pieces.push(piece);
        }
        pieces
    }
}

/// A part of a multipart upload, uploaded.
#[derive(Debug, Clone)]
struct Part {
    number: i64,
    etag: String,
    size: i64,
}

/// The running digests of uploads whose every byte went through one store (one server), by
/// upload id, with the size they cover: finishing such an upload needs no second read of its
/// bytes. An upload another replica (or a server before a restart) wrote to is read back.
#[derive(Debug, Default)]
struct RunningDigests(std::sync::Mutex<std::collections::HashMap<String, (i64, Sha256)>>);

/// The most running digests kept; past it they are dropped (those uploads are read back).
const MOST_DIGESTS: usize = 4096;

impl RunningDigests {
    /// The running digest of the upload `id` if it covers its first `size` bytes.
    fn get(&self, id: &str, size: i64) -> Option<Sha256> {
        if size == 0 {
            return Some(Sha256::new());
        }
        let digests = self.0.lock().ok()?;
        digests
            .get(id)
            .filter(|(covered, _)| *covered == size)
            .map(|(_, hasher)| hasher.clone())
    }

    fn keep(&self, id: &str, size: i64, hasher: Sha256) {
        if let Ok(mut digests) = self.0.lock() {
            if digests.len() >= MOST_DIGESTS {
                digests.clear();
            }
            digests.insert(id.to_owned(), (size, hasher));
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut digests) = self.0.lock() {
            digests.remove(id);
        }
    }
}

/// Pieces written in one transaction: fewer commits (each waits for the disk), while a
/// request's bytes still count only when it ends well.
const PIECES_PER_COMMIT: usize = 32;

/// Appends `data` to `piece`, moving each piece filled to [`PIECE`] bytes into `full`.
fn fill_pieces(piece: &mut Vec<u8>, mut data: &[u8], full: &mut Vec<Vec<u8>>) {
    while !data.is_empty() {
        let take = (PIECE - piece.len()).min(data.len());
        piece.extend_from_slice(&data[..take]);
        data = &data[take..];
        if piece.len() == PIECE {
            full.push(std::mem::replace(piece, Vec::with_capacity(PIECE)));
        }
    }
}

/// Stores `pieces` as the content of `storage` from `seq` on, in `tx`; returns the next seq.
async fn insert_pieces(
    tx: &mut yc_sql::Tx,
    storage: &str,
    mut seq: i64,
    pieces: Vec<Vec<u8>>,
) -> Result<i64, BlobError> {
    for piece in pieces {
        tx.execute(
            &query("INSERT INTO cr_blob_data (storage, seq, data) VALUES ($1, $2, $3)")
                .bind(storage)
                .bind(seq)
                .bind(piece),
        )
        .await?;
        seq += 1;
    }
    Ok(seq)
}

impl Claim {
    /// Whether this request still holds the upload; in `tx`, whose rows it then locks in the
    /// same order as claiming does (the upload, then its writer).
    async fn still_held(&self, tx: &mut yc_sql::Tx) -> Result<bool, BlobError> {
        let sql = format!(
            "SELECT size FROM cr_uploads WHERE id = $1{}",
            tx.dialect().for_update()
        );
        let size: Option<i64> = tx.fetch_scalar(&query(sql).bind(&self.upload.id)).await?;
        if size.is_none() {
            return Ok(false);
        }
        let writer: Option<String> = tx
            .fetch_scalar(
                &query("SELECT writer FROM cr_upload_writers WHERE upload_id = $1")
                    .bind(&self.upload.id),
            )
            .await?;
        Ok(writer.as_deref() == Some(self.writer.as_str()))
    }

    /// Writes the body's bytes after the upload's end, a piece at a time, each only while the
    /// claim holds; nothing is counted in the upload until [`commit`](Claim::commit).
    async fn write<S, E>(&mut self, body: S, length: Option<i64>) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        if let Some(multipart) = self.upload.multipart.clone() {
            return self.write_parts(body, length, &multipart).await;
        }
        // While one batch of pieces is being stored, the next is received and hashed.
        let mut pending = None;
        let written = self.write_pieces(body, length, &mut pending).await;
        let stored = match pending {
            Some(last) => wait_stored(last).await,
            None => Ok(()),
        };
        written?;
        stored?;
        self.renewed = std::time::Instant::now();
        Ok(())
    }

    async fn write_pieces<S, E>(
        &mut self,
        body: S,
        length: Option<i64>,
        pending: &mut Option<Storing>,
    ) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt as _;
        let mut buffer: Vec<u8> = Vec::with_capacity(PIECE);
        let mut body = std::pin::pin!(body);
        let mut received = 0i64;
        let mut next = self.upload.pieces;
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(PIECES_PER_COMMIT);
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => Some(chunk),
                Some(Err(e)) => return Err(BlobError::Body(e.to_string())),
                None => None,
            };
            if let Some(chunk) = &chunk {
                received += chunk.len() as i64;
                if let Some(expected) = length.filter(|expected| received > *expected) {
                    return Err(BlobError::LengthMismatch { expected, received });
                }
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(chunk);
                }
                fill_pieces(&mut buffer, chunk, &mut batch);
                while batch.len() >= PIECES_PER_COMMIT {
                    let pieces: Vec<Vec<u8>> = batch.drain(..PIECES_PER_COMMIT).collect();
                    self.store_pieces(pending, next, pieces).await?;
                    next += PIECES_PER_COMMIT as i64;
                }
            } else {
                if !buffer.is_empty() {
                    batch.push(std::mem::take(&mut buffer));
                }
                if !batch.is_empty() {
                    let pieces = std::mem::take(&mut batch);
                    let count = pieces.len() as i64;
                    self.store_pieces(pending, next, pieces).await?;
                    next += count;
                }
                break;
            }
            if self.renewed.elapsed() > WRITER_LEASE / 3 {
                self.renew().await?;
            }
        }
        if let Some(expected) = length.filter(|expected| received != *expected) {
            return Err(BlobError::LengthMismatch { expected, received });
        }
        self.upload.size += received;
        self.upload.pieces = next;
        Ok(())
    }

    /// Writes the body's bytes into the multipart upload, a whole part at a time (uploaded in
    /// the background while the next one is received), each only while the claim holds;
    /// what is left after the last whole part stays in [`Claim::tail`]. At most two parts
    /// are held in memory, whatever the length of the body.
    async fn write_parts<S, E>(
        &mut self,
        body: S,
        length: Option<i64>,
        multipart: &str,
    ) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let objects = self.store.objects_for("the upload")?.clone();
        let part_size = objects.part_size();
        let mut body = std::pin::pin!(body);
        let mut received = 0i64;
        let mut next = self.upload.parts + self.new_parts.len() as i64 + 1;
        let mut pending: Option<tokio::task::JoinHandle<Result<Part, BlobError>>> = None;
        let written = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
                received += chunk.len() as i64;
                if let Some(expected) = length.filter(|expected| received > *expected) {
                    return Err(BlobError::LengthMismatch { expected, received });
                }
                if let Some(hasher) = &mut self.hasher {
                    hasher.update(&chunk);
                }
                // The body's own buffers make up a part: nothing is copied.
                let mut chunk = chunk;
                while !chunk.is_empty() {
                    let take = (part_size - self.tail.len).min(chunk.len());
                    self.tail.push(chunk.split_to(take));
                    if self.tail.len < part_size {
                        continue;
                    }
                    let (part, _) = self.tail.take();
                    if let Some(previous) = pending.take() {
                        self.new_parts.push(wait_part(previous).await?);
                    }
                    self.renew().await?;
                    let (objects, id, multipart) = (
                        objects.clone(),
                        self.upload.id.clone(),
                        multipart.to_owned(),
                    );
                    let number = next;
                    next += 1;
                    pending = Some(tokio::spawn(async move {
                        let size = part.iter().map(Bytes::len).sum::<usize>() as i64;
                        let etag = objects.put_part(&id, &multipart, number, part).await?;
                        BYTES_WRITTEN.fetch_add(size as u64, Ordering::Relaxed);
                        Ok(Part { number, etag, size })
                    }));
                }
                if self.renewed.elapsed() > WRITER_LEASE / 3 {
                    self.renew().await?;
                }
            }
            if let Some(expected) = length.filter(|expected| received != *expected) {
                return Err(BlobError::LengthMismatch { expected, received });
            }
            Ok(())
        }
        .await;
        let uploaded = match pending {
            Some(last) => wait_part(last).await.map(|part| self.new_parts.push(part)),
            None => Ok(()),
        };
        written?;
        uploaded?;
        self.upload.size += received;
        Ok(())
    }

    /// Stores pieces from `seq` on in the background, once the batch before is stored.
    async fn store_pieces(
        &mut self,
        pending: &mut Option<Storing>,
        seq: i64,
        pieces: Vec<Vec<u8>>,
    ) -> Result<(), BlobError> {
        if let Some(previous) = pending.take() {
            wait_stored(previous).await?;
            self.renewed = std::time::Instant::now();
        }
        *pending = Some(tokio::spawn(store_pieces(
            self.store.clone(),
            self.upload.id.clone(),
            self.writer.clone(),
            seq,
            pieces,
        )));
        Ok(())
    }

    async fn renew(&mut self) -> Result<(), BlobError> {
        let mut tx = self.store.db.begin().await?;
        if !self.renew_in(&mut tx).await? {
            tx.rollback().await?;
            return Err(self.store.lost(&self.upload.id).await);
        }
        tx.commit().await?;
        self.renewed = std::time::Instant::now();
        Ok(())
    }

    async fn renew_in(&self, tx: &mut yc_sql::Tx) -> Result<bool, BlobError> {
        renew_claim(tx, &self.upload.id, &self.writer).await
    }

    /// Counts what this request wrote in the upload and lets the upload go.
    async fn commit(mut self) -> Result<Upload, BlobError> {
        let mut tx = self.store.db.begin().await?;
        if !self.still_held(&mut tx).await? {
            tx.rollback().await?;
            self.released = true;
            return Err(self.store.lost(&self.upload.id).await);
        }
        if self.upload.multipart.is_some() {
            self.keep_parts(&mut tx).await?;
        }
        tx.execute(
            &query("UPDATE cr_uploads SET size = $1, pieces = $2, parts = $3 WHERE id = $4")
                .bind(self.upload.size)
                .bind(self.upload.pieces)
                .bind(self.upload.parts)
                .bind(&self.upload.id),
        )
        .await?;
        tx.execute(
            &query("DELETE FROM cr_upload_writers WHERE upload_id = $1").bind(&self.upload.id),
        )
        .await?;
        tx.commit().await?;
        self.released = true;
        if let Some(hasher) = self.hasher.take() {
            self.store
                .digests
                .keep(&self.upload.id, self.upload.size, hasher);
        }
        Ok(self.upload.clone())
    }

    /// Records the parts this request uploaded and replaces the upload's stored tail with
    /// this request's (in `tx`, which counts them in the upload).
    async fn keep_parts(&mut self, tx: &mut yc_sql::Tx) -> Result<(), BlobError> {
        for part in std::mem::take(&mut self.new_parts) {
            tx.execute(
                &query(
                    "INSERT INTO cr_upload_parts (upload_id, part, etag, size) VALUES ($1, $2, $3, $4)",
                )
                .bind(&self.upload.id)
                .bind(part.number)
                .bind(part.etag)
                .bind(part.size),
            )
            .await?;
            self.upload.parts = self.upload.parts.max(part.number);
        }
        tx.execute(&query("DELETE FROM cr_blob_data WHERE storage = $1").bind(&self.upload.id))
            .await?;
        self.upload.pieces = insert_pieces(tx, &self.upload.id, 0, self.tail.pieces()).await?;
        Ok(())
    }

    /// Lets the upload go as it was before this request, removing the pieces it wrote.
    async fn release(mut self) {
        self.released = true;
        if let Err(e) = release(&self.store, &self.upload.id, &self.writer).await {
            tracing::warn!(upload = %self.upload.id, error = %e, "cannot release an upload; its claim runs out");
        }
    }
}

/// Lists the object `storage` (and its multipart upload, if one may still be open) for
/// removal from the object storage, in `tx`: see `cr_object_trash` and
/// [`SqlBlobStore::empty_trash`].
async fn put_in_trash(
    tx: &mut yc_sql::Tx,
    storage: &str,
    multipart: Option<String>,
) -> Result<(), BlobError> {
    tx.execute(
        &query(
            "INSERT INTO cr_object_trash (storage, multipart) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(storage)
        .bind(multipart),
    )
    .await?;
    Ok(())
}

/// A batch of pieces being stored.
type Storing = tokio::task::JoinHandle<Result<(), BlobError>>;

async fn wait_part(
    uploading: tokio::task::JoinHandle<Result<Part, BlobError>>,
) -> Result<Part, BlobError> {
    uploading
        .await
        .map_err(|e| BlobError::Unavailable(format!("uploading a part failed: {e}")))?
}

async fn wait_stored(storing: Storing) -> Result<(), BlobError> {
    storing
        .await
        .map_err(|e| BlobError::Unavailable(format!("storing pieces failed: {e}")))?
}

/// Stores pieces from `seq` on for `writer`, renewing its claim in the same transaction;
/// refused once the claim is lost (then nothing is stored).
async fn store_pieces(
    store: SqlBlobStore,
    id: String,
    writer: String,
    seq: i64,
    pieces: Vec<Vec<u8>>,
) -> Result<(), BlobError> {
    let size: u64 = pieces.iter().map(|p| p.len() as u64).sum();
    let mut tx = store.db.begin().await?;
    if !renew_claim(&mut tx, &id, &writer).await? {
        tx.rollback().await?;
        return Err(store.lost(&id).await);
    }
    insert_pieces(&mut tx, &id, seq, pieces).await?;
    tx.commit().await?;
    BYTES_WRITTEN.fetch_add(size, Ordering::Relaxed);
    Ok(())
}

/// Renews `writer`'s claim on the upload `id`; false when it holds it no more.
async fn renew_claim(tx: &mut yc_sql::Tx, id: &str, writer: &str) -> Result<bool, BlobError> {
    let renewed = tx
        .execute(
            &query(
                "UPDATE cr_upload_writers SET until_at = $1 WHERE upload_id = $2 AND writer = $3",
            )
            .bind(nanos(Timestamp::now()) + lease_nanos())
            .bind(id)
            .bind(writer),
        )
        .await?;
    Ok(renewed > 0)
}

/// Ends `writer`'s claim on the upload `id` without counting what it wrote.
async fn release(store: &SqlBlobStore, id: &str, writer: &str) -> Result<(), BlobError> {
    let mut tx = store.db.begin().await?;
    let sql = format!(
        "SELECT pieces FROM cr_uploads WHERE id = $1{}",
        tx.dialect().for_update()
    );
    let pieces: Option<i64> = tx.fetch_scalar(&query(sql).bind(id)).await?;
    let released = tx
        .execute(
            &query("DELETE FROM cr_upload_writers WHERE upload_id = $1 AND writer = $2")
                .bind(id)
                .bind(writer),
        )
        .await?;
    if let (Some(pieces), true) = (pieces, released > 0) {
        tx.execute(
            &query("DELETE FROM cr_blob_data WHERE storage = $1 AND seq >= $2")
                .bind(id)
                .bind(pieces),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (store, id, writer) = (
            self.store.clone(),
            self.upload.id.clone(),
            std::mem::take(&mut self.writer),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = release(&store, &id, &writer).await {
                    tracing::warn!(upload = %id, error = %e, "cannot release an upload; its claim runs out");
                }
            });
        }
    }
}
