//! What every OperationStore must do, checked against each implementation: the in-memory
//! store and the SQLite store.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use yc_operations::{
    Created, Finished, MemoryOperationStore, NewOperation, OperationCursor, OperationStore,
    SqlOperationStore,
};
use yc_proto_types::google::protobuf::{Any, Empty, Timestamp};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::compute::v1::CreateImageMetadata;
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

fn new(id: &str, resource: &str, created: i64, key: Option<&str>, owner: &str) -> NewOperation {
    NewOperation {
        operation: Operation {
            id: id.into(),
            description: "Create image".into(),
            created_at: Some(at(created)),
            created_by: "ajeuser".into(),
            modified_at: Some(at(created)),
            ..Default::default()
        },
        method: "m".into(),
        resource_id: resource.into(),
        request: id.as_bytes().to_vec(),
        idempotency_key: key.map(str::to_owned),
        owner: owner.into(),
    }
}

async fn contract(store: Arc<dyn OperationStore>) {
    // Create, and the idempotency slot.
    assert!(matches!(
        store.create(new("op1", "r", 10, Some("k"), "run1")).await,
        Ok(Created::New(_))
    ));
    match store.create(new("op2", "r", 11, Some("k"), "run1")).await {
        Ok(Created::Existing(record)) => {
            assert_eq!(record.operation.id, "op1");
            assert_eq!(record.request, b"op1");
        }
        other => panic!("expected the first operation, got {other:?}"),
    }
    assert_eq!(
        store.get("op2").await.ok().flatten(),
        None,
        "nothing stored for the repeat"
    );
    let found = store
        .find_by_idempotency_key("ajeuser", "m", "k")
        .await
        .ok()
        .flatten();
    assert_eq!(found.map(|r| r.operation.id).as_deref(), Some("op1"));
    assert_eq!(
        store
            .find_by_idempotency_key("other", "m", "k")
            .await
            .ok()
            .flatten(),
        None
    );

    // Metadata, then a first finish that wins.
    let metadata = Any::from_msg(&CreateImageMetadata {
        image_id: "fd8".into(),
    });
    let updated = store
        .update_metadata("op1", metadata.clone(), at(12))
        .await
        .unwrap();
    assert_eq!(
        (updated.metadata.as_ref(), updated.modified_at),
        (Some(&metadata), Some(at(12)))
    );
    let response = operation::Result::Response(Any::from_msg(&Empty {}));
    let first = store.finish("op1", response.clone(), at(13)).await.unwrap();
    assert!(matches!(&first, Finished::Now(op) if op.done && op.result == Some(response.clone())));
    let error = operation::Result::Error(Status::new(tonic::Code::Cancelled, "late"));
    let second = store.finish("op1", error, at(14)).await.unwrap();
    assert!(matches!(&second, Finished::Before(op) if op.result == Some(response.clone())));
    let after_done = store
        .update_metadata("op1", Any::from_msg(&Empty {}), at(15))
        .await
        .unwrap();
    assert_eq!(
        after_done.metadata,
        Some(metadata),
        "a done operation keeps its metadata"
    );
    assert!(matches!(
        store.finish("nope", response, at(1)).await,
        Err(yc_operations::StoreError::NotFound(_))
    ));

    // A resource's operations, newest first, by keyset.
    for (id, created) in [("a", 1), ("b", 3), ("c", 2), ("d", 3)] {
        assert!(
            store
                .create(new(id, "res", created, None, "run1"))
                .await
                .is_ok()
        );
    }
    let page = store
        .list_by_resource("res", 2, None)
        .await
        .unwrap_or_default();
    assert_eq!(
        page.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["d", "b"]
    );
    let cursor = OperationCursor::after(&page[1]);
    let rest = store
        .list_by_resource("res", 10, Some(&cursor))
        .await
        .unwrap_or_default();
    assert_eq!(
        rest.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["c", "a"]
    );

    // Leases: a live owner's operations stay with it; others are claimed, once.
    let later = Timestamp::from(SystemTime::now() + Duration::from_secs(60));
    store.heartbeat("run1", later).await.unwrap();
    assert!(
        store
            .create(new("orphan", "x", 5, None, "dead"))
            .await
            .is_ok()
    );
    let now = Timestamp::now();
    let claimed = store.claim_abandoned("run2", now).await.unwrap_or_default();
    assert_eq!(
        claimed
            .iter()
            .map(|r| r.operation.id.as_str())
            .collect::<Vec<_>>(),
        ["orphan"]
    );
    assert_eq!(claimed[0].owner, "run2");
    let mine = store.claim_abandoned("run2", now).await.unwrap_or_default();
    assert_eq!(mine.len(), 1, "what a runner holds comes back to it");
    let taken = store.claim_abandoned("run3", now).await.unwrap_or_default();
    assert!(
        taken.iter().any(|r| r.operation.id == "orphan"),
        "run2 holds no lease, so its work is abandoned"
    );
    store.release("run1").await.unwrap();
    let freed = store.claim_abandoned("run3", now).await.unwrap_or_default();
    assert!(
        freed.iter().any(|r| r.operation.id == "a"),
        "released operations are abandoned"
    );
    let unfinished = store.unfinished().await.unwrap_or_default();
    assert_eq!(unfinished.len(), 5);

    // Page token keys: one made at first, kept until it is due, then a second beside it;
    // keys past their lifetime go, but never the newest.
    let day = 24 * 3600;
    let start = at(1_800_000_000);
    let first = store.token_keys(start).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].secret.len(), 32);
    assert_eq!(
        store.token_keys(at(1_800_000_000 + day)).await.ok(),
        Some(first.clone())
    );
    let rotated = store.token_keys(at(1_800_000_000 + 8 * day)).await.unwrap();
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[0], first[0]);
    assert!(rotated[1].id > first[0].id && rotated[1].secret != first[0].secret);
    let much_later = store
        .token_keys(at(1_800_000_000 + 40 * day))
        .await
        .unwrap();
    // Both past their lifetime, and a new key made: it alone is left.
    assert_eq!(much_later.len(), 1, "{much_later:?}");
    assert!(much_later[0].id > rotated[1].id);
    // Never none: the newest stays however old.
    let kept = store
        .token_keys(at(1_800_000_000 + 41 * day))
        .await
        .unwrap();
    assert_eq!(kept, much_later);
}

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract(Arc::new(MemoryOperationStore::new())).await;
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_contract() {
    let store = SqlOperationStore::in_memory().await.unwrap();
    contract(Arc::new(store)).await;
}

