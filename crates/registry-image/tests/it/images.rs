//! Registry images in-process: pushing, List (scopes, filters, orders, paging), Get, Delete,
//! import, and every validation rule at its boundary.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::support::TestImage;
use yc_operations::{MemoryOperationStore, OperationRunner, TypedOperation};
use yc_proto_types::google::protobuf::Empty;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    DeleteImageMetadata, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
};
use yc_proto_types::yandex::cloud::operation::Operation;
use yc_registry_image::oci::ImageManifest;
use yc_registry_image::store::Registry;
use yc_registry_image::{Caller, RegistryImages, SqlImageStore};

async fn service() -> RegistryImages {
    let store = SqlImageStore::in_memory().await.unwrap();
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    let images = RegistryImages::new(Arc::new(store), runner);
    for (id, folder) in [
        ("crp1", "b1gfolder"),
        ("crp2", "b1gfolder"),
        ("crp3", "b1gother"),
    ] {
        let registry = Registry {
            id: id.into(),
            folder_id: folder.into(),
            name: id.into(),
            ..Default::default()
        };
        images.ensure_registry(&registry).await.unwrap();
    }
    images
}

fn manifest(seed: &str) -> ImageManifest {
    let image = TestImage::new(
        seed,
        &[
            ("shared/base", b"the same base layer"),
            ("app", seed.as_bytes()),
        ],
    );
    ImageManifest::parse(image.manifest).unwrap()
}

async fn push(images: &RegistryImages, repository: &str, seed: &str, tag: Option<&str>) -> Image {
    images.push(repository, &manifest(seed), tag).await.unwrap()
}

fn list(scope: (&str, &str)) -> ListImagesRequest {
    let mut request = ListImagesRequest::default();
    match scope.0 {
        "repository" => request.repository_name = scope.1.into(),
        "registry" => request.registry_id = scope.1.into(),
        _ => request.folder_id = scope.1.into(),
    }
    request
}

async fn names(images: &RegistryImages, request: ListImagesRequest) -> Result<Vec<String>, String> {
    images
        .list(&request, &Caller::system())
        .await
        .map(|r| {
            r.images
                .into_iter()
                .map(|i| format!("{}@{}", i.name, &i.digest[7..11]))
                .collect()
        })
        .map_err(|e| e.message)
}

