//! Every validation rule of the Compute ImageService at its boundary, through the service:
//! the last value allowed passes validation, the first beyond it is INVALID_ARGUMENT naming
//! the field.

use std::collections::BTreeMap;
use std::sync::Arc;

use yc_compute_image::source::FetchPolicy;
use yc_compute_image::{Caller, ComputeImages, SqlComputeImageStore};
use yc_operations::{MemoryOperationStore, OperationRunner};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::compute::v1::create_image_request::Source;
use yc_proto_types::yandex::cloud::compute::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageLatestByFamilyRequest, GetImageRequest,
    ListImageOperationsRequest, ListImagesRequest, UpdateImageRequest,
};

async fn service() -> ComputeImages {
    let store = SqlComputeImageStore::in_memory().await.unwrap();
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    ComputeImages::new(Arc::new(store), runner, FetchPolicy::default())
}

/// The validation message of a failed call, or "passes" when the call got past validation
/// (it may fail later for another reason, such as NOT_FOUND).
fn verdict<T>(result: Result<T, Status>) -> String {
    match result {
        Err(status) if status.message.starts_with("Request validation error: ") => {
            assert_eq!(status.grpc_code(), tonic::Code::InvalidArgument);
            status
                .message
                .trim_start_matches("Request validation error: ")
                .to_owned()
        }
        _ => "passes".into(),
    }
}

fn create() -> CreateImageRequest {
    CreateImageRequest {
        folder_id: "b1gfolder".into(),
        source: Some(Source::DiskId("epd".into())),
        ..Default::default()
    }
}

