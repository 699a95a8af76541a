//! The Compute image lifecycle in-process: create from a URI (qcow2, raw, failing, oversized),
//! from another image, Get, GetLatestByFamily, List, Update, Delete, ListOperations.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::get as route_get;
use yc_compute_image::source::{FetchPolicy, qcow2_virtual_size};
use yc_compute_image::{Caller, ComputeImages, SqlComputeImageStore};
use yc_operations::{MemoryOperationStore, OperationRunner};
use yc_proto_types::google::protobuf::{Any, FieldMask};
use yc_proto_types::yandex::cloud::compute::v1::create_image_request::Source;
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageLatestByFamilyRequest, Image,
    ListImageOperationsRequest, ListImagesRequest, Os, UpdateImageRequest, image, os,
};
use yc_proto_types::yandex::cloud::operation::{Operation, operation};

use crate::support::*;

#[test]
fn a_qcow2_header_gives_the_virtual_size() {
    assert_eq!(qcow2_virtual_size(&qcow2(5 << 30)), Some(5 << 30));
    assert_eq!(
        qcow2_virtual_size(b"not an image at all, just text here"),
        None
    );
    assert_eq!(qcow2_virtual_size(b"QFI\xfb"), None);
}

#[tokio::test]
async fn create_from_a_qcow2_uri() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let request = CreateImageRequest {
        family: "ubuntu".into(),
        labels: BTreeMap::from([("env".into(), "test".into())]),
        ..create(
            "from-qcow2",
            Source::Uri(format!("http://{addr}/disk.qcow2")),
        )
    };
    let op = images.create(&request, &Caller::system()).await.unwrap();
    assert!(!op.done);
    assert!(op.id.starts_with("fd8"));
    // Visible at once, CREATING, with LINUX as the default OS.
    let creating = get(&images, &image_id(&op)).await.unwrap();
    assert_eq!(creating.status, image::Status::Creating as i32);
    assert_eq!(creating.os.map(|o| o.r#type), Some(os::Type::Linux as i32));

    let ready = response(&done(&images, &op).await).unwrap();
    assert_eq!(ready.status, image::Status::Ready as i32);
    assert_eq!(ready.size, GIB);
    assert_eq!(ready.storage_size, 512);
    assert_eq!(ready.min_disk_size, GIB);
    assert_eq!(ready.labels.get("env").map(String::as_str), Some("test"));
    assert_eq!(get(&images, &ready.id).await.ok(), Some(ready));
}

#[tokio::test]
async fn create_from_a_raw_uri_and_then_from_that_image() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let raw = created(
        &images,
        CreateImageRequest {
            os: Some(Os {
                r#type: os::Type::Windows as i32,
                nvidia: None,
            }),
            product_ids: vec!["f2elicense".into()],
            ..create("raw", Source::Uri(format!("http://{addr}/disk.raw")))
        },
    )
    .await;
    assert_eq!(
        (raw.size, raw.storage_size, raw.min_disk_size),
        (3 << 20, 3 << 20, 4 << 20)
    );

    let copy = created(&images, create("copy", Source::ImageId(raw.id.clone()))).await;
    assert_ne!(copy.id, raw.id);
    assert_eq!(
        (copy.size, copy.storage_size, copy.min_disk_size),
        (raw.size, raw.storage_size, raw.min_disk_size)
    );
    assert_eq!(copy.os, raw.os);
    assert_eq!(copy.product_ids, raw.product_ids);
}

#[tokio::test]
async fn sources_that_fail_leave_an_image_in_error() {
    let addr = files().await;
    let images = service(1 << 20).await;
    for (name, path, code) in [
        ("missing", "nothing-here", tonic::Code::FailedPrecondition),
        ("oversized", "big.raw", tonic::Code::InvalidArgument),
    ] {
        let (error, left) = failed_create(&images, name, format!("http://{addr}/{path}")).await;
        assert_eq!(error.grpc_code(), code, "{name}: {}", error.message);
        assert_eq!(left.status, image::Status::Error as i32, "{name}");
    }
}

