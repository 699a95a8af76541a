//! The validation rules of `proto/`, enforced through `yc_proto_types::validate`, row by row.

use std::collections::BTreeMap;

use yc_proto_types::google::rpc::{BadRequest, Status};
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::compute::v1::{
    self as compute, CreateImageRequest, create_image_request::Source,
};
use yc_proto_types::yandex::cloud::containerregistry::v1 as registry;
use yc_proto_types::yandex::cloud::operation::GetOperationRequest;

fn create() -> CreateImageRequest {
    CreateImageRequest {
        folder_id: "b1gq0fdvmjb1o9b5ucrj".into(),
        name: "ubuntu-custom".into(),
        source: Some(Source::ImageId("fd8k3jq9f3bmv2a8tqvl".into())),
        ..Default::default()
    }
}

fn labels(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The message of the INVALID_ARGUMENT status, or "ok".
fn outcome(result: Result<(), Status>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(status) => {
            assert_eq!(status.grpc_code(), tonic::Code::InvalidArgument);
            status.message
        }
    }
}

#[test]
fn compute_requests() {
    let err = |what: &str| format!("Request validation error: {what}");
    let many: BTreeMap<String, String> =
        (0..65).map(|i| (format!("k{i}"), String::new())).collect();
    let rows: Vec<(&str, Result<(), Status>, String)> = vec![
        ("valid create", validate(&create()), "ok".into()),
        (
            "required id",
            validate(&compute::GetImageRequest::default()),
            err("image_id: is required"),
        ),
        (
            "id too long",
            validate(&compute::GetImageRequest {
                image_id: "a".repeat(51),
            }),
            err("image_id: length must be at most 50"),
        ),
        (
            "no source",
            validate(&CreateImageRequest {
                source: None,
                ..create()
            }),
            err("source: exactly one of image_id, disk_id, snapshot_id, uri must be set"),
        ),
        (
            "bad name",
            validate(&CreateImageRequest {
                name: "Ubuntu".into(),
                ..create()
            }),
            err("name: must match the pattern |[a-z]([-_a-z0-9]{0,61}[a-z0-9])?"),
        ),
        (
            "empty name is allowed",
            validate(&CreateImageRequest {
                name: String::new(),
                ..create()
            }),
            "ok".into(),
        ),
        (
            "description in characters, not bytes",
            validate(&CreateImageRequest {
                description: "я".repeat(256),
                ..create()
            }),
            "ok".into(),
        ),
        (
            "description too long",
            validate(&CreateImageRequest {
                description: "я".repeat(257),
                ..create()
            }),
            err("description: length must be at most 256"),
        ),
        (
            "too many labels",
            validate(&CreateImageRequest {
                labels: many,
                ..create()
            }),
            err("labels: must have at most 64 elements"),
        ),
        (
            "bad label key",
            validate(&CreateImageRequest {
                labels: labels(&[("Env", "prod")]),
                ..create()
            }),
            err(r#"labels: key "Env": must match the pattern [a-z][-_./\@0-9a-z]*"#),
        ),
        (
            "label value too long",
            validate(&CreateImageRequest {
                labels: labels(&[("env", &"p".repeat(64))]),
                ..create()
            }),
            err("labels[env]: length must be at most 63"),
        ),
        (
            "label value pattern",
            validate(&CreateImageRequest {
                labels: labels(&[("env", "Prod")]),
                ..create()
            }),
            err(r"labels[env]: must match the pattern [-_./\@0-9a-z]*"),
        ),
        (
            "labels that fit",
            validate(&CreateImageRequest {
                labels: labels(&[("a.b/c@d", ""), ("env", "prod-1")]),
                ..create()
            }),
            "ok".into(),
        ),
        (
            "min disk size too small",
            validate(&CreateImageRequest {
                min_disk_size: 4_194_303,
                ..create()
            }),
            err("min_disk_size: must be between 4194304 and 4398046511104"),
        ),
        (
            "min disk size unset",
            validate(&CreateImageRequest {
                min_disk_size: 0,
                ..create()
            }),
            "ok".into(),
        ),
        (
            "product id too long",
            validate(&CreateImageRequest {
                product_ids: vec!["a".into(), "b".repeat(51)],
                ..create()
            }),
            err("product_ids[1]: length must be at most 50"),
        ),
        (
            "family pattern",
            validate(&compute::GetImageLatestByFamilyRequest {
                folder_id: "b1g".into(),
                family: "a".into(),
            }),
            err("family: must match the pattern |[a-z][-a-z0-9]{1,61}[a-z0-9]"),
        ),
        (
            "list page size",
            validate(&compute::ListImagesRequest {
                folder_id: "b1g".into(),
                page_size: 1001,
                ..Default::default()
            }),
            err("page_size: must be at most 1000"),
        ),
        (
            "update labels",
            validate(&compute::UpdateImageRequest {
                image_id: "fd8".into(),
                labels: labels(&[("", "x")]),
                ..Default::default()
            }),
            err(r#"labels: key "": length must be between 1 and 63"#),
        ),
    ];
    for (what, result, expected) in rows {
        assert_eq!(outcome(result), expected, "{what}");
    }
}

#[test]
fn registry_and_operation_requests() {
    let err = |what: &str| format!("Request validation error: {what}");
    let list = registry::ListImagesRequest::default;
    let rows: Vec<(&str, Result<(), Status>, String)> = vec![
        ("empty list request", validate(&list()), "ok".into()),
        (
            "page size above 1000",
            validate(&registry::ListImagesRequest {
                page_size: 1001,
                ..list()
            }),
            err("page_size: must be between 0 and 1000"),
        ),
        (
            "negative page size",
            validate(&registry::ListImagesRequest {
                page_size: -1,
                ..list()
            }),
            err("page_size: must be between 0 and 1000"),
        ),
        (
            "repository name",
            validate(&registry::ListImagesRequest {
                repository_name: "crp1/Ubuntu".into(),
                ..list()
            }),
            err(
                "repository_name: must match the pattern |[a-z0-9]+(?:[._-][a-z0-9]+)*(/([a-z0-9]+(?:[._-][a-z0-9]+)*))*",
            ),
        ),
        (
            "nested repository name",
            validate(&registry::ListImagesRequest {
                repository_name: "crp1/ubuntu/base-image_2.x".into(),
                ..list()
            }),
            "ok".into(),
        ),
        (
            "filter too long",
            validate(&registry::ListImagesRequest {
                filter: "x".repeat(1001),
                ..list()
            }),
            err("filter: length must be at most 1000"),
        ),
        (
            "required image id",
            validate(&registry::DeleteImageRequest::default()),
            err("image_id: is required"),
        ),
        (
            "required operation id",
            validate(&GetOperationRequest::default()),
            err("operation_id: is required"),
        ),
    ];
    for (what, result, expected) in rows {
        assert_eq!(outcome(result), expected, "{what}");
    }
}

#[test]
fn every_violation_is_in_the_details_and_the_first_in_the_message() {
    let request = CreateImageRequest {
        folder_id: String::new(),
        name: "Bad".into(),
        source: None,
        ..Default::default()
    };
    let status = validate(&request).err().unwrap_or_default();
    let violations = status
        .detail::<BadRequest>()
        .unwrap_or_default()
        .field_violations;
    let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["source", "folder_id", "name"]);
    assert_eq!(
        status.message,
        "Request validation error: source: exactly one of image_id, disk_id, snapshot_id, uri must be set"
    );
}
