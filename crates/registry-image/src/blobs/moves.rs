//! Moving stored blobs between the database and object storage: `yc-images registry
//! move-blobs`, for a registry that outgrew its database (or back).
//!
//! Each blob is copied under a new storage id, the copy's digest checked by reading it back,
//! and then the blob switches to the copy in one transaction with its row locked (the old
//! content is dropped in that transaction, or for an object, put in the trash). A move that
//! stops (a killed process) leaves the blobs it did not switch where they were, and its copy
//! in progress listed in `cr_blob_moves`, which the next move removes first: running it again
//! continues where it stopped. Pulls and pushes go on meanwhile; garbage collection removing a
//! blob during its move drops the copy.

use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};
use yc_sql::query;

use super::{
    BLOB_COLUMNS, BlobError, BlobInfo, PIECE, PIECES_PER_COMMIT, SqlBlobStore, blob_info,
    fill_pieces, insert_pieces, put_in_trash,
};

/// Where blob content is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Rows of the database (the default).
    Database,
    /// Objects in object storage.
    ObjectStorage,
}

/// What [`SqlBlobStore::move_blobs`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// Blobs now where they were moved to.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: i64,
    /// Blobs removed (garbage collection) or moved by another while they were copied.
    pub skipped: u64,
}

/// Blobs read per batch while moving.
const BATCH: i64 = 100;

impl SqlBlobStore {
    /// Moves every blob not kept at `to` there (see the module docs), calling `progress`
    /// after each. Needs the object storage either way.
    pub async fn move_blobs(
        &self,
        to: Placement,
        mut progress: impl FnMut(&BlobInfo),
    ) -> Result<Moved, BlobError> {
        self.objects_for("moving blobs needs object storage: the content")?;
        self.clean_moves().await?;
        let from = i64::from(to == Placement::Database);
        let mut moved = Moved::default();
        let mut after = String::new();
        loop {
            let rows = self
                .db
                .fetch_all(
                    &query(format!(
                        "SELECT {BLOB_COLUMNS}, digest FROM cr_blobs \
                         WHERE in_objects = $1 AND digest > $2 ORDER BY digest LIMIT $3"
                    ))
                    .bind(from)
                    .bind(&after)
                    .bind(BATCH),
                )
                .await?;
            if rows.is_empty() {
                return Ok(moved);
            }
            for row in rows {
                let digest: String = row.get(4)?;
                let blob = blob_info(&digest, &row)?;
                let switched = match to {
                    Placement::ObjectStorage => self.copy_to_objects(&blob).await?,
                    Placement::Database => self.copy_to_database(&blob).await?,
                };
                if switched {
                    moved.blobs += 1;
                    moved.bytes += blob.size;
                } else {
                    moved.skipped += 1;
                }
                progress(&blob);
                after = digest;
            }
        }
    }

    /// Removes the copies a stopped move left.
    async fn clean_moves(&self) -> Result<(), BlobError> {
        let rows = self
            .db
            .fetch_all(&query("SELECT storage FROM cr_blob_moves"))
            .await?;
        for row in rows {
            let storage: String = row.get(0)?;
            self.drop_copy(&storage).await?;
        }
        self.try_empty_trash().await;
        Ok(())
    }

