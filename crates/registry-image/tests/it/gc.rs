//! Garbage collection of blobs, on SQLite and on PostgreSQL: after an image is deleted the
//! blobs only it needed go (storage goes down), blobs other images need stay, blobs pushed
//! for a manifest not yet written stay for the grace period, and a multi-platform index keeps
//! its platforms' blobs. On PostgreSQL, pushes on one replica while another collects with no
//! grace at all never leave an image without a blob it needs.

use std::sync::Arc;
use std::time::Duration;

use crate::support::TestImage;
use yc_operations::{MemoryOperationStore, OperationRunner};
use yc_registry_image::blobs::SqlBlobStore;
use yc_registry_image::oci::{ImageManifest, PushedManifest};
use yc_registry_image::store::{ImageStore, Registry};
use yc_registry_image::{RegistryImages, SqlImageStore};
use yc_sql::{Db, TestPostgres};

const REGISTRY: &str = "crpgc";
/// The grace period of the racing collections: shorter than the test, and on a loaded machine
/// shorter than some pushes, which must then be refused rather than stored without a blob.
const GRACE: Duration = Duration::from_millis(50);

struct Stores {
    images: RegistryImages,
    blobs: SqlBlobStore,
}

async fn stores(db: Db) -> Stores {
    stores_in(db, None).await
}

