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
