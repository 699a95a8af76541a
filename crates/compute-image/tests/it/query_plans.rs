//! Every Compute List shape is served by an index search, never a scan of the folder's images;
//! a later page's cursor (the previous page's last id, whose sort keys the statement reads by
//! primary key) bounds that search, so the page does not read the rows before it.

use yc_api_runtime::list::{FilterExpr, FilterSpec, OrderItem};
use yc_compute_image::SqlComputeImageStore;
use yc_compute_image::store::ComputeQuery;

#[tokio::test]
async fn every_list_shape_searches_an_index() {
    let store = SqlComputeImageStore::in_memory().await.unwrap();
    let spec = FilterSpec {
        fields: &["name", "family", "status", "id"],
        max_value_length: 256,
    };
    let filters = [
        "",
        r#"family = "f""#,
        r#"status IN ("READY", "ERROR")"#,
        r#"name != "x" AND family = "f""#,
        r#"id = "fd8""#,
    ];
    let mut checked = 0;
    for filter in filters {
        for field in ["id", "name", "family", "status", "created_at"] {
            for (descending, after) in [false, true]
                .into_iter()
                .flat_map(|d| [(d, None), (d, Some("fd8cursor".to_owned()))])
            {
                let query = ComputeQuery {
                    folder_id: "b1g".into(),
                    filter: FilterExpr::parse(filter, spec)
                        .unwrap_or_else(|e| panic!("{}", e.message)),
                    order: vec![OrderItem {
                        field: field.into(),
                        descending,
                    }],
                    after: after.clone(),
                    limit: 101,
                };
                let plan = store.query_plan(&query).await.unwrap();
                let reads: Vec<&String> = plan.iter().filter(|s| s.contains("ci_images")).collect();
                assert!(!reads.is_empty(), "{query:?}: {plan:?}");
                for step in &reads {
                    assert!(
                        step.starts_with("SEARCH ci_images USING"),
                        "{query:?} is not an index search: {plan:?}"
                    );
                }
                // (With `IN`, SQLite searches each value's rows in turn, the cursor a filter.)
                if after.is_some() && !filter.contains(" IN ") {
                    // The page's search starts at the cursor: its bound is in the index
                    // constraint, beside the subqueries that read the cursor row by id.
                    // (A filter on the id finds its one row by primary key.)
                    let bounded = |step: &&&String| {
                        step.ends_with("(id=?)")
                            || step.contains("folder_id=? AND ")
                                && [">?", "<?", ")>(", ")<("].iter().any(|b| step.contains(b))
                    };
                    // The page's own search comes first, the subqueries' after it.
                    assert!(
                        bounded(&&reads[0]),
                        "{query:?}: the cursor does not bound the search: {plan:?}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5 * 5 * 2 * 2);
}