/// The stores, with blob content in `objects` if given.
async fn stores_in(db: Db, objects: Option<yc_registry_image::blobs::ObjectStorage>) -> Stores {
    let store = SqlImageStore::open(db.clone()).await.unwrap();
    store
        .ensure_registry(&Registry {
            id: REGISTRY.into(),
            folder_id: "b1gfolder".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    Stores {
        images: RegistryImages::new(Arc::new(store), runner),
        blobs: match objects {
            None => SqlBlobStore::open(db).await.unwrap(),
            Some(objects) => SqlBlobStore::open(db)
                .await
                .unwrap()
                .with_object_storage(objects)
                .await
                .unwrap(),
        },
    }
}

/// Pushes an image as the distribution API does: its blobs and manifest bytes, then (renewing
/// the blobs' links) the image. `None` when garbage collection took a blob between the two, which the API
/// answers with `MANIFEST_BLOB_UNKNOWN` (or, with no grace period at all, right after its
/// upload, answered as unavailable); a client pushes again.
async fn push(stores: &Stores, repository: &str, image: &TestImage) -> Option<ImageManifest> {
    let manifest = ImageManifest::parse(image.manifest.clone()).unwrap();
    for blob in image.blobs().chain([manifest.bytes.as_slice()]) {
        match stores.blobs.put(REGISTRY, blob).await {
            Ok(_) => {}
            Err(yc_registry_image::blobs::BlobError::Unavailable(why))
                if why.contains("vanished") =>
            {
                return None;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let digests: Vec<&str> = manifest
        .manifest
        .blobs()
        .map(|d| d.digest.as_str())
        .collect();
    if !stores
        .blobs
        .touch(REGISTRY, &digests)
        .await
        .unwrap()
        .is_empty()
    {
        return None;
    }
    let pushed = stores
        .images
        .push_linked(
            repository,
            &PushedManifest::Image(manifest.clone()),
            Some("latest"),
        )
        .await;
    match pushed {
        Ok(_) => Some(manifest),
        Err(e) if e.grpc_code() == tonic::Code::FailedPrecondition => None,
        Err(e) => panic!("{e:?}"),
    }
}

async fn delete(stores: &Stores, repository: &str, digest: &str) {
    assert!(
        stores
            .images
            .delete_reference(repository, digest)
            .await
            .unwrap()
    );
}

async fn linked(stores: &Stores, digest: &str) -> bool {
    stores.blobs.blob(REGISTRY, digest).await.unwrap().is_some()
}

async fn collects_what_no_image_needs(stores: Stores) {
    let shared = b"a base layer both images have".as_slice();
    let one = TestImage::new("one", &[("base", shared), ("app", b"only one's layer")]);
    let two = TestImage::new("two", &[("base", shared), ("app", b"only two's layer")]);
    let one_manifest = push(&stores, "crpgc/one", &one).await.unwrap();
    push(&stores, "crpgc/two", &two).await.unwrap();
    let (before, count_before) = stores.blobs.stored().await.unwrap();

    // Nothing unneeded: nothing goes.
    let collected = stores.blobs.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(collected.blobs_removed, 0, "{collected:?}");
    assert_eq!(stores.blobs.stored().await.unwrap().0, before);

    // Deleted: within the grace period its blobs stay; after it, what only it needed goes.
    delete(&stores, "crpgc/one", &one_manifest.digest).await;
    let kept = stores
        .blobs
        .collect_garbage(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(kept.blobs_removed, 0, "{kept:?}");
    let collected = stores.blobs.collect_garbage(Duration::ZERO).await.unwrap();
    // Its manifest, config and own layer.
    assert_eq!(collected.blobs_removed, 3, "{collected:?}");
    let (after, count_after) = stores.blobs.stored().await.unwrap();
    assert_eq!(count_after, count_before - 3);
    assert_eq!(collected.bytes_freed, before - after);
    assert_eq!(
        collected.bytes_freed,
        (one_manifest.bytes.len() + one.config.len() + one.layers[1].len()) as i64,
        "its manifest, config and own layer: {collected:?}"
    );
    // The shared layer stays, linked, with every blob of the other image.
    let two_manifest = ImageManifest::parse(two.manifest.clone()).unwrap();
    for digest in two_manifest
        .manifest
        .blobs()
        .map(|d| d.digest.clone())
        .chain([two_manifest.digest.clone()])
    {
        assert!(linked(&stores, &digest).await, "{digest} of two is kept");
    }
    assert!(!linked(&stores, &one_manifest.digest).await);

    // A blob pushed for a manifest not yet written stays for the grace period.
    let pending = stores
        .blobs
        .put(REGISTRY, b"uploaded, manifest still to come")
        .await
        .unwrap();
    stores
        .blobs
        .collect_garbage(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(linked(&stores, &pending.digest).await);

    // A multi-platform index keeps its platforms' blobs after their own images are deleted.
    let amd = TestImage::new("amd64", &[("app", b"amd64 layer")]);
    let arm = TestImage::new("arm64", &[("app", b"arm64 layer")]);
    let mut platforms = Vec::new();
    for image in [&amd, &arm] {
        let manifest = push(&stores, "crpgc/multi", image).await.unwrap();
        platforms.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.digest, "size": manifest.bytes.len(),
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": platforms,
    })
    .to_string()
    .into_bytes();
    let index = PushedManifest::parse(index).unwrap();
    stores.blobs.put(REGISTRY, index.bytes()).await.unwrap();
    stores
        .images
        .push_manifest("crpgc/multi", &index, Some("v1"))
        .await
        .unwrap();
    for image in [&amd, &arm] {
        let manifest = ImageManifest::parse(image.manifest.clone()).unwrap();
        delete(&stores, "crpgc/multi", &manifest.digest).await;
    }
    stores.blobs.collect_garbage(Duration::ZERO).await.unwrap();
    for image in [&amd, &arm] {
        let manifest = ImageManifest::parse(image.manifest.clone()).unwrap();
        for digest in manifest
            .manifest
            .blobs()
            .map(|d| d.digest.clone())
            .chain([manifest.digest.clone()])
        {
            assert!(
                linked(&stores, &digest).await,
                "the index still needs {digest}"
            );
        }
    }
    // Once the index goes too, so do they.
    delete(&stores, "crpgc/multi", index.digest()).await;
    let collected = stores.blobs.collect_garbage(Duration::ZERO).await.unwrap();
    // The index, and both platforms' manifests, configs and layers.
    assert_eq!(collected.blobs_removed, 7, "{collected:?}");
}

#[tokio::test]
async fn garbage_collection_on_sqlite() {
    collects_what_no_image_needs(stores(Db::sqlite_memory().await.unwrap()).await).await;
}

/// With content in object storage, each blob collected is an object removed: the objects
/// left are exactly the blobs stored.
#[tokio::test]
async fn garbage_collection_in_object_storage() {
    let Some(s3) =
        yc_registry_image::blobs::TestS3::start("garbage_collection_in_object_storage").await
    else {
        return;
    };
    let stores = stores_in(
        Db::sqlite_memory().await.unwrap(),
        Some(s3.storage("gc").unwrap()),
    )
    .await;
    let blobs = stores.blobs.clone();
    collects_what_no_image_needs(stores).await;
    let (_, count) = blobs.stored().await.unwrap();
    assert!(count > 0);
    assert_eq!(s3.keys("gc/blobs/").await.len() as i64, count);
    assert_eq!(s3.incomplete_uploads().await, Vec::<String>::new());
}

#[tokio::test]
async fn garbage_collection_on_postgres() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    collects_what_no_image_needs(stores(Db::Postgres(pg.pool.clone())).await).await;
    pg.drop_schema().await;
}

/// One replica pushes images again and again (each round deleting the last, so that its
/// blobs become garbage) while another collects over and over with a grace period shorter
/// than the test. Every image that was stored keeps every blob it needs, and the deleted
/// images' blobs do go.
#[tokio::test]
async fn postgres_collection_racing_pushes_never_takes_a_needed_blob() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    collection_racing_pushes(&pg, None).await;
    pg.drop_schema().await;
}

/// The same race with blob content in object storage: a collected blob's object is removed
/// after its row, so a push that links the blob meanwhile must never be left with an
/// object that is gone. Every needed blob is read back whole.
#[tokio::test]
async fn postgres_collection_racing_pushes_in_object_storage() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let Some(s3) = yc_registry_image::blobs::TestS3::start(
        "postgres_collection_racing_pushes_in_object_storage",
    )
    .await
    else {
        return;
    };
    collection_racing_pushes(&pg, Some(&s3)).await;
    pg.drop_schema().await;
}

async fn collection_racing_pushes(
    pg: &TestPostgres,
    s3: Option<&yc_registry_image::blobs::TestS3>,
) {
    let objects = || s3.map(|s3| s3.storage("race").unwrap());
    // A push must be able to finish within the grace period now and then: against the S3
    // test server (Python) under a loaded machine, one takes longer than GRACE.
    let grace = if s3.is_some() { GRACE * 10 } else { GRACE };
    let pusher = stores_in(Db::Postgres(pg.pool.clone()), objects()).await;
    let mut collector = SqlBlobStore::open(Db::Postgres(pg.replica_pool().await))
        .await
        .unwrap();
    if let Some(objects) = objects() {
        collector = collector.with_object_storage(objects).await.unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collecting = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                collector.collect_garbage(grace).await.unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    let shared = b"the layer every image shares".as_slice();
    let (mut stored, mut refused) = (0, 0);
    let mut previous: Option<ImageManifest> = None;
    let mut first_own_layer = None;
    for n in 0..40 {
        let own = format!("layer {n}");
        let image = TestImage::new(
            &format!("r{n}"),
            &[("base", shared), ("app", own.as_bytes())],
        );
        first_own_layer.get_or_insert_with(|| crate::support::sha256(&image.layers[1]));
        match push(&pusher, "crpgc/race", &image).await {
            Some(manifest) => {
                stored += 1;
                for digest in manifest
                    .manifest
                    .blobs()
                    .map(|d| d.digest.clone())
                    .chain([manifest.digest.clone()])
                {
                    assert!(
                        linked(&pusher, &digest).await,
                        "round {n}: stored image lost {digest}"
                    );
                    let blob = pusher.blobs.blob(REGISTRY, &digest).await.unwrap().unwrap();
                    pusher.blobs.read_all(&blob).await.unwrap();
                }
                if let Some(old) = previous.replace(manifest) {
                    delete(&pusher, "crpgc/race", &old.digest).await;
                }
            }
            None => refused += 1,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = collecting.await.unwrap();
    assert!(rounds > 0);
    assert_eq!(stored + refused, 40);
    assert!(stored > 0, "every push was refused");
    // After the grace period, the deleted images' blobs go; the last image stays whole.
    tokio::time::sleep(grace * 2).await;
    pusher.blobs.collect_garbage(grace).await.unwrap();
    let first = first_own_layer.unwrap();
    assert!(
        !linked(&pusher, &first).await,
        "{first} of a deleted image is kept"
    );
    let last = previous.unwrap();
    for digest in last.manifest.blobs().map(|d| d.digest.clone()) {
        let blob = pusher.blobs.blob(REGISTRY, &digest).await.unwrap();
        let blob = blob.unwrap_or_else(|| panic!("the last image lost {digest}"));
        let content = pusher.blobs.read_all(&blob).await.unwrap();
        assert_eq!(yc_registry_image::oci::sha256_digest(&content), digest);
    }
}