async fn wait(images: &RegistryImages, op: &Operation) -> Operation {
    for _ in 0..400 {
        let current = images.runner().get(&op.id).await.unwrap();
        if current.done {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("operation {} did not finish", op.id);
}

#[tokio::test]
async fn a_push_stores_the_manifest_as_sent_and_tags_move() {
    let images = service().await;
    let m = manifest("v1");
    let first = images.push("crp1/app", &m, Some("latest")).await.unwrap();
    assert!(first.id.starts_with("crp") && first.id.len() == 20);
    assert_eq!(first.name, "crp1/app");
    assert_eq!(first.digest, m.digest);
    assert_eq!(first.compressed_size, m.compressed_size());
    assert_eq!(first.tags, ["latest"]);
    assert_eq!(first.layers.len(), 2);
    assert_eq!(
        first.config.as_ref().map(|c| c.digest.clone()),
        Some(m.manifest.config.digest.clone())
    );

    // The same manifest again is the same image; a second tag is added to it.
    let again = images.push("crp1/app", &m, Some("v1")).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.tags, ["latest", "v1"]);

    // A new image takes "latest"; the old one keeps "v1".
    let second = push(&images, "crp1/app", "v2", Some("latest")).await;
    assert_eq!(second.tags, ["latest"]);
    let old = images
        .get(
            &GetImageRequest {
                image_id: first.id.clone(),
            },
            &Caller::system(),
        )
        .await;
    assert_eq!(old.map(|i| i.tags).unwrap_or_default(), ["v1"]);

    // Images of one registry that share a layer share its blob id.
    assert_eq!(second.layers[0], first.layers[0]);
    assert_ne!(second.layers[1].id, first.layers[1].id);

    // The same manifest in another repository is another image.
    let elsewhere = images.push("crp1/other", &m, None).await.unwrap();
    assert_ne!(elsewhere.id, first.id);

    let no_registry = images
        .push("crp9/app", &m, None)
        .await
        .err()
        .unwrap_or_default();
    assert_eq!(
        (no_registry.grpc_code(), no_registry.message.as_str()),
        (tonic::Code::NotFound, "Registry crp9 not found")
    );
    let bad_tag = images
        .push("crp1/app", &m, Some("-x"))
        .await
        .err()
        .unwrap_or_default();
    assert_eq!(bad_tag.grpc_code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn list_scopes_take_precedence_in_order() {
    let images = service().await;
    push(&images, "crp1/a", "1", None).await;
    push(&images, "crp1/b", "2", None).await;
    push(&images, "crp2/a", "3", None).await;
    push(&images, "crp3/a", "4", None).await;
    let count = |request| async { names(&images, request).await.map(|n| n.len()) };
    assert_eq!(count(list(("repository", "crp1/a"))).await, Ok(1));
    assert_eq!(count(list(("registry", "crp1"))).await, Ok(2));
    assert_eq!(count(list(("folder", "b1gfolder"))).await, Ok(3));
    assert_eq!(count(list(("folder", "b1gother"))).await, Ok(1));
    // repository_name wins over registry_id, which wins over folder_id.
    let all = ListImagesRequest {
        repository_name: "crp1/b".into(),
        registry_id: "crp2".into(),
        folder_id: "b1gother".into(),
        ..Default::default()
    };
    assert_eq!(count(all).await, Ok(1));
    let registry_and_folder = ListImagesRequest {
        registry_id: "crp2".into(),
        folder_id: "b1gother".into(),
        ..Default::default()
    };
    assert_eq!(
        names(&images, registry_and_folder)
            .await
            .map(|n| n[0].clone())
            .unwrap_or_default()[..6]
            .to_owned(),
        "crp2/a"
    );
    assert_eq!(
        count(ListImagesRequest::default()).await,
        Err("Request validation error: repository_name: one of repository_name, registry_id or folder_id is required".into())
    );
}

#[tokio::test]
async fn list_filters_on_name() {
    let images = service().await;
    for (repo, seed) in [
        ("crp1/a", "1"),
        ("crp1/b", "2"),
        ("crp1/c", "3"),
        ("crp1/a", "4"),
    ] {
        push(&images, repo, seed, None).await;
    }
    let repos = |filter: &str| {
        let request = ListImagesRequest {
            filter: filter.into(),
            ..list(("registry", "crp1"))
        };
        let images = images.clone();
        async move {
            names(&images, request).await.map(|n| {
                n.into_iter()
                    .map(|x| x[..6].to_owned())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(repos(r#"name = "crp1/a""#).await, Ok(vec!["crp1/a".into()]));
    assert_eq!(
        repos(r#"name != 'crp1/a'"#).await,
        Ok(vec!["crp1/b".into(), "crp1/c".into()])
    );
    assert_eq!(
        repos(r#"name IN ("crp1/a", "crp1/c")"#).await,
        Ok(vec!["crp1/a".into(), "crp1/c".into()])
    );
    assert_eq!(
        repos(r#"name NOT IN ("crp1/a", "crp1/c")"#).await,
        Ok(vec!["crp1/b".into()])
    );
    assert_eq!(
        repos(r#"name = "crp1/a" AND name != "crp1/a""#).await,
        Ok(vec![])
    );
    assert_eq!(
        repos(r#"digest = "x""#).await,
        Err("Request validation error: filter: column 1: cannot filter on \"digest\"; the fields are name".into())
    );
}

#[tokio::test]
async fn list_orders_by_each_field_with_the_id_breaking_ties() {
    let images = service().await;
    let mut pushed = Vec::new();
    for (repo, seed) in [
        ("crp1/b", "1"),
        ("crp1/a", "2"),
        ("crp1/c", "3"),
        ("crp1/a", "4"),
    ] {
        pushed.push(push(&images, repo, seed, None).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Re-tagging the first image makes it the most recently modified.
    push(&images, "crp1/b", "1", Some("retagged")).await;

    let ids = |order: &str| {
        let request = ListImagesRequest {
            order_by: order.into(),
            ..list(("registry", "crp1"))
        };
        let images = images.clone();
        async move {
            images
                .list(&request, &Caller::system())
                .await
                .map(|r| r.images.into_iter().map(|i| i.id).collect::<Vec<_>>())
        }
    };
    let by = |key: &dyn Fn(&Image) -> String, descending: bool| {
        let mut sorted = pushed.clone();
        sorted.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id)));
        if descending {
            sorted.reverse();
        }
        sorted.into_iter().map(|i| i.id).collect::<Vec<_>>()
    };
    let created = |i: &Image| {
        let t = i.created_at.unwrap_or_default();
        format!("{:020}{:09}", t.seconds, t.nanos)
    };
    assert_eq!(ids("").await.ok(), Some(by(&|i| i.name.clone(), false)));
    assert_eq!(
        ids("name desc").await.ok(),
        Some(by(&|i| i.name.clone(), true))
    );
    assert_eq!(
        ids("digest").await.ok(),
        Some(by(&|i| i.digest.clone(), false))
    );
    assert_eq!(ids("created_at").await.ok(), Some(by(&created, false)));
    assert_eq!(ids("createdAt desc").await.ok(), Some(by(&created, true)));
    let modified = ids("last_modified desc").await.unwrap_or_default();
    assert_eq!(modified.first(), Some(&pushed[0].id));
    // Mixed directions: name ascending, then newest first within a name.
    let mixed = ids("name, created_at desc").await.unwrap_or_default();
    assert_eq!(
        mixed,
        [
            pushed[3].id.clone(),
            pushed[1].id.clone(),
            pushed[0].id.clone(),
            pushed[2].id.clone()
        ]
    );
    assert_eq!(
        ids("size").await.map_err(|e| e.message),
        Err("Request validation error: order_by: cannot sort by \"size\"; the fields are name, digest, created_at, last_modified".into())
    );
}

/// Walks every page of `request`, running `between` after each page.
async fn walk(
    images: &RegistryImages,
    mut request: ListImagesRequest,
    mut between: impl AsyncFnMut(usize),
) -> Result<Vec<String>, Status> {
    let mut seen = Vec::new();
    for page in 0.. {
        let response = images.list(&request, &Caller::system()).await?;
        seen.extend(response.images.into_iter().map(|i| i.id));
        if response.next_page_token.is_empty() {
            break;
        }
        request.page_token = response.next_page_token;
        between(page).await;
    }
    Ok(seen)
}

#[tokio::test]
async fn paging_returns_each_lasting_image_once_while_others_come_and_go() {
    for order in [
        "",
        "name desc",
        "created_at",
        "last_modified desc, name",
        "digest",
    ] {
        let images = service().await;
        let mut lasting = BTreeSet::new();
        for i in 0..12 {
            lasting.insert(
                push(
                    &images,
                    &format!("crp1/r{}", i % 4),
                    &format!("keep{i}"),
                    None,
                )
                .await
                .id,
            );
        }
        let mut doomed: Vec<String> = Vec::new();
        for i in 0..6 {
            doomed.push(
                push(
                    &images,
                    &format!("crp1/r{}", i % 4),
                    &format!("doomed{i}"),
                    None,
                )
                .await
                .id,
            );
        }
        let request = ListImagesRequest {
            page_size: 3,
            order_by: order.into(),
            ..list(("registry", "crp1"))
        };
        let seen = walk(&images, request, async |page| {
            // Others come and go between pages: deletions (including, at times, an image the
            // token stops at) and pushes that sort anywhere.
            if let Some(id) = doomed.pop() {
                images
                    .store()
                    .delete(&id, yc_proto_types::google::protobuf::Timestamp::now())
                    .await
                    .unwrap_or_default();
            }
            push(
                &images,
                &format!("crp1/r{page}"),
                &format!("new{page}"),
                None,
            )
            .await;
        })
        .await
        .unwrap_or_else(|e| panic!("{order}: {}", e.message));
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{order}: an image came twice");
        assert!(
            lasting.is_subset(&unique),
            "{order}: a lasting image was missed"
        );
    }
}

#[tokio::test]
async fn page_tokens_and_sizes_are_checked() {
    let images = service().await;
    for i in 0..5 {
        push(&images, "crp1/a", &format!("{i}"), None).await;
    }
    let first = images
        .list(
            &ListImagesRequest {
                page_size: 2,
                ..list(("registry", "crp1"))
            },
            &Caller::system(),
        )
        .await
        .unwrap();
    assert_eq!(first.images.len(), 2);
    assert!(!first.next_page_token.is_empty() && first.next_page_token.len() <= 100);

    let other_query = ListImagesRequest {
        page_token: first.next_page_token.clone(),
        ..list(("registry", "crp2"))
    };
    let error = images
        .list(&other_query, &Caller::system())
        .await
        .err()
        .unwrap_or_default();
    assert!(
        error.message.starts_with(
            "Request validation error: page_token: was not made by this server for this query"
        ),
        "{}",
        error.message
    );

    let altered = ListImagesRequest {
        page_token: format!("x{}", &first.next_page_token[1..]),
        ..list(("registry", "crp1"))
    };
    assert_eq!(
        images
            .list(&altered, &Caller::system())
            .await
            .err()
            .map(|e| e.grpc_code()),
        Some(tonic::Code::InvalidArgument)
    );

    // 0 means 100; the bounds of page_size are 0 and 1000.
    let all = images
        .list(&list(("registry", "crp1")), &Caller::system())
        .await
        .unwrap_or_default();
    assert_eq!((all.images.len(), all.next_page_token.as_str()), (5, ""));
    let max = images
        .list(
            &ListImagesRequest {
                page_size: 1000,
                ..list(("registry", "crp1"))
            },
            &Caller::system(),
        )
        .await;
    assert!(max.is_ok());
    let over = images
        .list(
            &ListImagesRequest {
                page_size: 1001,
                ..list(("registry", "crp1"))
            },
            &Caller::system(),
        )
        .await;
    assert_eq!(
        over.err().map(|e| e.message).as_deref(),
        Some("Request validation error: page_size: must be between 0 and 1000")
    );
}

#[tokio::test]
async fn validation_rules_hold_at_their_boundaries() {
    let images = service().await;
    let get = |id: String| {
        let images = images.clone();
        async move {
            images
                .get(&GetImageRequest { image_id: id }, &Caller::system())
                .await
                .err()
                .map(|e| (e.grpc_code(), e.message))
        }
    };
    let fifty = "c".repeat(50);
    assert_eq!(
        get(fifty.clone()).await,
        Some((tonic::Code::NotFound, format!("Image {fifty} not found")))
    );
    assert_eq!(
        get("c".repeat(51)).await,
        Some((
            tonic::Code::InvalidArgument,
            "Request validation error: image_id: length must be at most 50".into()
        ))
    );
    assert_eq!(
        get(String::new()).await,
        Some((
            tonic::Code::InvalidArgument,
            "Request validation error: image_id: is required".into()
        ))
    );

    let message = |request: ListImagesRequest| {
        let images = images.clone();
        async move {
            images
                .list(&request, &Caller::system())
                .await
                .err()
                .map(|e| e.message)
        }
    };
    // 50 characters are taken (then the registry is looked for), 51 are not.
    assert_eq!(
        message(list(("registry", &"r".repeat(50)))).await,
        Some(format!("Registry {} not found", "r".repeat(50)))
    );
    assert_eq!(
        message(list(("registry", &"r".repeat(51))))
            .await
            .as_deref(),
        Some("Request validation error: registry_id: length must be at most 50")
    );
    assert_eq!(
        message(list(("folder", &"f".repeat(51)))).await.as_deref(),
        Some("Request validation error: folder_id: length must be at most 50")
    );
    assert_eq!(
        message(list(("repository", "crp1/Bad"))).await.as_deref(),
        Some(
            "Request validation error: repository_name: must match the pattern |[a-z0-9]+(?:[._-][a-z0-9]+)*(/([a-z0-9]+(?:[._-][a-z0-9]+)*))*"
        )
    );
    let filter = |n: usize| ListImagesRequest {
        filter: "x".repeat(n),
        ..list(("registry", "crp1"))
    };
    assert_eq!(
        message(filter(1001)).await.as_deref(),
        Some("Request validation error: filter: length must be at most 1000")
    );
    let token = |n: usize| ListImagesRequest {
        page_token: "x".repeat(n),
        ..list(("registry", "crp1"))
    };
    assert_eq!(
        message(token(101)).await.as_deref(),
        Some("Request validation error: page_token: length must be at most 100")
    );
    let order = |n: usize| ListImagesRequest {
        order_by: "x".repeat(n),
        ..list(("registry", "crp1"))
    };
    assert_eq!(
        message(order(101)).await.as_deref(),
        Some("Request validation error: order_by: length must be at most 100")
    );
}

#[tokio::test]
async fn delete_is_an_operation_after_which_the_image_is_gone() {
    let images = service().await;
    let doomed = push(&images, "crp1/app", "doomed", Some("latest")).await;
    let sibling = push(&images, "crp1/app", "sibling", Some("stable")).await;
    let op = images
        .delete(
            &DeleteImageRequest {
                image_id: doomed.id.clone(),
            },
            &Caller::system(),
        )
        .await
        .unwrap();
    assert!(op.id.starts_with("crp"));
    assert_eq!(op.description, "Delete image");
    let done = wait(&images, &op).await;
    let typed = TypedOperation::<DeleteImageMetadata, Empty>::from_operation(&done).unwrap();
    assert_eq!(typed.metadata.map(|m| m.image_id), Some(doomed.id.clone()));
    assert_eq!(typed.result, Some(Ok(Empty {})));

    let get = images
        .get(
            &GetImageRequest {
                image_id: doomed.id.clone(),
            },
            &Caller::system(),
        )
        .await
        .err()
        .unwrap_or_default();
    assert_eq!(get.message, format!("Image {} not found", doomed.id));
    let listed = images
        .list(&list(("repository", "crp1/app")), &Caller::system())
        .await
        .unwrap_or_default()
        .images;
    let listed_ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(listed_ids, [sibling.id.as_str()]);
    // The shared base layer's blob is the sibling's still, unchanged.
    assert_eq!(listed[0].layers, sibling.layers);
    assert_eq!(listed[0].tags, ["stable"]);
    // The tag went with the image: pushing "latest" elsewhere moves nothing.
    let again = images
        .delete(
            &DeleteImageRequest {
                image_id: doomed.id.clone(),
            },
            &Caller::system(),
        )
        .await;
    assert_eq!(
        again.err().map(|e| e.grpc_code()),
        Some(tonic::Code::NotFound)
    );
}

#[tokio::test]
async fn a_layout_imports_only_when_every_blob_verifies() {
    let images = service().await;
    let dir = tempfile::tempdir().unwrap();
    let image = TestImage::new("layout", &[("etc/hostname", b"test\n")]);
    image.write_layout(dir.path(), "1.0");
    let imported = images
        .import_layout(dir.path(), "crp1/imported", Some("1.0"), None)
        .await
        .unwrap();
    assert_eq!(imported.digest, image.digest());
    assert_eq!(imported.tags, ["1.0"]);

    let bad = tempfile::tempdir().unwrap();
    let broken = TestImage::new("broken", &[("x", b"x")]);
    broken.write_layout(bad.path(), "t");
    std::fs::write(
        TestImage::blob_path(bad.path(), &broken.layers[0]),
        b"tampered",
    )
    .unwrap();
    let error = images
        .import_layout(bad.path(), "crp1/broken", Some("t"), None)
        .await
        .err()
        .unwrap_or_default();
    assert_eq!(error.grpc_code(), tonic::Code::InvalidArgument);
    assert!(
        error.message.contains("its content has digest"),
        "{}",
        error.message
    );
    let stored = images
        .list(&list(("repository", "crp1/broken")), &Caller::system())
        .await
        .unwrap_or_default();
    assert!(
        stored.images.is_empty(),
        "nothing is stored from a layout that does not verify"
    );
}