#[tokio::test]
async fn sources_refused_before_anything_is_stored() {
    let images = service(1 << 20).await;
    let error = |request: CreateImageRequest| {
        let images = images.clone();
        async move {
            images
                .create(&request, &Caller::system())
                .await
                .err()
                .map(|e| (e.grpc_code(), e.message))
        }
    };
    assert_eq!(
        error(create("a", Source::DiskId("epdnosuchdisk".into()))).await,
        Some((tonic::Code::NotFound, "Disk epdnosuchdisk not found".into()))
    );
    assert_eq!(
        error(create("a", Source::SnapshotId("fd8nosnap".into()))).await,
        Some((tonic::Code::NotFound, "Snapshot fd8nosnap not found".into()))
    );
    assert_eq!(
        error(create("a", Source::ImageId("fd8nosuchimage".into()))).await,
        Some((
            tonic::Code::NotFound,
            "Image fd8nosuchimage not found".into()
        ))
    );
    let outside = error(create("a", Source::Uri("http://10.1.2.3/disk.raw".into()))).await;
    assert_eq!(outside.map(|e| e.0), Some(tonic::Code::PermissionDenied));
    let scheme = error(create("a", Source::Uri("file:///etc/passwd".into()))).await;
    assert_eq!(scheme.map(|e| e.0), Some(tonic::Code::InvalidArgument));
    let none = images
        .list(
            &ListImagesRequest {
                folder_id: FOLDER.into(),
                ..Default::default()
            },
            &Caller::system(),
        )
        .await;
    assert_eq!(none.map(|r| r.images.len()).ok(), Some(0));
}

#[tokio::test]
async fn names_are_unique_in_a_folder_and_min_disk_size_fits_the_source() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let raw = created(
        &images,
        create("taken", Source::Uri(format!("http://{addr}/disk.raw"))),
    )
    .await;
    let again = images
        .create(
            &create("taken", Source::ImageId(raw.id.clone())),
            &Caller::system(),
        )
        .await;
    assert_eq!(
        again.err().map(|e| e.grpc_code()),
        Some(tonic::Code::AlreadyExists)
    );
    let elsewhere = CreateImageRequest {
        folder_id: "b1gother".into(),
        ..create("taken", Source::ImageId(raw.id.clone()))
    };
    assert!(images.create(&elsewhere, &Caller::system()).await.is_ok());

    let too_small = CreateImageRequest {
        min_disk_size: 4 << 20,
        ..create("small", Source::ImageId(raw.id.clone()))
    };
    assert!(
        images.create(&too_small, &Caller::system()).await.is_ok(),
        "4 MiB fits a 3 MiB image"
    );
    let qcow = created(
        &images,
        create("big", Source::Uri(format!("http://{addr}/disk.qcow2"))),
    )
    .await;
    let below = CreateImageRequest {
        min_disk_size: GIB - (4 << 20),
        ..create("below", Source::ImageId(qcow.id))
    };
    let error = images
        .create(&below, &Caller::system())
        .await
        .err()
        .unwrap_or_default();
    assert_eq!(
        error.message,
        format!(
            "Request validation error: min_disk_size: must be at least {GIB}, the size the source needs"
        )
    );
}