    /// Ends the move of the copy `storage` without switching to it: its rows go, and its
    /// object (or multipart upload) into the trash.
    async fn drop_copy(&self, storage: &str) -> Result<(), BlobError> {
        let mut tx = self.db.begin().await?;
        let multipart: Option<Option<String>> = tx
            .fetch_scalar(
                &query(format!(
                    "SELECT multipart FROM cr_blob_moves WHERE storage = $1{}",
                    tx.dialect().for_update()
                ))
                .bind(storage),
            )
            .await?;
        if let Some(multipart) = multipart {
            tx.execute(&query("DELETE FROM cr_blob_moves WHERE storage = $1").bind(storage))
                .await?;
            tx.execute(&query("DELETE FROM cr_blob_data WHERE storage = $1").bind(storage))
                .await?;
            put_in_trash(&mut tx, storage, multipart).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Switches `blob` to the copy `storage` (whose own content is `pieces` rows, or an
    /// object), if the blob is still as it was read and the copy still listed; returns whether
    /// it did. The old content is dropped; a copy not switched to is.
    async fn switch(&self, blob: &BlobInfo, storage: &str, pieces: i64) -> Result<bool, BlobError> {
        let to_objects = !blob.in_objects;
        let mut tx = self.db.begin().await?;
        let listed = tx
            .execute(&query("DELETE FROM cr_blob_moves WHERE storage = $1").bind(storage))
            .await?;
        if listed == 0 {
            tx.rollback().await?;
            return Err(BlobError::Unavailable(format!(
                "the copy of {} was removed by another move; run the move again",
                blob.digest
            )));
        }
        let now = tx
            .fetch_optional(
                &query(format!(
                    "SELECT {BLOB_COLUMNS} FROM cr_blobs WHERE digest = $1{}",
                    tx.dialect().for_update()
                ))
                .bind(&blob.digest),
            )
            .await?
            .map(|row| blob_info(&blob.digest, &row))
            .transpose()?;
        let unchanged = now.as_ref() == Some(blob);
        if unchanged {
            tx.execute(
                &query(
                    "UPDATE cr_blobs SET storage = $1, pieces = $2, in_objects = $3 \
                     WHERE digest = $4",
                )
                .bind(storage)
                .bind(pieces)
                .bind(i64::from(to_objects))
                .bind(&blob.digest),
            )
            .await?;
            if to_objects {
                tx.execute(
                    &query("DELETE FROM cr_blob_data WHERE storage = $1").bind(&blob.storage),
                )
                .await?;
            } else {
                put_in_trash(&mut tx, &blob.storage, None).await?;
            }
        } else if to_objects {
            put_in_trash(&mut tx, storage, None).await?;
        } else {
            tx.execute(&query("DELETE FROM cr_blob_data WHERE storage = $1").bind(storage))
                .await?;
        }
        tx.commit().await?;
        self.try_empty_trash().await;
        Ok(unchanged)
    }

    /// Reads `copy` back whole: its content must be its digest's.
    async fn check_content(&self, copy: &BlobInfo) -> Result<(), BlobError> {
        let mut hasher = Sha256::new();
        let mut content = self.read(copy);
        while let Some(piece) = content.next().await {
            hasher.update(piece?);
        }
        check(copy, hasher)
    }

    /// Copies a blob kept in the database into a new object, part by part, and switches to it.
    async fn copy_to_objects(&self, blob: &BlobInfo) -> Result<bool, BlobError> {
        let objects = self.objects_for("moving blobs")?.clone();
        let storage = yc_api_runtime::ids::new_id("blb");
        let multipart = objects.create(&storage).await?;
        self.db
            .execute(
                &query(
                    "INSERT INTO cr_blob_moves (storage, multipart, in_objects) VALUES ($1, $2, 1)",
                )
                .bind(&storage)
                .bind(&multipart),
            )
            .await?;
        let copied = async {
            let mut hasher = Sha256::new();
            let mut etags = Vec::new();
            let mut part: Vec<Bytes> = Vec::new();
            let mut filled = 0;
            let mut content = self.read(blob);
            loop {
                let piece = content.next().await.transpose()?;
                let end = piece.is_none();
                if let Some(piece) = piece {
                    hasher.update(&piece);
                    filled += piece.len();
                    part.push(piece);
                }
                if (filled >= objects.part_size() || end) && filled > 0 {
                    let number = etags.len() as i64 + 1;
                    etags.push(
                        objects
                            .put_part(&storage, &multipart, number, std::mem::take(&mut part))
                            .await?,
                    );
                    filled = 0;
                }
                if end {
                    break;
                }
            }
            check(blob, hasher)?;
            if etags.is_empty() {
                objects.put(&storage, Bytes::new()).await?;
                objects.abort(&storage, &multipart).await?;
            } else {
                objects.complete(&storage, &multipart, etags).await?;
            }
            // Read back: the object is the blob.
            let copy = BlobInfo {
                storage: storage.clone(),
                pieces: 0,
                in_objects: true,
                ..blob.clone()
            };
            self.check_content(&copy).await
        }
        .await;
        if let Err(e) = copied {
            self.drop_copy(&storage).await?;
            self.try_empty_trash().await;
            return Err(e);
        }
        self.switch(blob, &storage, 0).await
    }

    /// Copies a blob kept in object storage into new rows, and switches to them.
    async fn copy_to_database(&self, blob: &BlobInfo) -> Result<bool, BlobError> {
        let storage = yc_api_runtime::ids::new_id("blb");
        self.db
            .execute(
                &query("INSERT INTO cr_blob_moves (storage, in_objects) VALUES ($1, 0)")
                    .bind(&storage),
            )
            .await?;
        let copied = async {
            let mut hasher = Sha256::new();
            let mut seq = 0i64;
            let mut buffer: Vec<u8> = Vec::with_capacity(PIECE);
            let mut batch: Vec<Vec<u8>> = Vec::new();
            let mut content = self.read(blob);
            loop {
                let chunk = content.next().await.transpose()?;
                let end = chunk.is_none();
                if let Some(chunk) = chunk {
                    hasher.update(&chunk);
                    fill_pieces(&mut buffer, &chunk, &mut batch);
                } else if !buffer.is_empty() {
                    batch.push(std::mem::take(&mut buffer));
                }
                if batch.len() >= PIECES_PER_COMMIT || (end && !batch.is_empty()) {
                    let mut tx = self.db.begin().await?;
                    seq = insert_pieces(&mut tx, &storage, seq, std::mem::take(&mut batch)).await?;
                    tx.commit().await?;
                }
                if end {
                    break;
                }
            }
            check(blob, hasher)?;
            let copy = BlobInfo {
                storage: storage.clone(),
                pieces: seq,
                in_objects: false,
                ..blob.clone()
            };
            self.check_content(&copy).await?;
            Ok(seq)
        }
        .await;
        match copied {
            Ok(pieces) => self.switch(blob, &storage, pieces).await,
            Err(e) => {
                self.drop_copy(&storage).await?;
                Err(e)
            }
        }
    }
}

/// Whether the bytes hashed are the blob's.
fn check(blob: &BlobInfo, hasher: Sha256) -> Result<(), BlobError> {
    let actual = crate::oci::digest_of(hasher);
    if actual == blob.digest {
        Ok(())
    } else {
        Err(BlobError::DigestMismatch {
            expected: blob.digest.clone(),
            actual,
        })
    }
}
