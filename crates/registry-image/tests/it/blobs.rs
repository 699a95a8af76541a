//! The blob store behind the distribution API, on SQLite and on PostgreSQL: uploads in several
//! requests, pieces larger than one row, digests checked, out-of-order bytes refused without
//! changing the upload, blobs visible only in the registries they were pushed to; one writer
//! at a time, so that concurrent requests never lose bytes another was answered for.

use bytes::Bytes;
use yc_registry_image::blobs::{BlobError, PIECE, SqlBlobStore};
use yc_registry_image::oci::sha256_digest;
use yc_sql::TestPostgres;

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
        .unwrap()
        .unwrap_or_else(|| panic!("{digest} is not in {registry}"));
    let pieces: Vec<Bytes> = store.read(&blob).try_collect().await.unwrap();
    let streamed = pieces.concat();
    assert_eq!(store.read_all(&blob).await.unwrap(), streamed);
    streamed
}

async fn uploads_keep_every_byte_and_check_it(store: &SqlBlobStore) {
    let data = content(2 * PIECE + 12_345);
    let digest = sha256_digest(&data);
    let upload = store.start("crpone").await.unwrap();
    // Two requests; the first arrives in small chunks, the second in one large one.
    let (first, second) = data.split_at(PIECE + 10);
    let chunks: Vec<&[u8]> = first.chunks(100_000).collect();
    let after_first = store
        .append(&upload.id, Some(0), None, body(&chunks))
        .await
        .unwrap();
    assert_eq!(after_first.size, first.len() as i64);

    // Bytes that do not continue where the upload is are refused, and change nothing.
    let refused = store
        .append(&upload.id, Some(5), None, body(&[b"elsewhere"]))
        .await
        .expect_err("out of order");
    assert_eq!(
        refused,
        BlobError::OutOfOrder {
            size: first.len() as i64
        }
    );
    let upload_now = store.upload(&upload.id).await.unwrap();
    assert_eq!(upload_now.size, first.len() as i64);

    store
        .append(&upload.id, Some(first.len() as i64), None, body(&[second]))
        .await
        .unwrap();
    let blob = store.finish(&upload.id, &digest).await.unwrap();
    assert_eq!(blob.size, data.len() as i64);
    assert_eq!(read(store, "crpone", &digest).await, data);
    // The upload is gone once it is a blob.
    assert!(matches!(
        store.upload(&upload.id).await,
        Err(BlobError::UploadUnknown(_))
    ));

    // Another registry does not see it until it is pushed or mounted there.
    assert_eq!(store.blob("crptwo", &digest).await.unwrap(), None);
    let again = store.start("crptwo").await.unwrap();
    store
        .append(&again.id, None, None, body(&[&data]))
        .await
        .unwrap();
    store.finish(&again.id, &digest).await.unwrap();
    assert_eq!(read(store, "crptwo", &digest).await, data);

    let small = b"{\"schemaVersion\":2}";
    let mounted = store.put("crpone", small).await.unwrap();
    assert_eq!(mounted.digest, sha256_digest(small));
    assert!(
        store
            .link("crpthree", &mounted.digest)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(read(store, "crpthree", &mounted.digest).await, small);
    assert_eq!(
        store
            .link("crpthree", &sha256_digest(b"never pushed"))
            .await
            .unwrap(),
        None
    );

    // A wrong digest: refused, and the upload is gone with what it received.
    let wrong = store.start("crpone").await.unwrap();
    store
        .append(&wrong.id, None, None, body(&[b"some bytes"]))
        .await
        .unwrap();
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
    assert_eq!(store.blob("crpone", &claimed).await.unwrap(), None);
    assert!(matches!(
        store.upload(&wrong.id).await,
        Err(BlobError::UploadUnknown(_))
    ));

    // A cancelled upload is gone.
    let cancelled = store.start("crpone").await.unwrap();
    store.cancel(&cancelled.id).await.unwrap();
    assert!(matches!(
        store.cancel(&cancelled.id).await,
        Err(BlobError::UploadUnknown(_))
    ));
}

#[tokio::test]
async fn sqlite_uploads_keep_every_byte_and_check_it() {
    let store = SqlBlobStore::in_memory().await.unwrap();
    uploads_keep_every_byte_and_check_it(&store).await;
}

/// A body whose bytes come when the test sends them.
fn held_body() -> (
    tokio::sync::mpsc::UnboundedSender<Bytes>,
    impl futures_util::Stream<Item = Result<Bytes, std::io::Error>>,
) {
    let (send, receive) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream = futures_util::stream::unfold(receive, |mut receive| async move {
        receive.recv().await.map(|b| (Ok(b), receive))
    });
    (send, stream)
}

/// While one request streams into an upload, others are refused and change nothing; the
/// first one's bytes then finish with their digest. `stores` are two handles on one database
/// (two replicas, on PostgreSQL).
async fn one_writer_at_a_time(stores: [SqlBlobStore; 2]) {
    let data = content(PIECE + 4_000);
    let digest = sha256_digest(&data);
    let upload = stores[0].start("crpone").await.unwrap();
    let (send, slow) = held_body();
    let first = {
        let store = stores[0].clone();
        let id = upload.id.clone();
        let length = data.len() as i64;
        tokio::spawn(async move { store.append(&id, Some(0), Some(length), slow).await })
    };
    // The first piece is stored while the request still streams.
    let _ = send.send(Bytes::copy_from_slice(&data[..PIECE + 10]));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Eight more requests at once, starting at 0 as a retrying client would: all refused.
    let mut others = Vec::new();
    for n in 0..8 {
        let store = stores[n % 2].clone();
        let id = upload.id.clone();
        others.push(tokio::spawn(async move {
            store.append(&id, Some(0), None, body(&[b"intruder"])).await
        }));
    }
    for other in others {
        let refused = other.await.unwrap();
        assert_eq!(refused, Err(BlobError::Busy { size: 0 }));
    }
    // Finishing is writing too.
    assert_eq!(
        stores[1].finish(&upload.id, &digest).await,
        Err(BlobError::Busy { size: 0 })
    );
    let _ = send.send(Bytes::copy_from_slice(&data[PIECE + 10..]));
    drop(send);
    let appended = first.await.unwrap().unwrap();
    assert_eq!(appended.size, data.len() as i64);
    stores[1].finish(&upload.id, &digest).await.unwrap();
    assert_eq!(read(&stores[0], "crpone", &digest).await, data);

    // Eight at once on a fresh upload: exactly one is taken, and its bytes finish.
    let upload = stores[0].start("crpone").await.unwrap();
    let mut racers = Vec::new();
    for n in 0..8u8 {
        let store = stores[usize::from(n) % 2].clone();
        let id = upload.id.clone();
        racers.push(tokio::spawn(async move {
            let mine = content(PIECE + usize::from(n) * 1000);
            let appended = store.append(&id, Some(0), None, body(&[&mine])).await;
            (mine, appended)
        }));
    }
    let mut taken = Vec::new();
    for racer in racers {
        let (mine, appended) = racer.await.unwrap();
        match appended {
            Ok(upload) => taken.push((mine, upload)),
            Err(BlobError::Busy { .. } | BlobError::OutOfOrder { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!taken.is_empty());
    // Several may be taken one after the other only if each continued where the upload was,
    // which none did after the first; so one.
    assert_eq!(taken.len(), 1);
    let (mine, upload_now) = &taken[0];
    assert_eq!(upload_now.size, mine.len() as i64);
    let digest = sha256_digest(mine);
    stores[0].finish(&upload.id, &digest).await.unwrap();
    assert_eq!(&read(&stores[1], "crpone", &digest).await, mine);

    // A body shorter or longer than its Content-Range says is refused; nothing changes.
    let upload = stores[0].start("crpone").await.unwrap();
    for (length, sent) in [(10, &b"short"[..]), (3, &b"too long"[..])] {
        let refused = stores[0]
            .append(&upload.id, Some(0), Some(length), body(&[sent]))
            .await;
        assert!(
            matches!(refused, Err(BlobError::LengthMismatch { .. })),
            "{refused:?}"
        );
    }
    let now = stores[1]
        .append(&upload.id, Some(0), Some(4), body(&[b"good"]))
        .await
        .unwrap();
    assert_eq!(now.size, 4);
    stores[1]
        .finish(&upload.id, &sha256_digest(b"good"))
        .await
        .unwrap();

    // A request that goes away mid-body lets the upload go at once, as it was.
    let upload = stores[0].start("crpone").await.unwrap();
    let (send, slow) = held_body();
    let gone = {
        let store = stores[0].clone();
        let id = upload.id.clone();
        tokio::spawn(async move { store.append(&id, None, None, slow).await })
    };
    let _ = send.send(Bytes::from(content(PIECE + 1)));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    gone.abort();
    let _ = gone.await;
    let mut continued = None;
    for _ in 0..100 {
        match stores[1]
            .append(&upload.id, Some(0), None, body(&[b"after"]))
            .await
        {
            Err(BlobError::Busy { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => {
                continued = Some(other);
                break;
            }
        }
    }
    let continued = continued
        .unwrap_or_else(|| panic!("the upload stayed held"))
        .unwrap();
    assert_eq!(continued.size, 5);
    stores[0]
        .finish(&upload.id, &sha256_digest(b"after"))
        .await
        .unwrap();
    assert_eq!(
        read(&stores[0], "crpone", &sha256_digest(b"after")).await,
        b"after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = yc_sql::Db::sqlite_file(dir.path().join("blobs.db"), 4)
        .await
        .unwrap();
    let store = SqlBlobStore::open(db).await.unwrap();
    one_writer_at_a_time([store.clone(), store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_writer_at_a_time_across_replicas() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let open = || async {
        let pool = pg.replica_pool().await;
        SqlBlobStore::open(pool).await.unwrap()
    };
    one_writer_at_a_time([open().await, open().await]).await;
    pg.drop_schema().await;
}

#[tokio::test]
async fn postgres_uploads_keep_every_byte_and_check_it() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let store = SqlBlobStore::open(pg.pool.clone()).await.unwrap();
    uploads_keep_every_byte_and_check_it(&store).await;
    // An upload started through one replica continues through another.
    let other = SqlBlobStore::open(pg.pool.clone()).await.unwrap();
    let upload = store.start("crpone").await.unwrap();
    store
        .append(&upload.id, Some(0), None, body(&[b"first half, "]))
        .await
        .unwrap();
    other
        .append(&upload.id, Some(12), None, body(&[b"second half"]))
        .await
        .unwrap();
    let digest = sha256_digest(b"first half, second half");
    other.finish(&upload.id, &digest).await.unwrap();
    assert_eq!(
        read(&store, "crpone", &digest).await,
        b"first half, second half"
    );
    pg.drop_schema().await;
}

/// Finishing checks the digest from the bytes as they arrived when this server received them
/// all, and by reading them back when another replica wrote some: either way a wrong digest is
/// refused and a right one stores exactly the bytes sent.
/// An unfinished upload is removed once it is older than the lifetime the store is given, and
/// not before: opening the store again (a restart) removes nothing by a lifetime of its own.
#[tokio::test]
async fn uploads_expire_after_the_lifetime_the_store_is_given_and_not_before() {
    const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
    let db = yc_sql::Db::sqlite_memory().await.unwrap();
    let store = SqlBlobStore::open(db.clone()).await.unwrap();
    let upload = store.start("crpone").await.unwrap();
    store
        .append(&upload.id, Some(0), None, body(&[b"abc"]))
        .await
        .unwrap();
    // Started two days ago.
    let two_days = i64::try_from((2 * DAY).as_nanos()).unwrap();
    db.execute(&yc_sql::query("UPDATE cr_uploads SET started_at = started_at - $1").bind(two_days))
        .await
        .unwrap();
    let kept = SqlBlobStore::open(db.clone())
        .await
        .unwrap()
        .with_upload_lifetime(3 * DAY);
    assert_eq!(kept.upload(&upload.id).await.unwrap().size, 3);
    assert_eq!(kept.expire_uploads().await.unwrap(), 0);
    assert_eq!(kept.upload(&upload.id).await.unwrap().size, 3);
    let short = kept.with_upload_lifetime(DAY);
    assert_eq!(short.expire_uploads().await.unwrap(), 1);
    assert_eq!(
        short.upload(&upload.id).await.unwrap_err(),
        BlobError::UploadUnknown(upload.id.clone())
    );
    // What it had received went with it.
    let left: Vec<i64> = db
        .fetch_all(&yc_sql::query("SELECT COUNT(*) FROM cr_blob_data"))
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<i64>(0).unwrap())
        .collect();
    assert_eq!(left, [0]);
}

#[tokio::test]
async fn digests_are_checked_whoever_wrote_the_bytes() {
    let db = yc_sql::Db::sqlite_memory().await.unwrap();
    let one = SqlBlobStore::open(db.clone()).await.unwrap();
    let two = SqlBlobStore::open(db).await.unwrap();
    let data = content(3 * PIECE + 77);
    let digest = sha256_digest(&data);
    let (first, rest) = data.split_at(PIECE + 5);
    let (second, last) = rest.split_at(PIECE);

    // All through one: a wrong digest is refused, the right one stores the bytes.
    for (claimed, ok) in [(sha256_digest(b"other"), false), (digest.clone(), true)] {
        let upload = one.start("crpone").await.unwrap();
        one.append(&upload.id, Some(0), None, body(&[first]))
            .await
            .unwrap();
        one.append(&upload.id, None, None, body(&[second]))
            .await
            .unwrap();
        let finished = one.finish_with(&upload.id, body(&[last]), &claimed).await;
        assert_eq!(finished.is_ok(), ok, "{claimed}: {finished:?}");
    }
    assert_eq!(read(&one, "crpone", &digest).await, data);

    // Written through both, finished through one (which reads the bytes back), and the other
    // way round.
    for (writers, finisher) in [([&one, &two], &one), ([&two, &one], &two)] {
        for (claimed, ok) in [(sha256_digest(b"other"), false), (digest.clone(), true)] {
            let upload = writers[0].start("crptwo").await.unwrap();
            writers[0]
                .append(&upload.id, Some(0), None, body(&[first]))
                .await
                .unwrap();
            writers[1]
                .append(&upload.id, None, None, body(&[second]))
                .await
                .unwrap();
            let finished = finisher
                .finish_with(&upload.id, body(&[last]), &claimed)
                .await;
            assert_eq!(finished.is_ok(), ok, "{claimed}: {finished:?}");
        }
    }
    assert_eq!(read(&two, "crptwo", &digest).await, data);
}

/// Reads run ahead of the client by a few pieces: a blob of many pieces and a range across
/// several still come out whole and in order, a reader dropped half-way leaves the store
/// serving, and a piece that cannot be read ends the stream with the error (no short blob
/// passed off as whole).
#[tokio::test]
async fn reads_ahead_in_order_and_stop_at_a_missing_piece() {
    use futures_util::{StreamExt as _, TryStreamExt as _};
    use yc_registry_image::blobs::READ_AHEAD;
    let db = yc_sql::Db::sqlite_memory().await.unwrap();
    let store = SqlBlobStore::open(db.clone()).await.unwrap();
    let data = content((2 * READ_AHEAD + 3) * PIECE + 99);
    let blob = store.put("crpone", &data).await.unwrap();
    assert_eq!(read(&store, "crpone", &blob.digest).await, data);

    let (start, length) = (PIECE as i64 + 17, 3 * PIECE as i64 + 5);
    let range: Vec<Bytes> = store
        .read_range(&blob, start, length)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let range = range.concat();
    assert_eq!(range, data[start as usize..(start + length) as usize]);

    let mut abandoned = Box::pin(store.read(&blob));
    assert_eq!(abandoned.next().await.unwrap().unwrap(), data[..PIECE]);
    drop(abandoned);
    assert_eq!(read(&store, "crpone", &blob.digest).await, data);

    let removed = db
        .execute(
            &yc_sql::query(
                "DELETE FROM cr_blob_data WHERE seq = 3 \
                 AND storage = (SELECT storage FROM cr_blobs WHERE digest = $1)",
            )
            .bind(&blob.digest),
        )
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let pieces: Vec<Result<Bytes, BlobError>> = store.read(&blob).collect().await;
    assert_eq!(
        pieces.len(),
        4,
        "three pieces, then the error, then nothing"
    );
    assert!(pieces[..3].iter().all(Result::is_ok));
    assert!(matches!(pieces[3], Err(BlobError::Unavailable(_))));
}

// ---- The same contract with content in object storage (an S3 server on loopback). ----

use yc_registry_image::blobs::{MIN_PART_SIZE, TestS3};

/// `store` with new content going to the test bucket under `prefix`.
async fn in_objects(store: SqlBlobStore, s3: &TestS3, prefix: &str) -> SqlBlobStore {
    store
        .with_object_storage(s3.storage(prefix).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn objects_uploads_keep_every_byte_and_check_it() {
    let Some(s3) = TestS3::start("objects_uploads_keep_every_byte_and_check_it").await else {
        return;
    };
    let store = in_objects(SqlBlobStore::in_memory().await.unwrap(), &s3, "one").await;
    uploads_keep_every_byte_and_check_it(&store).await;
    // Every blob stored is an object; the wrong digest's and the cancelled upload's are not,
    // nor is any multipart upload left open.
    let blob = store
        .blob("crpone", &sha256_digest(b"{\"schemaVersion\":2}"))
        .await
        .unwrap()
        .unwrap();
    assert!(blob.in_object_storage());
    store.empty_trash().await.unwrap();
    assert_eq!(
        s3.keys("one/blobs/").await.len(),
        2,
        "the layer and the manifest"
    );
    assert_eq!(s3.incomplete_uploads().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_one_writer_at_a_time() {
    let Some(s3) = TestS3::start("objects_one_writer_at_a_time").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = yc_sql::Db::sqlite_file(dir.path().join("blobs.db"), 4)
        .await
        .unwrap();
    let store = in_objects(SqlBlobStore::open(db).await.unwrap(), &s3, "w").await;
    one_writer_at_a_time([store.clone(), store]).await;
}

/// Several whole parts and a tail, in requests that end mid-part, through two stores on one
/// database (two replicas): the parts are uploaded as they fill, the tail waits in the
/// database for the next request, whichever replica takes it, and the object is exactly the
/// bytes sent; ranges across parts read right; a redirect URL reads the object without
/// credentials; garbage collection removes the object.
async fn parts_and_tails_across_replicas(one: SqlBlobStore, two: SqlBlobStore, s3: &TestS3) {
    use futures_util::TryStreamExt as _;
    let data = content(3 * MIN_PART_SIZE + 123_457);
    let digest = sha256_digest(&data);
    let cuts = [
        0,
        MIN_PART_SIZE / 2,
        MIN_PART_SIZE + 10,
        3 * MIN_PART_SIZE - 1,
    ];
    let upload = one.start("crpone").await.unwrap();
    for (n, window) in cuts.windows(2).enumerate() {
        let writer = if n % 2 == 0 { &one } else { &two };
        let part = &data[window[0]..window[1]];
        let chunks: Vec<&[u8]> = part.chunks(300_000).collect();
        let now = writer
            .append(
                &upload.id,
                Some(window[0] as i64),
                Some(part.len() as i64),
                body(&chunks),
            )
            .await
            .unwrap();
        assert_eq!(now.size, window[1] as i64);
    }
    let last = &data[cuts[3]..];
    // A wrong digest for bytes written through both replicas is found by reading them back.
    let wrong = two.start("crpone").await.unwrap();
    one.append(&wrong.id, None, None, body(&[&data[..MIN_PART_SIZE + 1]]))
        .await
        .unwrap();
    let refused = two
        .finish_with(&wrong.id, body(&[b"x"]), &digest)
        .await
        .expect_err("wrong digest");
    assert!(
        matches!(refused, BlobError::DigestMismatch { .. }),
        "{refused}"
    );
    let blob = two
        .finish_with(&upload.id, body(&[last]), &digest)
        .await
        .unwrap();
    assert!(blob.in_object_storage());
    assert_eq!(read(&one, "crpone", &digest).await, data);
    for (start, length) in [
        (0, 1),
        (MIN_PART_SIZE as i64 - 3, 7),
        (MIN_PART_SIZE as i64 / 2, 2 * MIN_PART_SIZE as i64),
        (data.len() as i64 - 5, 5),
    ] {
        let range: Vec<Bytes> = one
            .read_range(&blob, start, length)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            range.concat(),
            data[start as usize..(start + length) as usize],
            "{start}+{length}"
        );
    }
    one.empty_trash().await.unwrap();
    assert_eq!(s3.incomplete_uploads().await, Vec::<String>::new());
    assert_eq!(s3.keys("p/blobs/").await.len(), 1);

    // An empty blob is an object too.
    let empty = one.put("crpone", b"").await.unwrap();
    assert_eq!(read(&two, "crpone", &empty.digest).await, b"");
    assert!(empty.in_object_storage());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_parts_and_tails_across_replicas() {
    let Some(s3) = TestS3::start("objects_parts_and_tails_across_replicas").await else {
        return;
    };
    let db = yc_sql::Db::sqlite_memory().await.unwrap();
    let one = in_objects(SqlBlobStore::open(db.clone()).await.unwrap(), &s3, "p").await;
    let two = in_objects(SqlBlobStore::open(db).await.unwrap(), &s3, "p").await;
    parts_and_tails_across_replicas(one, two, &s3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_objects_parts_and_tails_across_replicas() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let Some(s3) = TestS3::start("postgres_objects_parts_and_tails_across_replicas").await else {
        return;
    };
    let one = in_objects(
        SqlBlobStore::open(pg.replica_pool().await).await.unwrap(),
        &s3,
        "p",
    )
    .await;
    let two = in_objects(
        SqlBlobStore::open(pg.replica_pool().await).await.unwrap(),
        &s3,
        "p",
    )
    .await;
    parts_and_tails_across_replicas(one, two, &s3).await;
    pg.drop_schema().await;
}

/// With pulls redirected, a blob in object storage has a pre-signed URL that reads it with
/// no credentials (ranges too); blobs in the database have none.
#[tokio::test]
async fn objects_redirect_urls_read_the_blob() {
    let Some(s3) = TestS3::start("objects_redirect_urls_read_the_blob").await else {
        return;
    };
    let db = yc_sql::Db::sqlite_memory().await.unwrap();
    let before = SqlBlobStore::open(db.clone()).await.unwrap();
    let in_db = before.put("crpone", b"in the database").await.unwrap();
    let mut config = s3.config("r");
    config.redirect = Some(std::time::Duration::from_secs(60));
    let store = SqlBlobStore::open(db)
        .await
        .unwrap()
        .with_object_storage(yc_registry_image::blobs::ObjectStorage::open(&config).unwrap())
        .await
        .unwrap();
    let data = content(MIN_PART_SIZE + 10);
    let blob = store.put("crpone", &data).await.unwrap();
    let url = store.redirect(&blob).await.unwrap().expect("a URL");
    let got = reqwest::get(&url).await.unwrap();
    assert!(got.status().is_success(), "{got:?}");
    assert_eq!(got.bytes().await.unwrap(), data);
    let ranged = reqwest::Client::new()
        .get(&url)
        .header("range", "bytes=5-9")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), data[5..10]);
    // Content kept in the database before object storage was configured stays readable.
    assert_eq!(store.redirect(&in_db).await.unwrap(), None);
    assert_eq!(
        read(&store, "crpone", &in_db.digest).await,
        b"in the database"
    );
}

/// Blobs stored in the database move to object storage and back, each read back by digest:
/// what a stopped move left is removed by the next, a blob whose content does not match its
/// digest is refused and stays where it was, and nothing is left behind in either place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_move_blobs_there_and_back() {
    use yc_registry_image::blobs::Placement;
    let Some(s3) = TestS3::start("objects_move_blobs_there_and_back").await else {
        return;
    };
    let db = yc_sql::Db::sqlite_memory().await.unwrap();
    let before = SqlBlobStore::open(db.clone()).await.unwrap();
    let contents = [
        content(2 * MIN_PART_SIZE + 3 * PIECE + 5),
        content(10),
        Vec::new(),
    ];
    for data in &contents {
        before.put("crpone", data).await.unwrap();
    }
    let store = in_objects(SqlBlobStore::open(db.clone()).await.unwrap(), &s3, "m").await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            db.fetch_scalar::<i64>(&yc_sql::query(sql))
                .await
                .unwrap()
                .unwrap()
        }
    };
    // A move that stopped: its copy listed, rows written.
    db.execute(&yc_sql::query(
        "INSERT INTO cr_blob_moves (storage, in_objects) VALUES ('blbstopped', 0)",
    ))
    .await
    .unwrap();
    db.execute(
        &yc_sql::query(
            "INSERT INTO cr_blob_data (storage, seq, data) VALUES ('blbstopped', 0, $1)",
        )
        .bind(b"left".to_vec()),
    )
    .await
    .unwrap();

    let mut seen = 0;
    let moved = store
        .move_blobs(Placement::ObjectStorage, |_| seen += 1)
        .await
        .unwrap();
    assert_eq!((moved.blobs, moved.skipped, seen), (3, 0, 3));
    assert_eq!(
        moved.bytes,
        contents.iter().map(|c| c.len() as i64).sum::<i64>()
    );
    assert_eq!(count("SELECT COUNT(*) FROM cr_blob_data").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM cr_blob_moves").await, 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM cr_blobs WHERE in_objects = 0").await,
        0
    );
    assert_eq!(s3.keys("m/blobs/").await.len(), 3);
    for data in &contents {
        assert_eq!(&read(&store, "crpone", &sha256_digest(data)).await, data);
    }
    // Again: nothing to move.
    let again = store
        .move_blobs(Placement::ObjectStorage, |_| {})
        .await
        .unwrap();
    assert_eq!(again.blobs, 0);

    // Back into the database.
    let back = store.move_blobs(Placement::Database, |_| {}).await.unwrap();
    assert_eq!((back.blobs, back.skipped), (3, 0));
    assert_eq!(
        count("SELECT COUNT(*) FROM cr_blobs WHERE in_objects = 1").await,
        0
    );
    assert_eq!(s3.keys("m/blobs/").await, Vec::<String>::new());
    for data in &contents {
        assert_eq!(&read(&before, "crpone", &sha256_digest(data)).await, data);
    }

    // Content that is not its digest's (damaged in the database) is not moved.
    db.execute(
        &yc_sql::query(
            "UPDATE cr_blob_data SET data = $1 WHERE seq = 0 AND storage = \
         (SELECT storage FROM cr_blobs WHERE size = 10)",
        )
        .bind(b"damaged!!!".to_vec()),
    )
    .await
    .unwrap();
    let refused = store
        .move_blobs(Placement::ObjectStorage, |_| {})
        .await
        .expect_err("a damaged blob");
    assert!(
        matches!(refused, BlobError::DigestMismatch { .. }),
        "{refused}"
    );
    assert_eq!(count("SELECT COUNT(*) FROM cr_blob_moves").await, 0);
    assert_eq!(s3.incomplete_uploads().await, Vec::<String>::new());
    assert_eq!(
        count("SELECT COUNT(*) FROM cr_blobs WHERE size = 10 AND in_objects = 0").await,
        1
    );
}

/// Any way of cutting a blob into requests and each request into chunks gives the object of
/// exactly its bytes: parts, tails kept between requests and the last part line up whatever
/// the cuts (a part boundary inside a chunk, a request ending exactly on one, requests of a
/// byte), and ranges read back right.
#[test]
fn fuzz_any_cutting_of_an_upload_into_object_storage_stores_its_bytes() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(s3) = runtime.block_on(TestS3::start(
        "fuzz_any_cutting_of_an_upload_into_object_storage_stores_its_bytes",
    )) else {
        return;
    };
    let store = runtime
        .block_on(async { in_objects(SqlBlobStore::in_memory().await.unwrap(), &s3, "f").await });
    // A few cases, whatever PROPTEST_CASES says (the runner is made here, not by the macro,
    // which would take the variable's count): each uploads 10 MiB through the S3 server.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 6,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let size = 2 * MIN_PART_SIZE + 1000;
    let strategy = (
        proptest::collection::vec(0..=size, 0..4),
        1usize..3 * 1024 * 1024,
        any::<u8>(),
        (0..size, 1..size),
    );
    runner
        .run(&strategy, |(mut cuts, chunk, seed, (start, length))| {
            let data: Vec<u8> = content(size).iter().map(|b| b ^ seed).collect();
            cuts.extend([0, size]);
            cuts.sort_unstable();
            cuts.dedup();
            runtime.block_on(async {
                use futures_util::TryStreamExt as _;
                let upload = store.start("crpone").await.unwrap();
                for window in cuts.windows(2) {
                    let part = &data[window[0]..window[1]];
                    let pieces: Vec<&[u8]> = part.chunks(chunk).collect();
                    store
                        .append(
                            &upload.id,
                            Some(window[0] as i64),
                            Some(part.len() as i64),
                            body(&pieces),
                        )
                        .await
                        .unwrap();
                }
                let blob = store
                    .finish(&upload.id, &sha256_digest(&data))
                    .await
                    .unwrap();
                assert!(blob.in_object_storage());
                let length = length.min(size - start) as i64;
                let range: Vec<Bytes> = store
                    .read_range(&blob, start as i64, length)
                    .await
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap();
                assert!(range.concat() == data[start..start + length as usize]);
            });
            Ok(())
        })
        .unwrap();
    assert_eq!(
        runtime.block_on(s3.incomplete_uploads()),
        Vec::<String>::new()
    );
}
