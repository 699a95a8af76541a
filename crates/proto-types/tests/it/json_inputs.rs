//! What JSON readers accept besides the canonical form, and what they reject, row by row.
//!
//! Readers take lowerCamelCase and snake_case names, int64 as a string or a number, enums by
//! name or number, timestamps with any offset, `null` as the default, and skip fields they do
//! not know; each accepted
//! input must then write back as the canonical JSON of the row.

use crate::fixtures::WireMessage;
use serde_json::{Value, json};
use yc_proto_types::google::protobuf::Any;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::compute::v1::{CreateImageRequest, Image, UpdateImageRequest};
use yc_proto_types::yandex::cloud::containerregistry::v1 as registry;
use yc_proto_types::yandex::cloud::operation::Operation;

/// Reads `input` as `M` and checks that it writes back as `canonical`.
fn reads_as<M: WireMessage>(input: &str, canonical: Value) {
    let message: M = serde_json::from_str(input)
        .unwrap_or_else(|e| panic!("{} rejected {input}: {e}", M::full_name()));
    let written = serde_json::to_value(&message)
        .unwrap_or_else(|e| panic!("{} cannot write {input}: {e}", M::full_name()));
    assert_eq!(written, canonical, "{} read {input}", M::full_name());
}

/// Reads `input` as `M` and checks that it is rejected with an error that says `why`.
fn rejects<M: WireMessage>(input: &str, why: &str) {
    match serde_json::from_str::<M>(input) {
        Ok(message) => panic!("{} accepted {input} as {message:?}", M::full_name()),
        Err(e) => assert!(
            e.to_string().contains(why),
            "{} rejected {input} with {e:?}, which does not say {why:?}",
            M::full_name()
        ),
    }
}

#[test]
fn snake_case_names() {
    reads_as::<Image>(
        r#"{"folder_id":"b1g","created_at":"2024-06-20T08:54:05Z","storage_size":"5",
            "min_disk_size":"7","product_ids":["p"],"kms_key":{"key_id":"k","version_id":"v"},
            "hardware_generation":{"legacy_features":{"pci_topology":"PCI_TOPOLOGY_V1"}}}"#,
        json!({"folderId":"b1g","createdAt":"2024-06-20T08:54:05Z","storageSize":"5",
               "minDiskSize":"7","productIds":["p"],"kmsKey":{"keyId":"k","versionId":"v"},
               "hardwareGeneration":{"legacyFeatures":{"pciTopology":"PCI_TOPOLOGY_V1"}}}),
    );
    reads_as::<registry::Image>(
        r#"{"compressed_size":10,"created_at":"2024-06-20T08:54:05.1Z"}"#,
        json!({"compressedSize":"10","createdAt":"2024-06-20T08:54:05.100Z"}),
    );
    reads_as::<UpdateImageRequest>(
        r#"{"image_id":"fd8","update_mask":"minDiskSize,labels"}"#,
        json!({"imageId":"fd8","updateMask":"minDiskSize,labels"}),
    );
}

