//! The stores, on the embedded database or on PostgreSQL.

use std::sync::Arc;

use anyhow::{Context, Result};
use yc_compute_image::store::ComputeImageStore;
use yc_compute_image::{SqlComputeImageStore, SqlSources};
use yc_operations::{OperationStore, SqlOperationStore};
use yc_registry_image::SqlImageStore;
use yc_registry_image::blobs::{ObjectStorage, SqlBlobStore};
use yc_registry_image::store::ImageStore;
use yc_sql::{Db, connect_postgres};

use super::{ServeArgs, StoreArgs};

/// The stores on one database.
pub(super) struct Stores {
    pub(super) operations: Arc<dyn OperationStore>,
    pub(super) registry: Arc<dyn ImageStore>,
    pub(super) blobs: SqlBlobStore,
    pub(super) compute: Arc<dyn ComputeImageStore>,
    pub(super) sources: SqlSources,
    pub(super) db: Db,
    /// Where the data is, for the log.
    pub(super) description: String,
    /// The data directory's lock, held while serving.
    pub(super) _lock: Option<std::fs::File>,
}

/// The database `args` names, and the data directory's lock (embedded store only), held while
/// it is in use: one process writes an embedded store at a time.
pub(crate) async fn open_db(args: &StoreArgs) -> Result<(Db, String, Option<std::fs::File>)> {
    let mut lock = None;
    let (db, description) = match &args.database_url {
        Some(url) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                anyhow::bail!(
                    "--database-url must be a PostgreSQL URL (postgres://user@host:port/database), got {url:?}"
                );
            }
            let pool = connect_postgres(url, args.database_connections)
                .await
                .with_context(|| format!("connecting to the database {}", redact(url)))?;
            (Db::Postgres(pool), redact(url))
        }
        None => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| {
                format!("creating the data directory {}", args.data_dir.display())
            })?;
            // One server per data directory: it is the only writer, which its Get cache relies on.
            let lock_path = args.data_dir.join("yc-images.lock");
            let file = std::fs::File::create(&lock_path)
                .with_context(|| format!("creating {}", lock_path.display()))?;
            match file.try_lock() {
                Ok(()) => lock = Some(file),
                Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                    "another yc-images is using the data directory {}; stop it, or give \
                     this one another --data-dir (several servers share data through \
                     --database-url)",
                    args.data_dir.display()
                ),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", lock_path.display()));
                }
            }
            let database = args.data_dir.join("yc-images.sqlite");
            // WAL with `synchronous = FULL`: an answer is sent only after its change is on disk.
            let db = Db::sqlite_file(&database, args.database_connections)
                .await
                .with_context(|| format!("opening {}", database.display()))?;
            (db, database.display().to_string())
        }
    };
    Ok((db, description, lock))
}

/// Opens the embedded store in the data directory, or the PostgreSQL database of
/// `--database-url`, and creates or migrates its schema.
pub(super) async fn open_stores(args: &ServeArgs) -> Result<Stores> {
    let (db, description, lock) = open_db(&args.store).await?;
    let operations = SqlOperationStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let registry = SqlImageStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let blobs = open_blobs(&db, &args.store)
        .await?
        .with_upload_lifetime(std::time::Duration::from_secs(args.upload_lifetime));
    blobs.expire_uploads().await.map_err(anyhow::Error::msg)?;
    if lock.is_some() {
        // The data directory is this server's alone: writers of uploads before it are gone.
        blobs.forget_writers().await.map_err(anyhow::Error::msg)?;
    }
    let mut compute = SqlComputeImageStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    if lock.is_some() {
        compute = compute.with_cache(GET_CACHE_IMAGES);
    }
    let sources = SqlSources::open(db.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    Ok(Stores {
        operations: Arc::new(operations),
        registry: Arc::new(registry),
        blobs,
        compute: Arc::new(compute),
        sources,
        db,
        description,
        _lock: lock,
    })
}

/// The blob store in `db`, with new content going to the object storage `args` names, if any.
pub(crate) async fn open_blobs(db: &Db, args: &StoreArgs) -> Result<SqlBlobStore> {
    let blobs = SqlBlobStore::open(db.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let Some(config) = args.blob_store.object_storage() else {
        return Ok(blobs);
    };
    let objects = ObjectStorage::open(&config).map_err(anyhow::Error::msg)?;
    let name = objects.name().to_owned();
    blobs
        .with_object_storage(objects)
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("opening the blob store s3://{name}"))
}

/// Compute images the embedded store keeps in memory for Get.
const GET_CACHE_IMAGES: usize = 100_000;

/// A database URL without its password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