#[tokio::test]
async fn latest_by_family_is_the_newest_ready_image() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let uri = || Source::Uri(format!("http://{addr}/disk.raw"));
    let old = created(
        &images,
        CreateImageRequest {
            family: "fam".into(),
            ..create("old", uri())
        },
    )
    .await;
    let new = created(
        &images,
        CreateImageRequest {
            family: "fam".into(),
            ..create("new", uri())
        },
    )
    .await;
    // A newer image that failed does not count.
    let op = images
        .create(
            &CreateImageRequest {
                family: "fam".into(),
                ..create("broken", Source::Uri(format!("http://{addr}/none")))
            },
            &Caller::system(),
        )
        .await
        .unwrap();
    done(&images, &op).await;
    let latest = |family: &str| {
        let images = images.clone();
        let request = GetImageLatestByFamilyRequest {
            folder_id: FOLDER.into(),
            family: family.into(),
        };
        async move {
            images
                .latest_by_family(&request, &Caller::system())
                .await
                .map(|i| i.id)
        }
    };
    assert_eq!(latest("fam").await, Ok(new.id.clone()));
    assert_ne!(old.id, new.id);
    let missing = latest("nofamily").await.err().unwrap_or_default();
    assert_eq!(missing.grpc_code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn list_filters_orders_and_pages() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let mut made = Vec::new();
    for (name, family) in [("c", "one"), ("a", "two"), ("b", "one"), ("d", "two")] {
        made.push(
            created(
                &images,
                CreateImageRequest {
                    family: family.into(),
                    ..create(name, Source::Uri(format!("http://{addr}/disk.raw")))
                },
            )
            .await,
        );
    }
    let names = |filter: &str, order: &str| {
        let images = images.clone();
        let request = ListImagesRequest {
            folder_id: FOLDER.into(),
            filter: filter.into(),
            order_by: order.into(),
            ..Default::default()
        };
        async move {
            images
                .list(&request, &Caller::system())
                .await
                .map(|r| r.images.into_iter().map(|i| i.name).collect::<Vec<_>>())
                .map_err(|e| e.message)
        }
    };
    assert_eq!(
        names("", "name").await,
        Ok(vec!["a".into(), "b".into(), "c".into(), "d".into()])
    );
    assert_eq!(
        names("", "name desc").await,
        Ok(vec!["d".into(), "c".into(), "b".into(), "a".into()])
    );
    assert_eq!(
        names("", "createdAt desc").await,
        Ok(vec!["d".into(), "b".into(), "a".into(), "c".into()])
    );
    assert_eq!(
        names(r#"family = "one""#, "name").await,
        Ok(vec!["b".into(), "c".into()])
    );
    assert_eq!(
        names(r#"status = "READY" AND family != 'one'"#, "name").await,
        Ok(vec!["a".into(), "d".into()])
    );
    assert_eq!(
        names(
            &format!(r#"id IN ("{}", "{}")"#, made[0].id, made[3].id),
            "name"
        )
        .await,
        Ok(vec!["c".into(), "d".into()])
    );
    assert_eq!(names(r#"status = "CREATING""#, "").await, Ok(vec![]));
    let mut by_id: Vec<_> = made
        .iter()
        .map(|i| (i.id.clone(), i.name.clone()))
        .collect();
    by_id.sort();
    assert_eq!(
        names("", "").await,
        Ok(by_id.into_iter().map(|(_, n)| n).collect()),
        "the default order is id"
    );
    assert!(names("size = '1'", "").await.is_err());

    let mut request = ListImagesRequest {
        folder_id: FOLDER.into(),
        page_size: 3,
        order_by: "name".into(),
        ..Default::default()
    };
    let first = images
        .list(&request, &Caller::system())
        .await
        .unwrap_or_default();
    assert_eq!(first.images.len(), 3);
    request.page_token = first.next_page_token;
    let second = images
        .list(&request, &Caller::system())
        .await
        .unwrap_or_default();
    assert_eq!(
        second
            .images
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        ["d"]
    );
    assert_eq!(second.next_page_token, "");
}

#[tokio::test]
async fn update_changes_the_masked_fields_only() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let original = created(
        &images,
        CreateImageRequest {
            description: "before".into(),
            labels: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]),
            ..create("orig", Source::Uri(format!("http://{addr}/disk.raw")))
        },
    )
    .await;
    let update = |request: UpdateImageRequest| {
        let images = images.clone();
        async move {
            let op = images.update(&request, &Caller::system()).await?;
            response(&done(&images, &op).await)
        }
    };
    let base = UpdateImageRequest {
        image_id: original.id.clone(),
        name: "renamed".into(),
        description: "after".into(),
        labels: BTreeMap::from([("c".into(), "3".into())]),
        ..Default::default()
    };
    let renamed = update(UpdateImageRequest {
        update_mask: Some(FieldMask::new(["name"])),
        ..base.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.description.as_str()),
        ("renamed", "before")
    );
    let relabelled = update(UpdateImageRequest {
        update_mask: Some(FieldMask::new(["labels"])),
        ..base.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        relabelled.labels,
        BTreeMap::from([("c".into(), "3".into())]),
        "labels replace the whole map"
    );
    let unmasked = update(UpdateImageRequest {
        description: "set".into(),
        ..UpdateImageRequest {
            image_id: original.id.clone(),
            ..Default::default()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        (unmasked.description.as_str(), unmasked.name.as_str()),
        ("set", "renamed"),
        "no mask: the fields set"
    );
    let unknown = update(UpdateImageRequest {
        update_mask: Some(FieldMask::new(["family"])),
        ..base.clone()
    })
    .await
    .err()
    .unwrap_or_default();
    assert_eq!(unknown.grpc_code(), tonic::Code::InvalidArgument);
    assert!(
        unknown
            .message
            .starts_with("Request validation error: update_mask: \"family\""),
        "{}",
        unknown.message
    );
    let small = update(UpdateImageRequest {
        update_mask: Some(FieldMask::new(["min_disk_size"])),
        min_disk_size: 4 << 20,
        ..base
    })
    .await;
    assert_eq!(small.map(|i| i.min_disk_size).ok(), Some(4 << 20));
    assert_eq!(
        get(&images, &original.id)
            .await
            .map(|i| i.name)
            .ok()
            .as_deref(),
        Some("renamed")
    );
}

#[tokio::test]
async fn delete_goes_through_deleting_and_operations_are_listed_newest_first() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let image = created(
        &images,
        create("doomed", Source::Uri(format!("http://{addr}/disk.raw"))),
    )
    .await;
    let update = UpdateImageRequest {
        image_id: image.id.clone(),
        description: "x".into(),
        ..Default::default()
    };
    let op = images.update(&update, &Caller::system()).await.unwrap();
    done(&images, &op).await;

    let operations = images
        .list_operations(
            &ListImageOperationsRequest {
                image_id: image.id.clone(),
                page_size: 1,
                ..Default::default()
            },
            &Caller::system(),
        )
        .await
        .unwrap();
    assert_eq!(operations.operations[0].description, "Update image");
    let rest = images
        .list_operations(
            &ListImageOperationsRequest {
                image_id: image.id.clone(),
                page_size: 1,
                page_token: operations.next_page_token,
            },
            &Caller::system(),
        )
        .await
        .unwrap();
    assert_eq!(rest.operations[0].description, "Create image");

    let op = images
        .delete(
            &DeleteImageRequest {
                image_id: image.id.clone(),
            },
            &Caller::system(),
        )
        .await
        .unwrap();
    let finished = done(&images, &op).await;
    assert!(
        matches!(&finished.result, Some(operation::Result::Response(any)) if any.type_url.ends_with("google.protobuf.Empty"))
    );
    assert_eq!(
        get(&images, &image.id).await.err().map(|e| e.grpc_code()),
        Some(tonic::Code::NotFound)
    );
    let again = images
        .delete(
            &DeleteImageRequest {
                image_id: image.id.clone(),
            },
            &Caller::system(),
        )
        .await;
    assert_eq!(
        again.err().map(|e| e.message),
        Some(format!("Image {} not found", image.id))
    );
}

#[tokio::test]
async fn a_repeated_create_with_its_idempotency_key_stores_one_image() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let caller = Caller {
        subject: "ajeuser".into(),
        idempotency_key: Some("0f3c1d52-8a1b-4e0e-9d7c-2b6b8f4e5a10".into()),
        ..Caller::system()
    };
    let request = create("once", Source::Uri(format!("http://{addr}/disk.raw")));
    let first = images.create(&request, &caller).await.unwrap();
    let second = images.create(&request, &caller).await.unwrap();
    assert_eq!(first.id, second.id);
    let listed = images
        .list(
            &ListImagesRequest {
                folder_id: FOLDER.into(),
                ..Default::default()
            },
            &Caller::system(),
        )
        .await
        .unwrap_or_default();
    assert_eq!(listed.images.len(), 1);
    let other = images
        .create(
            &create("other", Source::Uri(format!("http://{addr}/disk.raw"))),
            &caller,
        )
        .await;
    assert_eq!(
        other.err().map(|e| e.grpc_code()),
        Some(tonic::Code::InvalidArgument)
    );
    let _ = Any::default();
}

#[tokio::test]
async fn latest_by_family_skips_other_statuses_and_breaks_ties_by_id() {
    use yc_compute_image::store::ComputeImageStore;
    use yc_proto_types::google::protobuf::Timestamp;
    let store = SqlComputeImageStore::in_memory().await.unwrap();
    let rows = [
        ("fd8aaaaaaaaaaaaaaaaa", image::Status::Ready, 100),
        ("fd8ccccccccccccccccc", image::Status::Ready, 100),
        ("fd8bbbbbbbbbbbbbbbbb", image::Status::Ready, 100),
        ("fd8old00000000000000", image::Status::Ready, 50),
        ("fd8zzzzzzzzzzzzzzzzz", image::Status::Creating, 200),
        ("fd8yyyyyyyyyyyyyyyyy", image::Status::Error, 200),
        ("fd8xxxxxxxxxxxxxxxxx", image::Status::Deleting, 200),
    ];
    for (id, status, seconds) in rows {
        let image = Image {
            id: id.into(),
            folder_id: FOLDER.into(),
            family: "fam".into(),
            status: status as i32,
            created_at: Some(Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        };
        store.insert(&image).await.unwrap();
    }
    let latest = store.latest_by_family(FOLDER, "fam").await.unwrap();
    assert_eq!(
        latest.map(|i| i.id).as_deref(),
        Some("fd8ccccccccccccccccc")
    );
    assert_eq!(
        store
            .latest_by_family("b1gother", "fam")
            .await
            .ok()
            .flatten(),
        None
    );
}

/// A qcow2 image made by qemu-img, the tool that makes real ones.
#[tokio::test]
async fn create_from_a_qcow2_made_by_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("3G")
        .status();
    if !made.is_ok_and(|s| s.success()) {
        assert!(
            !crate::support::required("YC_REQUIRE_QEMU_IMG"),
            "YC_REQUIRE_QEMU_IMG=1 or CI=true, but qemu-img cannot make an image"
        );
        eprintln!(
            "SKIPPED: qemu-img is not installed; the constructed qcow2 header test still runs"
        );
        return;
    }
    let bytes = std::fs::read(&path).unwrap();
    let length = bytes.len() as i64;
    let router = Router::new().route(
        "/real.qcow2",
        route_get(move || async move { bytes.clone() }),
    );
    let addr = serve(router).await;
    let images = service(64 << 20).await;
    let image = created(
        &images,
        create("real", Source::Uri(format!("http://{addr}/real.qcow2"))),
    )
    .await;
    assert_eq!(
        (image.size, image.storage_size, image.min_disk_size),
        (3 * GIB, length, 3 * GIB)
    );
}

#[tokio::test]
async fn a_delete_that_cannot_start_leaves_the_image_as_it_was() {
    let addr = files().await;
    let images = service(64 << 20).await;
    let image = created(
        &images,
        create("kept", Source::Uri(format!("http://{addr}/disk.raw"))),
    )
    .await;
    let caller = Caller {
        subject: String::new(),
        idempotency_key: Some("not-a-uuid".into()),
        ..Caller::system()
    };
    let refused = images
        .delete(
            &DeleteImageRequest {
                image_id: image.id.clone(),
            },
            &caller,
        )
        .await;
    assert_eq!(
        refused.err().map(|e| e.grpc_code()),
        Some(tonic::Code::InvalidArgument)
    );
    assert_eq!(
        get(&images, &image.id).await.map(|i| i.status).ok(),
        Some(image::Status::Ready as i32)
    );
}

#[tokio::test]
async fn an_interrupted_create_is_resumed_after_a_restart() {
    use prost::Message;
    use yc_compute_image::store::ComputeImageStore;
    use yc_operations::{NewOperation, OperationStore, Resumers};
    use yc_proto_types::yandex::cloud::compute::v1::CreateImageMetadata;

    let addr = files().await;
    // What a process left when it died mid-Create: the image CREATING, the operation not done,
    // owned by a runner that holds no lease.
    let store = Arc::new(SqlComputeImageStore::in_memory().await.unwrap());
    let operations = Arc::new(MemoryOperationStore::new());
    let request = create("resumed", Source::Uri(format!("http://{addr}/disk.raw")));
    let image = Image {
        id: "fd8resumedimage00000".into(),
        folder_id: FOLDER.into(),
        name: "resumed".into(),
        status: image::Status::Creating as i32,
        created_at: Some(yc_proto_types::google::protobuf::Timestamp::now()),
        ..Default::default()
    };
    store.insert(&image).await.unwrap();
    let operation = Operation {
        id: "fd8resumedoperation0".into(),
        description: "Create image".into(),
        metadata: Some(Any::from_msg(&CreateImageMetadata {
            image_id: image.id.clone(),
        })),
        ..Default::default()
    };
    operations
        .create(NewOperation {
            operation: operation.clone(),
            method: "yandex.cloud.compute.v1.ImageService.Create".into(),
            resource_id: image.id.clone(),
            request: request.encode_to_vec(),
            idempotency_key: None,
            owner: "rundead".into(),
        })
        .await
        .unwrap();

    let runner = OperationRunner::new(operations);
    let images = ComputeImages::new(store, runner.clone(), FetchPolicy::default());
    let recovery = runner
        .recover(images.resumers(Resumers::new()))
        .await
        .unwrap();
    assert_eq!(recovery.resumed, std::slice::from_ref(&operation.id));
    let ready = response(&done(&images, &operation).await).unwrap();
    assert_eq!(
        (ready.id.as_str(), ready.status, ready.size),
        (image.id.as_str(), image::Status::Ready as i32, 3 << 20)
    );
}