#[test]
fn int64_as_string_or_number() {
    for (input, canonical) in [
        (json!(4718592000_i64), "4718592000"),
        (json!("4718592000"), "4718592000"),
        (json!(-5), "-5"),
        (json!("-5"), "-5"),
        (json!(i64::MAX), "9223372036854775807"),
        (json!("-9223372036854775808"), "-9223372036854775808"),
    ] {
        reads_as::<Image>(
            &json!({ "storageSize": input }).to_string(),
            json!({ "storageSize": canonical }),
        );
    }
    rejects::<Image>(r#"{"storageSize":"9223372036854775808"}"#, "");
    rejects::<Image>(r#"{"storageSize":"12abc"}"#, "");
    rejects::<Image>(r#"{"storageSize":true}"#, "");
}

#[test]
fn enums_by_name_or_number() {
    reads_as::<Image>(r#"{"status":"READY"}"#, json!({"status":"READY"}));
    reads_as::<Image>(r#"{"status":2}"#, json!({"status":"READY"}));
    reads_as::<Image>(r#"{"status":4}"#, json!({"status":"DELETING"}));
    reads_as::<Image>(r#"{"os":{"type":2}}"#, json!({"os":{"type":"WINDOWS"}}));
    // Numbers the schema does not know are kept as numbers.
    reads_as::<Image>(r#"{"status":42}"#, json!({"status":42}));
    reads_as::<Image>(r#"{"status":-7}"#, json!({"status":-7}));
    // The default value is not written.
    reads_as::<Image>(r#"{"status":"STATUS_UNSPECIFIED"}"#, json!({}));
    reads_as::<Image>(r#"{"status":0}"#, json!({}));
    rejects::<Image>(r#"{"status":"READYY"}"#, "READYY");
    rejects::<Image>(r#"{"status":"ready"}"#, "ready");
    rejects::<Image>(r#"{"status":2147483648}"#, "2147483648");
}

#[test]
fn timestamps_in_any_offset_come_out_in_utc() {
    for (input, canonical) in [
        ("2024-06-20T08:54:05Z", "2024-06-20T08:54:05Z"),
        ("2024-06-20T11:54:05.12+03:00", "2024-06-20T08:54:05.120Z"),
        ("2024-06-20T08:54:05.000Z", "2024-06-20T08:54:05Z"),
        ("2024-06-20T08:54:05.1204Z", "2024-06-20T08:54:05.120400Z"),
        (
            "2024-06-20T08:54:05.1204507Z",
            "2024-06-20T08:54:05.120450700Z",
        ),
        (
            "2024-06-20T03:54:05.120450789-05:00",
            "2024-06-20T08:54:05.120450789Z",
        ),
        ("1970-01-01T00:00:00+00:00", "1970-01-01T00:00:00Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        (
            "9999-12-31T23:59:59.999999999Z",
            "9999-12-31T23:59:59.999999999Z",
        ),
    ] {
        reads_as::<Image>(
            &json!({ "createdAt": input }).to_string(),
            json!({ "createdAt": canonical }),
        );
    }
    rejects::<Image>(r#"{"createdAt":"2024-06-20 08:54"}"#, "RFC 3339");
    rejects::<Image>(r#"{"createdAt":1718873645}"#, "RFC 3339");
    rejects::<Image>(r#"{"createdAt":"0000-12-31T23:59:59Z"}"#, "");
}

#[test]
fn unknown_fields_are_skipped() {
    reads_as::<Image>(
        r#"{"id":"fd8","someNewField":{"nested":[1,2,{"x":null}]},"another_one":7}"#,
        json!({"id":"fd8"}),
    );
    // Also inside an Any: the payload is read as its own message type.
    reads_as::<Operation>(
        r#"{"id":"op","metadata":{"@type":"type.googleapis.com/yandex.cloud.compute.v1.CreateImageMetadata","imageId":"fd8","progress":50}}"#,
        json!({"id":"op","metadata":{"@type":"type.googleapis.com/yandex.cloud.compute.v1.CreateImageMetadata","imageId":"fd8"}}),
    );
}

#[test]
fn null_is_the_default_value() {
    reads_as::<Image>(
        r#"{"id":null,"folderId":"b1g","storageSize":null,"status":null,"labels":null,
            "productIds":null,"createdAt":null,"os":null,"pooled":null,"hardwareGeneration":null}"#,
        json!({"folderId":"b1g"}),
    );
    reads_as::<CreateImageRequest>(r#"{"uri":null,"minDiskSize":null}"#, json!({}));
    reads_as::<Operation>(
        r#"{"metadata":null,"response":null,"done":null}"#,
        json!({}),
    );
}

#[test]
fn field_mask_is_one_camel_case_string() {
    reads_as::<UpdateImageRequest>(r#"{"updateMask":""}"#, json!({"updateMask":""}));
    reads_as::<UpdateImageRequest>(
        r#"{"updateMask":"name,description,minDiskSize,labels"}"#,
        json!({"updateMask":"name,description,minDiskSize,labels"}),
    );
    rejects::<UpdateImageRequest>(r#"{"updateMask":{"paths":["name"]}}"#, "comma-separated");
    rejects::<UpdateImageRequest>(r#"{"updateMask":"min_disk_size"}"#, "lowerCamelCase");
}

#[test]
fn any_names_its_type_and_rejects_types_it_does_not_know() {
    reads_as::<Operation>(
        r#"{"response":{"@type":"type.googleapis.com/google.protobuf.Empty"}}"#,
        json!({"response":{"@type":"type.googleapis.com/google.protobuf.Empty"}}),
    );
    reads_as::<Status>(
        r#"{"code":5,"message":"Image fd8 not found","details":[{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"r-1"}]}"#,
        json!({"code":5,"message":"Image fd8 not found","details":[{"@type":"type.googleapis.com/google.rpc.RequestInfo","requestId":"r-1"}]}),
    );
    rejects::<Operation>(
        r#"{"metadata":{"@type":"type.googleapis.com/yandex.cloud.compute.v1.NoSuchMessage"}}"#,
        "yandex.cloud.compute.v1.NoSuchMessage",
    );
    rejects::<Operation>(r#"{"metadata":{"imageId":"fd8"}}"#, "@type");
    rejects::<Operation>(r#"{"metadata":{"@type":42}}"#, "@type");
    rejects::<Operation>(
        r#"{"metadata":{"@type":"yandex.cloud.compute.v1.CreateImageMetadata"}}"#,
        "type.googleapis.com/<message name>",
    );
    rejects::<Operation>(
        r#"{"metadata":{"@type":"type.googleapis.com/google.protobuf.Timestamp","value":"noon"}}"#,
        "noon",
    );
}

#[test]
fn writing_an_any_of_an_unknown_type_is_an_error_not_a_panic() {
    let operation = Operation {
        metadata: Some(Any {
            type_url: "type.googleapis.com/example.Unknown".into(),
            value: vec![1, 2, 3],
        }),
        ..Default::default()
    };
    let error = serde_json::to_string(&operation)
        .err()
        .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("example.Unknown")),
        "{error:?}"
    );

    // Bytes that are not the named type are an error too.
    let garbage = Operation {
        metadata: Some(Any {
            type_url: "type.googleapis.com/yandex.cloud.compute.v1.Image".into(),
            value: vec![0xff, 0xff, 0xff],
        }),
        ..Default::default()
    };
    assert!(serde_json::to_string(&garbage).is_err());
}