#[tokio::test]
async fn request_rules_at_their_boundaries() {
    let s = service().await;
    let caller = Caller::system();
    let labels = |n: usize| {
        (0..n)
            .map(|i| (format!("k{i}"), "v".to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "image_id 50",
            verdict(
                s.get(
                    &GetImageRequest {
                        image_id: "a".repeat(50),
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "passes",
        ),
        (
            "image_id 51",
            verdict(
                s.get(
                    &GetImageRequest {
                        image_id: "a".repeat(51),
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "image_id: length must be at most 50",
        ),
        (
            "image_id empty",
            verdict(s.get(&GetImageRequest::default(), &Caller::system()).await),
            "image_id: is required",
        ),
        (
            "delete image_id 51",
            verdict(
                s.delete(
                    &DeleteImageRequest {
                        image_id: "a".repeat(51),
                    },
                    &caller,
                )
                .await,
            ),
            "image_id: length must be at most 50",
        ),
        (
            "family 63",
            verdict(
                s.latest_by_family(
                    &GetImageLatestByFamilyRequest {
                        folder_id: "b1g".into(),
                        family: format!("a{}", "b".repeat(62)),
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "passes",
        ),
        (
            "family 64",
            verdict(
                s.latest_by_family(
                    &GetImageLatestByFamilyRequest {
                        folder_id: "b1g".into(),
                        family: format!("a{}", "b".repeat(63)),
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "family: must match the pattern |[a-z][-a-z0-9]{1,61}[a-z0-9]",
        ),
        (
            "family 2",
            verdict(
                s.latest_by_family(
                    &GetImageLatestByFamilyRequest {
                        folder_id: "b1g".into(),
                        family: "ab".into(),
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "family: must match the pattern |[a-z][-a-z0-9]{1,61}[a-z0-9]",
        ),
        (
            "folder 51",
            verdict(
                s.list(
                    &ListImagesRequest {
                        folder_id: "f".repeat(51),
                        ..Default::default()
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "folder_id: length must be at most 50",
        ),
        (
            "folder missing",
            verdict(
                s.list(&ListImagesRequest::default(), &Caller::system())
                    .await,
            ),
            "folder_id: is required",
        ),
        (
            "page_size 1000",
            verdict(
                s.list(
                    &ListImagesRequest {
                        folder_id: "b1g".into(),
                        page_size: 1000,
                        ..Default::default()
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "passes",
        ),
        (
            "page_size 1001",
            verdict(
                s.list(
                    &ListImagesRequest {
                        folder_id: "b1g".into(),
                        page_size: 1001,
                        ..Default::default()
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "page_size: must be at most 1000",
        ),
        (
            "page_token 101",
            verdict(
                s.list(
                    &ListImagesRequest {
                        folder_id: "b1g".into(),
                        page_token: "t".repeat(101),
                        ..Default::default()
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "page_token: length must be at most 100",
        ),
        (
            "filter 1001",
            verdict(
                s.list(
                    &ListImagesRequest {
                        folder_id: "b1g".into(),
                        filter: " ".repeat(1001),
                        ..Default::default()
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "filter: length must be at most 1000",
        ),
        (
            "order_by 101",
            verdict(
                s.list(
                    &ListImagesRequest {
                        folder_id: "b1g".into(),
                        order_by: " ".repeat(101),
                        ..Default::default()
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "order_by: length must be at most 100",
        ),
        (
            "operations page_size 1001",
            verdict(
                s.list_operations(
                    &ListImageOperationsRequest {
                        image_id: "fd8".into(),
                        page_size: 1001,
                        ..Default::default()
                    },
                    &Caller::system(),
                )
                .await,
            ),
            "page_size: must be at most 1000",
        ),
        (
            "name 63",
            verdict(
                s.create(
                    &CreateImageRequest {
                        name: format!("a{}", "b".repeat(62)),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "passes",
        ),
        (
            "name 64",
            verdict(
                s.create(
                    &CreateImageRequest {
                        name: format!("a{}", "b".repeat(63)),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "name: must match the pattern |[a-z]([-_a-z0-9]{0,61}[a-z0-9])?",
        ),
        (
            "name ends with -",
            verdict(
                s.create(
                    &CreateImageRequest {
                        name: "ab-".into(),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "name: must match the pattern |[a-z]([-_a-z0-9]{0,61}[a-z0-9])?",
        ),
        (
            "description 256",
            verdict(
                s.create(
                    &CreateImageRequest {
                        description: "d".repeat(256),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "passes",
        ),
        (
            "description 257",
            verdict(
                s.create(
                    &CreateImageRequest {
                        description: "d".repeat(257),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "description: length must be at most 256",
        ),
        (
            "labels 64",
            verdict(
                s.create(
                    &CreateImageRequest {
                        labels: labels(64),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "passes",
        ),
        (
            "labels 65",
            verdict(
                s.create(
                    &CreateImageRequest {
                        labels: labels(65),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "labels: must have at most 64 elements",
        ),
        (
            "label key 63",
            verdict(
                s.create(
                    &CreateImageRequest {
                        labels: BTreeMap::from([("k".repeat(63), String::new())]),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "passes",
        ),
        (
            "label key 64",
            verdict(
                s.create(
                    &CreateImageRequest {
                        labels: BTreeMap::from([("k".repeat(64), String::new())]),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "labels: key \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\": length must be between 1 and 63",
        ),
        (
            "label value 64",
            verdict(
                s.create(
                    &CreateImageRequest {
                        labels: BTreeMap::from([("k".into(), "v".repeat(64))]),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "labels[k]: length must be at most 63",
        ),
        (
            "min_disk_size 4194303",
            verdict(
                s.create(
                    &CreateImageRequest {
                        min_disk_size: 4_194_303,
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "min_disk_size: must be between 4194304 and 4398046511104",
        ),
        (
            "min_disk_size 4194304",
            verdict(
                s.create(
                    &CreateImageRequest {
                        min_disk_size: 4_194_304,
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "passes",
        ),
        (
            "min_disk_size max",
            verdict(
                s.create(
                    &CreateImageRequest {
                        min_disk_size: 4_398_046_511_104,
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "passes",
        ),
        (
            "min_disk_size max+1",
            verdict(
                s.create(
                    &CreateImageRequest {
                        min_disk_size: 4_398_046_511_105,
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "min_disk_size: must be between 4194304 and 4398046511104",
        ),
        (
            "product id 50",
            verdict(
                s.create(
                    &CreateImageRequest {
                        product_ids: vec!["p".repeat(50)],
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "passes",
        ),
        (
            "product id 51",
            verdict(
                s.create(
                    &CreateImageRequest {
                        product_ids: vec!["p".into(), "p".repeat(51)],
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "product_ids[1]: length must be at most 50",
        ),
        (
            "source image id 51",
            verdict(
                s.create(
                    &CreateImageRequest {
                        source: Some(Source::ImageId("i".repeat(51))),
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "image_id: length must be at most 50",
        ),
        (
            "no source",
            verdict(
                s.create(
                    &CreateImageRequest {
                        source: None,
                        ..create()
                    },
                    &caller,
                )
                .await,
            ),
            "source: exactly one of image_id, disk_id, snapshot_id, uri must be set",
        ),
        (
            "update min_disk_size",
            verdict(
                s.update(
                    &UpdateImageRequest {
                        image_id: "fd8".into(),
                        min_disk_size: 1,
                        ..Default::default()
                    },
                    &caller,
                )
                .await,
            ),
            "min_disk_size: must be between 4194304 and 4398046511104",
        ),
        (
            "update name",
            verdict(
                s.update(
                    &UpdateImageRequest {
                        image_id: "fd8".into(),
                        name: "A".into(),
                        ..Default::default()
                    },
                    &caller,
                )
                .await,
            ),
            "name: must match the pattern |[a-z]([-_a-z0-9]{0,61}[a-z0-9])?",
        ),
    ];
    for (what, got, expected) in rows {
        assert_eq!(got, expected, "{what}");
    }
}
