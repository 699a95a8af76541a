//! The blob store behind the distribution API, on SQLite and on PostgreSQL: uploads in several
//! requests, pieces larger than one row, digests checked, out-of-order bytes refused without
//! changing the upload, blobs visible only in the registries they were pushed to.

use bytes::Bytes;
use yc_operations::db::TestPostgres;
use yc_registry_image::blobs::{BlobError, PIECE, SqlBlobStore};
use yc_registry_image::oci::sha256_digest;

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn body(parts: &[&[u8]]) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let parts: Vec<Result<Bytes, std::io::Error>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    futures_util::stream::iter(parts)
}

async fn read(store: &SqlBlobStore, registry: &str, digest: &str) -> Vec<u8> {
    use futures_util::TryStreamExt as _;
    let blob = store
        .blob(registry, digest)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{digest} is not in {registry}"));
    let pieces: Vec<Bytes> = store
        .read(&blob)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let streamed = pieces.concat();
    assert_eq!(
        store
            .read_all(&blob)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        streamed
    );
    streamed
}

async fn uploads_keep_every_byte_and_check_it(store: &SqlBlobStore) {
    let data = content(2 * PIECE + 12_345);
    let digest = sha256_digest(&data);
    let upload = store
        .start("crpone")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Two requests; the first arrives in small chunks, the second in one large one.
    let (first, second) = data.split_at(PIECE + 10);
    let chunks: Vec<&[u8]> = first.chunks(100_000).collect();
    let after_first = store
        .append(&upload.id, Some(0), body(&chunks))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after_first.size, first.len() as i64);

    // Bytes that do not continue where the upload is are refused, and change nothing.
    let refused = store
        .append(&upload.id, Some(5), body(&[b"elsewhere"]))
        .await
        .expect_err("out of order");
    assert_eq!(
        refused,
        BlobError::OutOfOrder {
            size: first.len() as i64
        }
    );
    let upload_now = store
        .upload(&upload.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(upload_now.size, first.len() as i64);

    store
        .append(&upload.id, Some(first.len() as i64), body(&[second]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let blob = store
        .finish(&upload.id, &digest)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(blob.size, data.len() as i64);
    assert_eq!(read(store, "crpone", &digest).await, data);
    // The upload is gone once it is a blob.
    assert!(matches!(
        store.upload(&upload.id).await,
        Err(BlobError::UploadUnknown(_))
    ));

    // Another registry does not see it until it is pushed or mounted there.
    assert_eq!(
        store
            .blob("crptwo", &digest)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    let again = store
        .start("crptwo")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .append(&again.id, None, body(&[&data]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .finish(&again.id, &digest)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read(store, "crptwo", &digest).await, data);

    let small = b"{\"schemaVersion\":2}";
    let mounted = store
        .put("crpone", small)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mounted.digest, sha256_digest(small));
    assert!(
        store
            .link("crpthree", &mounted.digest)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    assert_eq!(read(store, "crpthree", &mounted.digest).await, small);
    assert_eq!(
        store
            .link("crpthree", &sha256_digest(b"never pushed"))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );

    // A wrong digest: refused, and the upload is gone with what it received.
    let wrong = store
        .start("crpone")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .append(&wrong.id, None, body(&[b"some bytes"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let claimed = sha256_digest(b"other bytes");
    let error = store
        .finish(&wrong.id, &claimed)
        .await
        .expect_err("digest mismatch");
    assert_eq!(
        error,
        BlobError::DigestMismatch {
            expected: claimed.clone(),
            actual: sha256_digest(b"some bytes"),
        }
    );
    assert_eq!(
        store
            .blob("crpone", &claimed)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None
    );
    assert!(matches!(
        store.upload(&wrong.id).await,
        Err(BlobError::UploadUnknown(_))
    ));

    // A cancelled upload is gone.
    let cancelled = store
        .start("crpone")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .cancel(&cancelled.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        store.cancel(&cancelled.id).await,
        Err(BlobError::UploadUnknown(_))
    ));
}

#[tokio::test]
async fn sqlite_uploads_keep_every_byte_and_check_it() {
    let store = SqlBlobStore::in_memory()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    uploads_keep_every_byte_and_check_it(&store).await;
}

#[tokio::test]
async fn postgres_uploads_keep_every_byte_and_check_it() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let store = SqlBlobStore::open(pg.pool.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    uploads_keep_every_byte_and_check_it(&store).await;
    // An upload started through one replica continues through another.
    let other = SqlBlobStore::open(pg.pool.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let upload = store
        .start("crpone")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .append(&upload.id, Some(0), body(&[b"first half, "]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    other
        .append(&upload.id, Some(12), body(&[b"second half"]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let digest = sha256_digest(b"first half, second half");
    other
        .finish(&upload.id, &digest)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read(&store, "crpone", &digest).await,
        b"first half, second half"
    );
    pg.drop_schema().await;
}
