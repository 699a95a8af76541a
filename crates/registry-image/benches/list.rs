//! The cost of a List page as the store grows: a filtered, ordered page, and a later page of
//! a whole registry, at 10,000 and at 1,000,000 images, each up to the response's bytes as
//! gRPC sends them (`RegistryImages::list_encoded`, what the server answers List with). Served by indexes with keyset paging,
//! neither should grow with the number of images. `cargo xtask bench` runs this and writes the
//! figures to docs/benchmarks.md.
//!
//! For a closer look: `YC_BENCH_SIZES=10000,200000` (the sizes), `YC_BENCH_STORE=file` (the
//! store in a database file with the server's pool of connections, rather than in memory),
//! `YC_BENCH_SPREAD=1` (also pages all over the registry one after another, whose rows no
//! page before has read: what many clients paging at once cost, beyond SQLite's page cache).

// A benchmark stops at the first error, with the error.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use yc_operations::{MemoryOperationStore, OperationRunner};
use yc_proto_types::encoded::Form;
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::yandex::cloud::containerregistry::v1::{Blob, ListImagesRequest};
use yc_registry_image::store::{ImageStore, PushImage, Registry};
use yc_registry_image::{Caller, RegistryImages, SqlImageStore};

/// The allocator `yc-images` runs on, so that a page costs here what it costs in the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REGISTRY: &str = "crpbench000000000000";
/// Images per repository, the same at every size: a filtered page has the same content.
const PER_REPOSITORY: usize = 100;

fn digest(seed: &str) -> String {
    let hash = Sha256::digest(seed.as_bytes());
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

async fn populate(size: usize, dir: &std::path::Path) -> RegistryImages {
    // `YC_BENCH_STORE=file`: in a database file, as the server keeps it.
    let store = if std::env::var("YC_BENCH_STORE").as_deref() == Ok("file") {
        let db = yc_sql::Db::sqlite_file(dir.join(format!("bench-{size}.db")), 8)
            .await
            .unwrap();
        SqlImageStore::open(db).await.unwrap()
    } else {
        SqlImageStore::in_memory().await.unwrap()
    };
    let registry = Registry {
        id: REGISTRY.into(),
        folder_id: "b1gbench".into(),
        name: "bench".into(),
        ..Default::default()
    };
    store.ensure_registry(&registry).await.unwrap();
    let pushes = (0..size).map(|i| {
        let repository = format!("{REGISTRY}/repo-{:06}", i / PER_REPOSITORY);
        let push = PushImage {
            registry_id: REGISTRY.into(),
            repository,
            digest: digest(&format!("manifest {i}")),
            config: Blob {
                id: String::new(),
                digest: digest(&format!("config {i}")),
                size: 1_000,
                urls: vec![],
            },
            layers: vec![Blob {
                id: String::new(),
                digest: digest(&format!("layer {i}")),
                size: 30_000_000,
                urls: vec![],
            }],
            compressed_size: 30_000_000,
            tag: (i % 7 == 0).then(|| format!("t{i}")),
            ..Default::default()
        };
        let at = Timestamp {
            seconds: 1_700_000_000 + (i as i64 % 86_400),
            nanos: (i % 1_000) as i32 * 1000,
        };
        (push, at)
    });
    store.push_many(pushes).await.unwrap();
    RegistryImages::new(
        Arc::new(store),
        OperationRunner::new(Arc::new(MemoryOperationStore::new())),
    )
}

fn list_pages(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("registry_list");
    group.sample_size(30);
    // `YC_BENCH_SIZES=10000,100000` for a quicker look; the documented figures use the default.
    let sizes: Vec<usize> = std::env::var("YC_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 1_000_000]);
    let dir = tempfile::tempdir().unwrap();
    for size in sizes {
        let images = runtime.block_on(populate(size, dir.path()));
        let repository = format!("{REGISTRY}/repo-{:06}", size / PER_REPOSITORY / 2);
        let filtered = ListImagesRequest {
            registry_id: REGISTRY.into(),
            filter: format!("name = \"{repository}\""),
            order_by: "created_at desc".into(),
            page_size: 100,
            ..Default::default()
        };
        let caller = Caller::system();
        let page = runtime.block_on(images.list(&filtered, &caller)).unwrap();
        assert_eq!(page.images.len(), 100);
        group.bench_with_input(
            BenchmarkId::new("filtered_ordered_page", size),
            &filtered,
            |b, request| {
                b.to_async(&runtime)
                    .iter(|| images.list_encoded(request, &caller, Form::Protobuf));
            },
        );

        // A page in the middle of a whole registry, by digest.
        let mut later = ListImagesRequest {
            registry_id: REGISTRY.into(),
            order_by: "digest".into(),
            page_size: 100,
            ..Default::default()
        };
        for _ in 0..3 {
            later.page_token = runtime
                .block_on(images.list(&later, &Caller::system()))
                .unwrap()
                .next_page_token;
        }
        group.bench_with_input(
            BenchmarkId::new("fourth_page_by_digest", size),
            &later,
            |b, request| {
                b.to_async(&runtime)
                    .iter(|| images.list_encoded(request, &caller, Form::Protobuf));
            },
        );

        // Pages all over a whole registry, by digest, one after another: rows no page
        // before has read, as many clients paging at once read them.
        if std::env::var("YC_BENCH_SPREAD").is_ok() {
            let mut tokens = Vec::new();
            let mut request = ListImagesRequest {
                registry_id: REGISTRY.into(),
                order_by: "digest".into(),
                page_size: 100,
                ..Default::default()
            };
            loop {
                let page = runtime
                    .block_on(images.list(&request, &Caller::system()))
                    .unwrap();
                if page.next_page_token.is_empty() {
                    break;
                }
                tokens.push(page.next_page_token.clone());
                request.page_token = page.next_page_token;
            }
            let mut at = 0;
            group.bench_function(BenchmarkId::new("spread_pages_by_digest", size), |b| {
                b.to_async(&runtime).iter(|| {
                    at = (at + 7919) % tokens.len();
                    let request = ListImagesRequest {
                        page_token: tokens[at].clone(),
                        ..request.clone()
                    };
                    let images = &images;
                    let caller = &caller;
                    async move { images.list_encoded(&request, caller, Form::Protobuf).await }
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, list_pages);
criterion_main!(benches);
