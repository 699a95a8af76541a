//! Every List shape is served by an index: SQLite's plan for it searches an index, and never
//! scans every image. This is what keeps the cost of a page flat as the store grows (see
//! `benches/list.rs` and docs/benchmarks.md for the figures).

use yc_api_runtime::list::{FilterExpr, FilterSpec, OrderItem};
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::yandex::cloud::containerregistry::v1::Blob;
use yc_registry_image::SqlImageStore;
use yc_registry_image::store::{ImageQuery, ImageStore, PushImage, Registry, Scope};

#[tokio::test]
async fn every_list_shape_searches_an_index() {
    let store = SqlImageStore::in_memory().await.unwrap();
    let registry = Registry {
        id: "crp1".into(),
        folder_id: "b1g".into(),
        name: "r".into(),
        ..Default::default()
    };
    store.ensure_registry(&registry).await.unwrap();
    let pushed = store
        .push(
            PushImage {
                registry_id: "crp1".into(),
                repository: "crp1/app".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                config: Blob::default(),
                layers: vec![],
                compressed_size: 0,
                tag: None,
                ..Default::default()
            },
            Timestamp::now(),
        )
        .await
        .unwrap();

    let spec = FilterSpec {
        fields: &["name"],
        max_value_length: 256,
    };
    let filters = [
        "",
        r#"name = "crp1/app""#,
        r#"name IN ("crp1/app", "crp1/web")"#,
        r#"name != "crp1/app""#,
    ];
    let scopes = [
        Scope::Repository("crp1/app".into()),
        Scope::Registry("crp1".into()),
        Scope::Folder("b1g".into()),
    ];
    let orders = ["name", "digest", "created_at", "last_modified"];
    let mut checked = 0;
    for scope in &scopes {
        for filter in filters {
            for field in orders {
                for descending in [false, true] {
                    for after in [None, Some(pushed.image.id.clone())] {
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
                        let plan = store.query_plan(&query).await.unwrap();
                        let reads: Vec<&String> = plan
                            .iter()
                            .filter(|step| step.contains("cr_images"))
                            .collect();
                        assert!(!reads.is_empty(), "{query:?}: {plan:?}");
                        for step in reads {
                            assert!(
                                step.starts_with("SEARCH cr_images USING INDEX")
                                    || step.starts_with("SEARCH cr_images USING COVERING INDEX"),
                                "{query:?} is not served by an index search: {plan:?}"
                            );
                        }
                        // Only several repositories at once need their rows merged and sorted.
                        if !filter.contains(" IN ") {
                            assert!(
                                !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                                "{query:?} sorts: {plan:?}"
                            );
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 4 * 4 * 2 * 2);
}

/// Every List of repositories (by registry or folder, by name or id either way, filtered or
/// not, from the start or after a cursor) and of registries searches an index and sorts
/// nothing.
#[tokio::test]
async fn repository_and_registry_lists_search_an_index() {
    use yc_registry_image::store::{RegistryQuery, RepositoryQuery, RepositoryScope};
    let store = SqlImageStore::in_memory().await.unwrap();
    store
        .ensure_registry(&Registry {
            id: "crp1".into(),
            folder_id: "b1g".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .push(
            PushImage {
                registry_id: "crp1".into(),
                repository: "crp1/app".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                config: Blob::default(),
                layers: vec![],
                compressed_size: 0,
                tag: None,
                ..Default::default()
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
    let cursor = yc_registry_image::store::repository_id("crp1/app");
    let spec = FilterSpec {
        fields: &["name"],
        max_value_length: 256,
    };
    let filters = ["", r#"name = "crp1/app""#, r#"name != "crp1/app""#];
    let mut checked = 0;
    let check = |table: &str, what: &dyn std::fmt::Debug, plan: &[String]| {
        let reads: Vec<&String> = plan.iter().filter(|s| s.contains(table)).collect();
        assert!(!reads.is_empty(), "{what:?}: {plan:?}");
        for step in reads {
            assert!(
                step.starts_with(&format!("SEARCH {table} USING INDEX"))
                    || step.starts_with(&format!("SEARCH {table} USING COVERING INDEX")),
                "{what:?} is not served by an index search: {plan:?}"
            );
        }
        assert!(
            !plan.iter().any(|s| s.contains("TEMP B-TREE")),
            "{what:?} sorts: {plan:?}"
        );
    };
    for filter in filters {
        for scope in [
            RepositoryScope::Registry("crp1".into()),
            RepositoryScope::Folder("b1g".into()),
        ] {
            for field in ["name", "id"] {
                for descending in [false, true] {
                    for after in [None, Some(cursor.clone())] {
                        let query = RepositoryQuery {
                            scope: scope.clone(),
                            filter: FilterExpr::parse(filter, spec).unwrap(),
                            order: vec![OrderItem {
                                field: field.into(),
                                descending,
                            }],
                            after,
                            limit: 101,
                        };
                        let plan = store.repositories_query_plan(&query).await.unwrap();
                        check("cr_repositories", &query, &plan);
                        checked += 1;
                    }
                }
            }
        }
        let query = RegistryQuery {
            folder_id: "b1g".into(),
            filter: FilterExpr::parse(filter, spec).unwrap(),
            after: None,
            limit: 101,
        };
        check(
            "cr_registries",
            &query,
            &store.registries_query_plan(&query).await.unwrap(),
        );
        checked += 1;
    }
    assert_eq!(checked, 3 * (2 * 2 * 2 * 2 + 1));
}
