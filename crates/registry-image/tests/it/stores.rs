//! The SQL image store on both databases it runs on, SQLite and PostgreSQL, against one
//! oracle: every List shape, paged three at a time, returns exactly the images of its scope
//! and filter in the order asked (text by code point, the id breaking ties); pushes move tags;
//! a page token that stops at a deleted image continues; and on PostgreSQL, two replicas
//! pushing the same manifest at once store one image. The PostgreSQL plans are index scans.

use yc_api_runtime::list::{FilterExpr, FilterSpec, OrderItem};
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::yandex::cloud::containerregistry::v1::{Blob, Image};
use yc_registry_image::SqlImageStore;
use yc_registry_image::store::{ImageQuery, ImageStore, PushImage, Registry, Scope};
use yc_sql::TestPostgres;

fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

fn push(repository: &str, n: usize, tag: Option<&str>) -> PushImage {
    let registry_id = repository.split('/').next().unwrap_or_default().to_owned();
    PushImage {
        registry_id,
        repository: repository.into(),
        digest: format!("sha256:{:064x}", n * 7919 % 1000),
        config: Blob::default(),
        layers: vec![],
        compressed_size: i64::try_from(n).unwrap_or_default(),
        tag: tag.map(str::to_owned),
        ..Default::default()
    }
}

/// Repositories whose names sort differently by code point than by a language's collation.
const REPOSITORIES: &[&str] = &[
    "crpone/a-b",
    "crpone/ab",
    "crpone/a.b",
    "crpone/a_b",
    "crpone/B",
    "crptwo/a-b",
    "crptwo/z",
    "crpthree/app",
];

