//! Disks and snapshots on both databases: seeding is idempotent and fills what a seed leaves
//! out; List pages through every disk of a folder in the order asked, filtered, with tokens
//! bound to their listing; Get and List need a viewer of the folder; every List shape is an
//! index search on both databases.

use std::collections::HashMap;

use yc_api_runtime::list::{Page, TokenKeys};
use yc_api_runtime::{Access, Caller, Principal, Role};
use yc_compute_image::sources::{ORDER_FIELDS, SourceKind, list_spec};
use yc_compute_image::{ComputeSources, SqlSources};
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::yandex::cloud::compute::v1::{
    Disk, GetDiskRequest, GetSnapshotRequest, ListDisksRequest, ListSnapshotsRequest, Snapshot,
    disk,
};
use yc_sql::TestPostgres;

fn disk(n: u32, folder: &str, status: disk::Status) -> Disk {
    Disk {
        id: format!("fhm{n:017}"),
        folder_id: folder.into(),
        name: format!("disk-{}", 20 - n),
        status: status as i32,
        size: i64::from(n) << 30,
        created_at: Some(Timestamp {
            seconds: 1_700_000_000 + i64::from(n % 4),
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn all_pages(
    sources: &ComputeSources,
    caller: &Caller,
    request: ListDisksRequest,
) -> Vec<String> {
    let mut request = ListDisksRequest {
        page_size: 3,
        ..request
    };
    let mut ids = Vec::new();
    loop {
        let page = sources.list_disks(&request, caller).await.unwrap();
        assert!(page.disks.len() <= 3);
        ids.extend(page.disks.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        request.page_token = page.next_page_token;
    }
}

async fn sources_behave(store: SqlSources) {
    let sources = ComputeSources::new(store.clone(), TokenKeys::ephemeral());
    let system = Caller::system();
    for n in 0..12 {
        let folder = if n % 3 == 2 { "b1gother" } else { "b1gfolder" };
        let status = if n % 4 == 3 {
            disk::Status::Creating
        } else {
            disk::Status::Ready
        };
        assert!(store.seed(disk(n, folder, status)).await.unwrap());
    }
    // Seeding again changes nothing, even with other fields.
    let again = Disk {
        name: "renamed".into(),
        ..disk(0, "b1gfolder", disk::Status::Ready)
    };
    assert!(!store.seed(again).await.unwrap());
    let got = sources
        .get_disk(
            &GetDiskRequest {
                disk_id: disk(0, "", disk::Status::Ready).id,
            },
            &system,
        )
        .await
        .unwrap();
    assert_eq!(got.name, "disk-20");

    let mut expected: Vec<Disk> = (0..12)
        .filter(|n| n % 3 != 2)
        .map(|n| disk(n, "b1gfolder", disk::Status::Ready))
        .collect();
    let ids = |disks: &[Disk]| disks.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    let listed = all_pages(
        &sources,
        &system,
        ListDisksRequest {
            folder_id: "b1gfolder".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed, ids(&expected));
    // By name: disk-20 … disk-9 as text, the id breaking no ties (names are distinct).
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    let by_name = all_pages(
        &sources,
        &system,
        ListDisksRequest {
            folder_id: "b1gfolder".into(),
            order_by: "name".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_name, ids(&expected));
    // Newest first, the id (descending) breaking ties.
    expected.sort_by(|a, b| {
        (b.created_at.map(|t| t.seconds), &b.id).cmp(&(a.created_at.map(|t| t.seconds), &a.id))
    });
    let newest = all_pages(
        &sources,
        &system,
        ListDisksRequest {
            folder_id: "b1gfolder".into(),
            order_by: "createdAt desc".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(newest, ids(&expected));
    let creating = all_pages(
        &sources,
        &system,
        ListDisksRequest {
            folder_id: "b1gfolder".into(),
            filter: "status = \"CREATING\"".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        creating,
        vec![format!("fhm{:017}", 3), format!("fhm{:017}", 7)]
    );

    // A token continues only its own listing.
    let first = sources
        .list_disks(
            &ListDisksRequest {
                folder_id: "b1gfolder".into(),
                page_size: 2,
                ..Default::default()
            },
            &system,
        )
        .await
        .unwrap();
    let refused = sources
        .list_disks(
            &ListDisksRequest {
                folder_id: "b1gother".into(),
                page_token: first.next_page_token,
                ..Default::default()
            },
            &system,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.grpc_code(), tonic::Code::InvalidArgument);

    // Snapshots: the same, in a table of their own.
    let snapshot = Snapshot {
        folder_id: "b1gfolder".into(),
        name: "nightly".into(),
        disk_size: 1 << 30,
        ..Default::default()
    };
    assert!(store.seed(snapshot).await.unwrap());
    let listed = sources
        .list_snapshots(
            &ListSnapshotsRequest {
                folder_id: "b1gfolder".into(),
                ..Default::default()
            },
            &system,
        )
        .await
        .unwrap();
    assert_eq!(listed.snapshots.len(), 1);
    let made = &listed.snapshots[0];
    assert!(
        made.id.starts_with("fd8") && made.created_at.is_some(),
        "{made:?}"
    );
    assert_eq!(made.status, 2, "READY when the seed gives none");

    // A viewer of the folder reads; a viewer of another folder does not.
    let viewer = |folder: &str| {
        Caller::of(
            Principal::new(
                "ajeviewer",
                Access::roles(HashMap::from([(folder.to_owned(), Role::Viewer)])),
            ),
            None,
        )
    };
    let request = GetSnapshotRequest {
        snapshot_id: made.id.clone(),
    };
    assert!(
        sources
            .get_snapshot(&request, &viewer("b1gfolder"))
            .await
            .is_ok()
    );
    let refused = sources
        .get_snapshot(&request, &viewer("b1gother"))
        .await
        .unwrap_err();
    assert_eq!(refused.grpc_code(), tonic::Code::PermissionDenied);
    let refused = sources
        .list_disks(
            &ListDisksRequest {
                folder_id: "b1gfolder".into(),
                ..Default::default()
            },
            &viewer("b1gother"),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.grpc_code(), tonic::Code::PermissionDenied);
    let missing = sources
        .get_disk(
            &GetDiskRequest {
                disk_id: "fhmnosuchdisk0000000".into(),
            },
            &system,
        )
        .await
        .unwrap_err();
    assert_eq!(missing.grpc_code(), tonic::Code::NotFound);
    assert_eq!(missing.message, "Disk fhmnosuchdisk0000000 not found");
}

#[tokio::test]
async fn sqlite_disks_and_snapshots() {
    sources_behave(SqlSources::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn postgres_disks_and_snapshots() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    sources_behave(SqlSources::open(pg.pool.clone()).await.unwrap()).await;
    pg.drop_schema().await;
}

/// The plan of every List shape of `K`, each step that reads its table checked by `check`.
async fn every_plan<K: SourceKind>(store: &SqlSources, check: impl Fn(&str, &[String])) -> usize {
    let keys = TokenKeys::ephemeral();
    let mut checked = 0;
    for filter in [
        "",
        r#"name = "boot""#,
        r#"status IN ("READY", "ERROR")"#,
        r#"id = "fhm""#,
    ] {
        for field in ORDER_FIELDS {
            for direction in ["asc", "desc"] {
                let order = format!("{field} {direction}");
                let page = Page::read(
                    &keys,
                    &list_spec::<K>(),
                    &["b1gfolder"],
                    filter,
                    &order,
                    10,
                    "",
                )
                .unwrap_or_else(|e| panic!("{}", e.message));
                let plan = store.query_plan::<K>("b1gfolder", &page).await.unwrap();
                check(&format!("{} {filter:?} by {order}", K::NOUN), &plan);
                checked += 1;
            }
        }
    }
    checked
}

/// Every List shape of disks and snapshots is an index search on SQLite, never a scan of
/// the table or a sort.
#[tokio::test]
async fn every_sqlite_list_shape_searches_an_index() {
    let store = SqlSources::in_memory().await.unwrap();
    let check = |table: &'static str| {
        move |what: &str, plan: &[String]| {
            let reads: Vec<&String> = plan.iter().filter(|s| s.contains(table)).collect();
            assert!(!reads.is_empty(), "{what}: {plan:?}");
            for step in reads {
                assert!(
                    step.starts_with(&format!("SEARCH {table} USING")),
                    "{what}: {plan:?}"
                );
            }
            assert!(
                !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                "{what} sorts: {plan:?}"
            );
        }
    };
    let disks = every_plan::<Disk>(&store, check("ci_disks")).await;
    let snapshots = every_plan::<Snapshot>(&store, check("ci_snapshots")).await;
    assert_eq!(disks + snapshots, 2 * 4 * 4 * 2);
}

/// The same on PostgreSQL, with rows in the tables: index scans, no sequential scan, no sort.
#[tokio::test]
async fn every_postgres_list_shape_scans_an_index() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let store = SqlSources::open(pg.pool.clone()).await.unwrap();
    for n in 0..20 {
        store
            .seed(disk(n, "b1gfolder", disk::Status::Ready))
            .await
            .unwrap();
        let snapshot = Snapshot {
            id: format!("fd8snap{n:013}"),
            folder_id: "b1gfolder".into(),
            name: format!("s{n}"),
            ..Default::default()
        };
        store.seed(snapshot).await.unwrap();
    }
    let check = |what: &str, plan: &[String]| {
        let plan = plan.join("\n");
        assert!(plan.contains("Index Scan"), "{what}:\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{what}:\n{plan}");
        assert!(!plan.contains("Sort"), "{what}:\n{plan}");
    };
    let checked =
        every_plan::<Disk>(&store, check).await + every_plan::<Snapshot>(&store, check).await;
    assert_eq!(checked, 2 * 4 * 4 * 2);
    pg.drop_schema().await;
}