#[tokio::test]
async fn the_postgres_store_keeps_the_contract() {
    let Some(pg) = yc_sql::TestPostgres::fresh().await else {
        return;
    };
    let store = yc_operations::SqlOperationStore::open(pg.pool.clone())
        .await
        .unwrap();
    contract(Arc::new(store)).await;
    pg.drop_schema().await;
}

/// Two replicas on one database: an idempotency key taken through one is seen by the other,
/// and an operation finishes once whichever replica finishes it.
#[tokio::test]
async fn two_postgres_replicas_share_keys_and_finish_once() {
    let Some(pg) = yc_sql::TestPostgres::fresh().await else {
        return;
    };
    let one = yc_operations::SqlOperationStore::open(pg.pool.clone())
        .await
        .unwrap();
    let two = yc_operations::SqlOperationStore::open(pg.pool.clone())
        .await
        .unwrap();
    assert!(matches!(
        one.create(new("shared", "r", 1, Some("key"), "runone"))
            .await,
        Ok(Created::New(_))
    ));
    match two
        .create(new("other", "r", 2, Some("key"), "runtwo"))
        .await
    {
        Ok(Created::Existing(record)) => assert_eq!(record.operation.id, "shared"),
        other => panic!("the second replica did not see the key: {other:?}"),
    }
    let response = operation::Result::Response(Any::from_msg(&Empty {}));
    let error = operation::Result::Error(Status::new(tonic::Code::Cancelled, "cancelled"));
    let (a, b) = tokio::join!(
        one.finish("shared", response, at(5)),
        two.finish("shared", error, at(5))
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    let now_count = outcomes
        .iter()
        .filter(|f| matches!(f, Finished::Now(_)))
        .count();
    assert_eq!(now_count, 1, "exactly one finish wins: {outcomes:?}");
    let stored = one.get("shared").await.ok().flatten();
    let winner = outcomes.into_iter().find_map(|f| match f {
        Finished::Now(op) => Some(op),
        Finished::Before(_) => None,
    });
    assert_eq!(stored, winner);

    // Replicas asking for the page token keys at once agree on one.
    let now = Timestamp::now();
    let (a, b) = tokio::join!(one.token_keys(now), two.token_keys(now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len(), 1);
    assert_eq!(a, b);
    pg.drop_schema().await;
}

/// Keys from the store: replicas reading the same keys accept each other's tokens; after a
/// rotation, tokens signed with the old key still continue, and the new key signs only once it
/// is old enough for every replica to have read it.
#[tokio::test]
async fn page_token_keys_are_shared_and_rotate_without_breaking_tokens() {
    use yc_api_runtime::list::{QueryKey, TokenKey, TokenKeys};
    let store = yc_operations::SqlOperationStore::in_memory().await.unwrap();
    let now = yc_proto_types::google::protobuf::Timestamp::now();
    let stored = store.token_keys(now).await.unwrap();
    assert_eq!(stored.len(), 1);
    // Asked again, the same key.
    assert_eq!(store.token_keys(now).await.unwrap(), stored);
    let nanos = yc_api_runtime::list::sql::nanos(now);
    let (one, two) = (TokenKeys::ephemeral(), TokenKeys::ephemeral());
    one.set(stored.clone(), nanos);
    two.set(stored.clone(), nanos);
    let parts = ["b1gfolder", "", "name"];
    let token = QueryKey::new(&one, "list", &parts).token("fd8lastofthepage0000");
    assert!(
        QueryKey::new(&two, "list", &parts)
            .resume_after(&token)
            .is_ok()
    );

    // A newer key, just made: the old one still signs; both check.
    let newer = TokenKey::generate(stored[0].id + 1, nanos);
    let both = vec![stored[0].clone(), newer.clone()];
    two.set(both.clone(), nanos + 1);
    let from_two = QueryKey::new(&two, "list", &parts).token("fd8lastofthepage0000");
    assert_eq!(from_two, token);
    // Once the new key is old enough, it signs; tokens of the old one still continue.
    let later = nanos + 3600 * 1_000_000_000;
    two.set(both, later);
    let rotated = QueryKey::new(&two, "list", &parts).token("fd8lastofthepage0000");
    assert_ne!(rotated, token);
    let query = QueryKey::new(&two, "list", &parts);
    assert!(query.resume_after(&rotated).is_ok());
    assert!(query.resume_after(&token).is_ok());
}