async fn fill(store: &SqlImageStore) -> Vec<(Image, String, String)> {
    for (id, folder) in [
        ("crpone", "b1gfolder"),
        ("crptwo", "b1gfolder"),
        ("crpthree", "b1gother"),
    ] {
        store
            .ensure_registry(&Registry {
                id: id.into(),
                folder_id: folder.into(),
                name: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut n = 0;
    for (r, repository) in REPOSITORIES.iter().enumerate() {
        for i in 0..(2 + r % 3) {
            n += 1;
            // Some images share a creation time, so that the id must break ties.
            let seconds = i64::try_from(1_700_000_000 + n / 2).unwrap_or_default();
            let tag = (i == 0).then_some("latest");
            store
                .push(push(repository, n, tag), at(seconds))
                .await
                .unwrap();
        }
    }
    // `latest` moves to a newer image of the first repository.
    store
        .push(push(REPOSITORIES[0], 2, Some("latest")), at(1_800_000_000))
        .await
        .unwrap();
    let mut all = Vec::new();
    for (id, folder) in [
        ("crpone", "b1gfolder"),
        ("crptwo", "b1gfolder"),
        ("crpthree", "b1gother"),
    ] {
        let images = list_images(
            store,
            &ImageQuery {
                scope: Scope::Registry(id.into()),
                filter: FilterExpr::default(),
                order: vec![OrderItem {
                    field: "name".into(),
                    descending: false,
                }],
                after: None,
                limit: 1000,
            },
        )
        .await;
        all.extend(
            images
                .into_iter()
                .map(|image| (image, id.to_owned(), folder.to_owned())),
        );
    }
    all
}

fn key(image: &Image, field: &str) -> (String, i64) {
    match field {
        "name" => (image.name.clone(), 0),
        "digest" => (image.digest.clone(), 0),
        "created_at" => (String::new(), image.created_at.map_or(0, |t| t.seconds)),
        _ => (String::new(), 0),
    }
}

/// What List must return: the images of the scope that pass the filter, in the order.
fn oracle(all: &[(Image, String, String)], query: &ImageQuery) -> Vec<String> {
    let mut images: Vec<&Image> = all
        .iter()
        .filter(|(image, registry, folder)| match &query.scope {
            Scope::Repository(name) => &image.name == name,
            Scope::Registry(id) => registry == id,
            Scope::Folder(id) => folder == id,
        })
        .map(|(image, _, _)| image)
        .filter(|image| {
            query.filter.conditions.iter().all(|c| {
                let hit = c.values.contains(&image.name);
                match c.op {
                    yc_api_runtime::list::FilterOp::Eq | yc_api_runtime::list::FilterOp::In => hit,
                    _ => !hit,
                }
            })
        })
        .collect();
    let item = &query.order[0];
    images.sort_by(|a, b| {
        let o = key(a, &item.field)
            .cmp(&key(b, &item.field))
            .then_with(|| a.id.cmp(&b.id));
        if item.descending { o.reverse() } else { o }
    });
    images.iter().map(|i| i.id.clone()).collect()
}

/// A page of the store's List in both forms, checked to be the bytes encoding the typed
/// response gives (protobuf, and pbjson's JSON), and decoded.
async fn list_images(store: &SqlImageStore, query: &ImageQuery) -> Vec<Image> {
    use prost::Message as _;
    use yc_api_runtime::list::PageRows;
    use yc_proto_types::encoded::Form;
    use yc_proto_types::yandex::cloud::containerregistry::v1::ListImagesResponse;
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

async fn paged(store: &SqlImageStore, query: &ImageQuery) -> Vec<String> {
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

async fn lists_like_the_oracle(store: &SqlImageStore) {
    let all = fill(store).await;
    // Get answers with each image's stored forms: the typed image's encodings.
    for (image, _, _) in &all {
        use prost::Message as _;
        use yc_proto_types::encoded::Form;
        let stored = store.get(&image.id).await.unwrap().unwrap();
        assert_eq!(stored.message(), image);
        assert_eq!(stored.bytes(Form::Protobuf), image.encode_to_vec());
        assert_eq!(
            String::from_utf8_lossy(stored.bytes(Form::Json)),
            serde_json::to_string(image).unwrap()
        );
    }
    let count: usize = (0..REPOSITORIES.len()).map(|r| 2 + r % 3).sum();
    assert_eq!(all.len(), count, "one image per pushed manifest");
    let latest: Vec<&Image> = all
        .iter()
        .map(|(i, _, _)| i)
        .filter(|i| i.tags.contains(&"latest".to_owned()))
        .collect();
    assert_eq!(
        latest.len(),
        REPOSITORIES.len(),
        "one `latest` per repository"
    );

    let spec = FilterSpec {
        fields: &["name"],
        max_value_length: 256,
    };
    let filters = [
        "",
        r#"name = "crpone/ab""#,
        r#"name IN ("crpone/a-b", "crpone/a_b", "crptwo/z")"#,
        r#"name != "crpone/a.b""#,
        r#"name NOT IN ("crpone/B", "crptwo/a-b")"#,
    ];
    let scopes = [
        Scope::Repository("crpone/a-b".into()),
        Scope::Registry("crpone".into()),
        Scope::Folder("b1gfolder".into()),
        Scope::Folder("b1gother".into()),
    ];
    let mut checked = 0;
    for scope in &scopes {
        for filter in filters {
            for field in ["name", "digest", "created_at", "last_modified"] {
                for descending in [false, true] {
                    let query = ImageQuery {
                        scope: scope.clone(),
                        filter: FilterExpr::parse(filter, spec)
                            .unwrap_or_else(|e| panic!("{}", e.message)),
                        order: vec![OrderItem {
                            field: field.into(),
                            descending,
                        }],
                        after: None,
                        limit: 3,
                    };
                    let got = paged(store, &query).await;
                    if field == "last_modified" {
                        // Not in the oracle's keys: the same images, each once.
                        let mut sorted = got.clone();
                        sorted.sort();
                        sorted.dedup();
                        let mut expected = oracle(&all, &query);
                        expected.sort();
                        assert_eq!(sorted, expected, "{query:?}");
                    } else {
                        assert_eq!(got, oracle(&all, &query), "{query:?}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 4 * 5 * 4 * 2);

    // A page token that stops at an image deleted since continues after it.
    let query = ImageQuery {
        scope: Scope::Folder("b1gfolder".into()),
        filter: FilterExpr::default(),
        order: vec![OrderItem {
            field: "name".into(),
            descending: false,
        }],
        after: None,
        limit: 4,
    };
    let expected = oracle(&all, &query);
    let first = list_images(store, &query).await;
    let stop = first.last().map(|i| i.id.clone()).unwrap_or_default();
    assert!(store.delete(&stop, at(1_900_000_000)).await.unwrap());
    assert!(matches!(store.get(&stop).await, Ok(None)));
    let rest = paged(
        store,
        &ImageQuery {
            after: Some(stop),
            ..query.clone()
        },
    )
    .await;
    assert_eq!(rest, expected[4..].to_vec());
    let mut rows = yc_api_runtime::list::PageRows::new::<
        yc_proto_types::yandex::cloud::containerregistry::v1::ListImagesResponse,
    >(yc_proto_types::encoded::Form::Protobuf, 4)
    .unwrap();
    assert_eq!(
        store
            .list(
                &ImageQuery {
                    after: Some("crpunknown".into()),
                    ..query
                },
                &mut rows
            )
            .await,
        Err(yc_registry_image::store::ImageStoreError::CursorGone(
            "crpunknown".into()
        ))
    );
}

#[tokio::test]
async fn sqlite_lists_like_the_oracle() {
    let store = SqlImageStore::in_memory().await.unwrap();
    lists_like_the_oracle(&store).await;
}

#[tokio::test]
async fn postgres_lists_like_the_oracle() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let store = SqlImageStore::open(pg.pool.clone()).await.unwrap();
    lists_like_the_oracle(&store).await;
    // Text sorts by code point whatever the database's default collation.
    let collations = pg.text_collations("cr_images").await;
    assert_eq!(collations.len(), 6, "{collations:?}");
    for (column, collation) in collations {
        assert_eq!(collation.as_deref(), Some("C"), "cr_images.{column}");
    }
    pg.drop_schema().await;
}

/// Two replicas push the same manifests into one repository at once: each manifest is one
/// image, and the tag ends on one of them.
#[tokio::test]
async fn postgres_replicas_pushing_at_once_store_each_manifest_once() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let one = SqlImageStore::open(pg.pool.clone()).await.unwrap();
    let two = SqlImageStore::open(pg.pool.clone()).await.unwrap();
    one.ensure_registry(&Registry {
        id: "crpone".into(),
        folder_id: "b1g".into(),
        name: "one".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut created = 0;
    for n in 0..20 {
        let (a, b) = tokio::join!(
            one.push(push("crpone/app", n, Some("latest")), at(1)),
            two.push(push("crpone/app", n, Some("latest")), at(1))
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.image.id, b.image.id, "one image per manifest");
        created += usize::from(a.created) + usize::from(b.created);
    }
    assert_eq!(created, 20);
    let images = list_images(
        &one,
        &ImageQuery {
            scope: Scope::Repository("crpone/app".into()),
            filter: FilterExpr::default(),
            order: vec![OrderItem {
                field: "name".into(),
                descending: false,
            }],
            after: None,
            limit: 100,
        },
    )
    .await;
    assert_eq!(images.len(), 20);
    let tagged = images
        .iter()
        .filter(|i| i.tags == ["latest".to_owned()])
        .count();
    assert_eq!(tagged, 1);
    pg.drop_schema().await;
}

/// Every List shape on PostgreSQL can be served by an index scan: with sequential scans and
/// sorts priced out, the plan reads `cr_images` by an index and sorts nothing.
#[tokio::test]
async fn every_postgres_list_shape_scans_an_index() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let store = SqlImageStore::open(pg.pool.clone()).await.unwrap();
    let all = fill(&store).await;
    let some_id = all.first().map(|(i, _, _)| i.id.clone());
    let spec = FilterSpec {
        fields: &["name"],
        max_value_length: 256,
    };
    let mut checked = 0;
    for scope in [
        Scope::Repository("crpone/ab".into()),
        Scope::Registry("crpone".into()),
        Scope::Folder("b1gfolder".into()),
    ] {
        for filter in ["", r#"name = "crpone/ab""#, r#"name != "crpone/ab""#] {
            for field in ["name", "digest", "created_at", "last_modified"] {
                for descending in [false, true] {
                    for after in [None, some_id.clone()] {
                        let query = ImageQuery {
                            scope: scope.clone(),
                            filter: FilterExpr::parse(filter, spec)
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
    }
    assert_eq!(checked, 3 * 3 * 4 * 2 * 2);
    pg.drop_schema().await;
}

/// A repository's tags page in code-point order and resolve to their images, by tag or by
/// digest; other repositories' tags stay out.
async fn tags_page_and_resolve(store: &SqlImageStore) {
    store
        .ensure_registry(&Registry {
            id: "crpone".into(),
            folder_id: "b1g".into(),
            name: "one".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for (n, tag) in ["v2", "V1", "latest", "v10"].iter().enumerate() {
        store
            .push(push("crpone/app", n, Some(tag)), at(1))
            .await
            .unwrap();
    }
    store
        .push(push("crpone/other", 9, Some("zzz")), at(1))
        .await
        .unwrap();
    let page = |after: Option<&'static str>| async move {
        store.tags("crpone/app", after, 2).await.unwrap()
    };
    assert_eq!(page(None).await, ["V1", "latest"]);
    assert_eq!(page(Some("latest")).await, ["v10", "v2"]);
    assert!(page(Some("v2")).await.is_empty());
    let tagged = store
        .resolve("crpone/app", "v10")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("v10 resolves"));
    assert_eq!(tagged.tags, ["v10"]);
    let by_digest = store.resolve("crpone/app", &tagged.digest).await.unwrap();
    assert_eq!(by_digest.map(|i| i.id), Some(tagged.id));
    let elsewhere = store.resolve("crpone/other", "v10").await.unwrap();
    assert_eq!(elsewhere, None);
}

#[tokio::test]
async fn sqlite_tags_page_and_resolve() {
    let store = SqlImageStore::in_memory().await.unwrap();
    tags_page_and_resolve(&store).await;
}

#[tokio::test]
async fn postgres_tags_page_and_resolve() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let store = SqlImageStore::open(pg.pool.clone()).await.unwrap();
    tags_page_and_resolve(&store).await;
    pg.drop_schema().await;
}
