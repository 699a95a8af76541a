//! The SQL Compute image store on both databases it runs on, SQLite and PostgreSQL, against
//! one oracle: every List shape, paged three at a time, returns exactly the folder's images
//! that pass the filter in the order asked (text by code point, the id breaking ties); names
//! are unique in a folder, also between two replicas inserting at once; GetLatestByFamily
//! picks the newest READY image; concurrent changes of one image through `modify` and of its access bindings, also
//! from two replicas, all apply. The PostgreSQL plans are index scans.

use yc_api_runtime::bindings;
use yc_api_runtime::list::{FilterExpr, FilterOp, FilterSpec, OrderItem};
use yc_compute_image::SqlComputeImageStore;
use yc_compute_image::store::{
    BindingsChanged, ComputeImageStore, ComputeQuery, ComputeStoreError, Modified,
};
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::access::{AccessBindingAction, AccessBindingDelta};
use yc_proto_types::yandex::cloud::compute::v1::{Image, image};
use yc_sql::TestPostgres;

const SPEC: FilterSpec<'static> = FilterSpec {
    fields: &["name", "family", "status", "id"],
    max_value_length: 256,
};

fn image(n: usize, folder: &str, name: &str, family: &str, status: image::Status) -> Image {
    Image {
        id: format!("fd8{n:017}"),
        folder_id: folder.into(),
        name: name.into(),
        family: family.into(),
        status: status as i32,
        // Pairs of images share a creation time, so that the id must break ties.
        created_at: Some(Timestamp {
            seconds: 1_700_000_000 + i64::try_from(n / 2).unwrap_or_default(),
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Images of two folders, with names and families that sort differently by code point than
/// by a language's collation, some without a name.
fn images() -> Vec<Image> {
    let names = ["a-b", "ab", "a1", "b", "", "zz", "a-c", "", "m"];
    let families = ["deb", "deb-11", "debian", ""];
    let statuses = [
        image::Status::Ready,
        image::Status::Creating,
        image::Status::Ready,
        image::Status::Error,
    ];
    (0..18)
        .map(|n| {
            let folder = if n % 3 == 2 { "b1gother" } else { "b1gfolder" };
            let name = match names[n % names.len()] {
                "" => String::new(),
                name => format!("{name}-{n}"),
            };
            image(
                n,
                folder,
                &name,
                families[n % families.len()],
                statuses[n % statuses.len()],
            )
        })
        .collect()
}

fn status_name(image: &Image) -> String {
    image::Status::try_from(image.status)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_default()
}

fn field(image: &Image, name: &str) -> String {
    match name {
        "name" => image.name.clone(),
        "family" => image.family.clone(),
        "status" => status_name(image),
        "id" => image.id.clone(),
        _ => String::new(),
    }
}

fn oracle(all: &[Image], query: &ComputeQuery) -> Vec<String> {
    let mut images: Vec<&Image> = all
        .iter()
        .filter(|i| i.folder_id == query.folder_id)
        .filter(|i| {
            query.filter.conditions.iter().all(|c| {
                let hit = c.values.contains(&field(i, &c.field));
                matches!(c.op, FilterOp::Eq | FilterOp::In) == hit
            })
        })
        .collect();
    let item = &query.order[0];
    images.sort_by(|a, b| {
        let o = if item.field == "created_at" {
            a.created_at
                .map(|t| t.seconds)
                .cmp(&b.created_at.map(|t| t.seconds))
        } else {
            field(a, &item.field).cmp(&field(b, &item.field))
        }
        .then_with(|| a.id.cmp(&b.id));
        if item.descending { o.reverse() } else { o }
    });
    images.iter().map(|i| i.id.clone()).collect()
}

/// A page of the store's List in both forms, checked to be the bytes encoding the typed
/// response gives (protobuf, and pbjson's JSON), and decoded.
async fn list_images(store: &SqlComputeImageStore, query: &ComputeQuery) -> Vec<Image> {
    use prost::Message as _;
    use yc_api_runtime::list::PageRows;
    use yc_proto_types::encoded::Form;
    use yc_proto_types::yandex::cloud::compute::v1::ListImagesResponse;
    let mut pages = Vec::new();
    for form in [Form::Protobuf, Form::Json] {
        let mut rows = PageRows::new::<ListImagesResponse>(form, query.limit).unwrap();
        store.list(query, &mut rows).await.unwrap();
        pages.push(rows.into_bytes());
    }
    let typed = ListImagesResponse::decode(pages[0].as_slice()).unwrap();
    assert_eq!(pages[0], typed.encode_to_vec());
    assert_eq!(
        String::from_utf8_lossy(&pages[1]),
        serde_json::to_string(&typed).unwrap()
    );
    typed.images
}

/// The store's Get, its stored forms checked to be the typed image's encodings (protobuf,
/// and pbjson's JSON).
async fn get(store: &SqlComputeImageStore, id: &str) -> Result<Option<Image>, ComputeStoreError> {
    use prost::Message as _;
    use yc_proto_types::encoded::Form;
    Ok(store.get(id).await?.map(|stored| {
        let image = stored.message().clone();
        assert_eq!(stored.bytes(Form::Protobuf), image.encode_to_vec());
        assert_eq!(
            String::from_utf8_lossy(stored.bytes(Form::Json)),
            serde_json::to_string(&image).unwrap()
        );
        image
    }))
}

async fn paged(store: &SqlComputeImageStore, query: &ComputeQuery) -> Vec<String> {
    let mut ids = Vec::new();
    let mut query = query.clone();
    loop {
        let page = list_images(store, &query).await;
        ids.extend(page.iter().map(|i| i.id.clone()));
        match page.last() {
            Some(last) if page.len() == query.limit => query.after = Some(last.id.clone()),
            _ => return ids,
        }
    }
}

async fn behaves_like_the_oracle(store: &SqlComputeImageStore) {
    let all = images();
    for image in &all {
        store.insert(image).await.unwrap();
    }
    // Names are unique in a folder; another folder, or no name, is free.
    let mut taken = image(90, "b1gfolder", &all[0].name, "", image::Status::Ready);
    assert_eq!(
        store.insert(&taken).await,
        Err(ComputeStoreError::NameTaken(all[0].name.clone()))
    );
    taken.folder_id = "b1gthird".into();
    assert_eq!(store.insert(&taken).await, Ok(()));
    let taken_name = all[0].name.clone();
    assert_eq!(
        store
            .modify(&all[1].id, &|i| {
                i.name = taken_name.clone();
                Ok(())
            })
            .await,
        Err(ComputeStoreError::NameTaken(all[0].name.clone()))
    );
    assert_eq!(get(store, &all[1].id).await, Ok(Some(all[1].clone())));

    let filters = [
        "",
        r#"family = "deb""#,
        r#"status IN ("READY", "ERROR")"#,
        r#"name != "ab-1" AND family != "deb-11""#,
        r#"family NOT IN ("deb", "")"#,
        &format!(r#"id = "{}""#, all[3].id),
    ];
    let mut checked = 0;
    for folder in ["b1gfolder", "b1gother"] {
        for filter in filters {
            for field in ["id", "name", "family", "status", "created_at"] {
                for descending in [false, true] {
                    let query = ComputeQuery {
                        folder_id: folder.into(),
                        filter: FilterExpr::parse(filter, SPEC)
                            .unwrap_or_else(|e| panic!("{}", e.message)),
                        order: vec![OrderItem {
                            field: field.into(),
                            descending,
                        }],
                        after: None,
                        limit: 3,
                    };
                    assert_eq!(
                        paged(store, &query).await,
                        oracle(&all, &query),
                        "{query:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 6 * 5 * 2);

    // The newest READY image of the family; of two created at once, the greater id.
    let latest = store.latest_by_family("b1gfolder", "deb").await.unwrap();
    let expected = all
        .iter()
        .filter(|i| {
            i.folder_id == "b1gfolder"
                && i.family == "deb"
                && i.status == image::Status::Ready as i32
        })
        .max_by_key(|i| (i.created_at.map(|t| t.seconds), i.id.clone()));
    assert_eq!(latest.as_ref(), expected);
    assert!(expected.is_some());
    let latest = expected.map(|i| i.id.clone()).unwrap_or_default();
    assert_eq!(store.delete(&latest, Timestamp::now()).await, Ok(true));
    assert_eq!(store.delete(&latest, Timestamp::now()).await, Ok(false));
    let next = store.latest_by_family("b1gfolder", "deb").await.unwrap();
    assert!(next.is_some_and(|i| i.id != latest));
}

#[tokio::test]
async fn sqlite_behaves_like_the_oracle() {
    let store = SqlComputeImageStore::in_memory().await.unwrap();
    behaves_like_the_oracle(&store).await;
}

#[tokio::test]
async fn postgres_behaves_like_the_oracle() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let store = SqlComputeImageStore::open(pg.pool.clone()).await.unwrap();
    behaves_like_the_oracle(&store).await;
    pg.drop_schema().await;
}

/// Images stored before the store kept each image's JSON (a database from an older version,
/// its rows upgraded with an empty `json`) list alike: their JSON is written from the body;
/// an image changed since has its JSON stored again; a body changed by an older server
/// sharing the database (which writes no JSON) clears the JSON the row had.
async fn rows_without_json_list_alike(db: yc_sql::Db) {
    let store = SqlComputeImageStore::open(db.clone()).await.unwrap();
    let all = images();
    for image in &all {
        store.insert(image).await.unwrap();
    }
    db.execute(&yc_sql::query("UPDATE ci_images SET json = NULL"))
        .await
        .unwrap();
    let first = &all[0];
    store
        .modify(&first.id, &|image: &mut Image| {
            image.description = "changed \"since\"".into();
            Ok(())
        })
        .await
        .unwrap();
    let missing: Option<i64> = db
        .fetch_scalar(&yc_sql::query(
            "SELECT COUNT(*) FROM ci_images WHERE json IS NULL",
        ))
        .await
        .unwrap();
    assert_eq!(missing, Some(i64::try_from(all.len()).unwrap() - 1));
    let query = ComputeQuery {
        folder_id: first.folder_id.clone(),
        filter: FilterExpr::default(),
        order: vec![],
        after: None,
        limit: 100,
    };
    // Both forms checked against the typed encodings, in Get and in List.
    assert_eq!(get(&store, &all[1].id).await, Ok(Some(all[1].clone())));
    // A body changed by a server that knows no JSON (an older version sharing the database
    // during an upgrade): the stale JSON is cleared with it, never served.
    let mut older = all[1..]
        .iter()
        .find(|i| i.folder_id == first.folder_id)
        .unwrap()
        .clone();
    older.description = "written by an older server".into();
    // Stored again by this version first (its JSON written), then changed by the older one.
    store
        .modify(&older.id, &|_: &mut Image| Ok(()))
        .await
        .unwrap();
    db.execute(
        &yc_sql::query("UPDATE ci_images SET body = $1 WHERE id = $2")
            .bind(prost::Message::encode_to_vec(&older))
            .bind(older.id.clone()),
    )
    .await
    .unwrap();
    let stale: Option<i64> = db
        .fetch_scalar(
            &yc_sql::query("SELECT COUNT(*) FROM ci_images WHERE id = $1 AND json IS NULL")
                .bind(older.id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        stale,
        Some(1),
        "the older server's change left JSON that is not its body's"
    );
    assert_eq!(get(&store, &older.id).await, Ok(Some(older.clone())));
    let listed = list_images(&store, &query).await;
    assert!(listed.len() > 1);
    assert!(
        listed
            .iter()
            .any(|i| i.id == first.id && i.description == "changed \"since\"")
    );
    assert!(listed.contains(&older));
}

#[tokio::test]
async fn sqlite_rows_without_json_list_alike() {
    rows_without_json_list_alike(yc_sql::Db::sqlite_memory().await.unwrap()).await;
}

#[tokio::test]
async fn postgres_rows_without_json_list_alike() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    rows_without_json_list_alike(pg.pool.clone().into()).await;
    pg.drop_schema().await;
}

/// Two replicas insert images of the same name into a folder at once: one of each pair wins.
#[tokio::test]
async fn postgres_replicas_inserting_one_name_at_once_store_it_once() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let one = SqlComputeImageStore::open(pg.pool.clone()).await.unwrap();
    let two = SqlComputeImageStore::open(pg.pool.clone()).await.unwrap();
    for n in 0..10 {
        let name = format!("image-{n}");
        let a = image(2 * n, "b1g", &name, "", image::Status::Ready);
        let b = image(2 * n + 1, "b1g", &name, "", image::Status::Ready);
        let (a, b) = tokio::join!(one.insert(&a), two.insert(&b));
        let outcomes = [a, b];
        assert_eq!(
            outcomes.iter().filter(|r| r.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes
                .iter()
                .any(|r| *r == Err(ComputeStoreError::NameTaken(name.clone())))
        );
    }
    pg.drop_schema().await;
}

/// Every List shape on PostgreSQL can be served by an index scan: with sequential scans and
/// sorts priced out, the plan reads `ci_images` by an index and sorts nothing.
#[tokio::test]
async fn every_postgres_list_shape_scans_an_index() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let store = SqlComputeImageStore::open(pg.pool.clone()).await.unwrap();
    let all = images();
    for image in &all {
        store.insert(image).await.unwrap();
    }
    let mut checked = 0;
    for filter in ["", r#"family = "deb""#, r#"status IN ("READY", "ERROR")"#] {
        for field in ["id", "name", "family", "status", "created_at"] {
            for descending in [false, true] {
                for after in [None, Some(all[4].id.clone())] {
                    let query = ComputeQuery {
                        folder_id: "b1gfolder".into(),
                        filter: FilterExpr::parse(filter, SPEC)
                            .unwrap_or_else(|e| panic!("{}", e.message)),
                        order: vec![OrderItem {
                            field: field.into(),
                            descending,
                        }],
                        after,
                        limit: 101,
                    };
                    let plan = store.query_plan(&query).await.unwrap().join("\n");
                    assert!(plan.contains("Index Scan"), "{query:?}:\n{plan}");
                    assert!(!plan.contains("Seq Scan"), "{query:?}:\n{plan}");
                    assert!(!plan.contains("Sort"), "{query:?}:\n{plan}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 5 * 2 * 2);
    let collations = pg.text_collations("ci_images").await;
    assert_eq!(collations.len(), 6, "{collations:?}");
    for (column, collation) in collations {
        assert_eq!(collation.as_deref(), Some("C"), "ci_images.{column}");
    }
    pg.drop_schema().await;
}

/// With the Get cache of the embedded store, Get sees every write at once: an update, a
/// failed rename, a delete.
#[tokio::test]
async fn the_get_cache_never_serves_an_older_image() {
    let store = SqlComputeImageStore::in_memory()
        .await
        .unwrap()
        .with_cache(2);
    behaves_like_the_oracle(&store).await;
    let mut one = image(100, "b1gcache", "one", "f", image::Status::Creating);
    let two = image(101, "b1gcache", "two", "f", image::Status::Ready);
    for image in [&one, &two] {
        store.insert(image).await.unwrap();
        assert_eq!(get(&store, &image.id).await, Ok(Some(image.clone())));
    }
    one.status = image::Status::Ready as i32;
    let ready = |i: &mut Image| {
        i.status = image::Status::Ready as i32;
        Ok(())
    };
    assert_eq!(
        store.modify(&one.id, &ready).await,
        Ok(Modified::Changed(Box::new(one.clone())))
    );
    assert_eq!(get(&store, &one.id).await, Ok(Some(one.clone())));
    let rename = |i: &mut Image| {
        i.name = "two".into();
        Ok(())
    };
    assert!(store.modify(&one.id, &rename).await.is_err());
    assert_eq!(get(&store, &one.id).await, Ok(Some(one.clone())));
    // A refused change stores nothing either.
    let refuse = |i: &mut Image| {
        i.description = "not stored".into();
        Err(Status::new(tonic::Code::FailedPrecondition, "no"))
    };
    assert!(matches!(
        store.modify(&one.id, &refuse).await,
        Ok(Modified::Refused(_))
    ));
    assert_eq!(get(&store, &one.id).await, Ok(Some(one.clone())));
    assert_eq!(store.delete(&one.id, Timestamp::now()).await, Ok(true));
    assert_eq!(get(&store, &one.id).await, Ok(None));
    assert_eq!(get(&store, &two.id).await, Ok(Some(two)));
}

/// Many writers change one image at once, each adding its own label to the image as it is:
/// every label is there at the end (a change applied to a copy read earlier would drop some).
async fn concurrent_changes_all_apply(stores: [SqlComputeImageStore; 2]) {
    let target = image(200, "b1grace", "raced", "f", image::Status::Ready);
    stores[0].insert(&target).await.unwrap();
    let mut writers = Vec::new();
    for n in 0..32 {
        let store = stores[n % 2].clone();
        let id = target.id.clone();
        writers.push(tokio::spawn(async move {
            let key = format!("w{n}");
            store
                .modify(&id, &|i| {
                    i.labels.insert(key.clone(), n.to_string());
                    Ok(())
                })
                .await
        }));
    }
    for writer in writers {
        let done = writer.await.unwrap();
        assert!(matches!(done, Ok(Modified::Changed(_))), "{done:?}");
    }
    let now = get(&stores[1], &target.id)
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(now.labels.len(), 32, "{:?}", now.labels);
    assert_eq!(
        stores[0].modify("fd8nosuchimage000000", &|_| Ok(())).await,
        Ok(Modified::Missing)
    );

    // The same for the image's access bindings: each writer adds one to the bindings as they
    // are, and every one is there at the end.
    let mut writers = Vec::new();
    for n in 0..32 {
        let store = stores[n % 2].clone();
        let id = target.id.clone();
        writers.push(tokio::spawn(async move {
            let delta = AccessBindingDelta {
                action: AccessBindingAction::Add as i32,
                access_binding: Some(bindings::binding(
                    "viewer",
                    "userAccount",
                    &format!("aje{n}"),
                )),
            };
            store
                .change_access_bindings(&id, &|held| {
                    bindings::update(held, std::slice::from_ref(&delta))
                })
                .await
        }));
    }
    for writer in writers {
        let done = writer.await.unwrap();
        assert!(
            matches!(&done, Ok(BindingsChanged::Changed(deltas)) if deltas.len() == 1),
            "{done:?}"
        );
    }
    let held = stores[0]
        .access_bindings(&target.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.len(), 32, "{held:?}");
    // A refused change stores nothing.
    let refused = stores[1]
        .change_access_bindings(&target.id, &|held| {
            held.clear();
            Err(Status::new(tonic::Code::FailedPrecondition, "no"))
        })
        .await
        .unwrap();
    assert!(
        matches!(refused, BindingsChanged::Refused(_)),
        "{refused:?}"
    );
    assert_eq!(
        stores[1]
            .access_bindings(&target.id)
            .await
            .unwrap()
            .map(|b| b.len()),
        Some(32)
    );
    // The bindings go with the image; none for an image that is not there.
    assert!(
        stores[0]
            .delete(&target.id, Timestamp::now())
            .await
            .unwrap()
    );
    assert_eq!(stores[1].access_bindings(&target.id).await.unwrap(), None);
    assert_eq!(
        stores[0]
            .change_access_bindings(&target.id, &|_| Ok(Vec::new()))
            .await
            .unwrap(),
        BindingsChanged::Missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_changes_all_apply() {
    let dir = tempfile::tempdir().unwrap();
    let db = yc_sql::Db::sqlite_file(&dir.path().join("images.db"), 4)
        .await
        .unwrap();
    let store = SqlComputeImageStore::open(db).await.unwrap();
    concurrent_changes_all_apply([store.clone(), store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_changing_one_image_at_once_lose_nothing() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    // Each on a pool of its own, as two servers are.
    let open = || async {
        let pool = pg.replica_pool().await;
        SqlComputeImageStore::open(pool).await.unwrap()
    };
    concurrent_changes_all_apply([open().await, open().await]).await;
    pg.drop_schema().await;
}
