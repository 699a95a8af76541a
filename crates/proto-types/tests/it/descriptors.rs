//! The shipped descriptor set carries the whole schema: every service and its REST route, the
//! operation option of every operation RPC, and the validation rules as custom options, which
//! the server reads instead of restating them. Rows follow the API's published contract.

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

fn pool() -> DescriptorPool {
    DescriptorPool::decode(yc_proto_types::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|e| panic!("the shipped descriptor set does not decode: {e}"))
}

fn method(pool: &DescriptorPool, full_name: &str) -> MethodDescriptor {
    let (service, method) = full_name
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("{full_name} names no method"));
    pool.get_service_by_name(service)
        .unwrap_or_else(|| panic!("no service {service}"))
        .methods()
        .find(|m| m.name() == method)
        .unwrap_or_else(|| panic!("no method {full_name}"))
}

fn extension(pool: &DescriptorPool, options: &DynamicMessage, name: &str) -> Option<Value> {
    let ext = pool
        .get_extension_by_name(name)
        .unwrap_or_else(|| panic!("no extension {name}"));
    options
        .has_extension(&ext)
        .then(|| options.get_extension(&ext).into_owned())
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The REST routes as the server and the clients read them from the schema. Review a change
/// of this snapshot against the published API (`cargo xtask snapshots` writes it).
#[test]
fn every_rpc_has_its_rest_route() {
    let pool = pool();
    let routes = yc_proto_types::rpc::every_http_rule();
    let mut table = String::new();
    for (method, rules) in &routes {
        for rule in *rules {
            let body = match rule.body() {
                yc_proto_types::rpc::RuleBody::None => String::new(),
                yc_proto_types::rpc::RuleBody::Whole => " body: *".to_owned(),
                yc_proto_types::rpc::RuleBody::Field(f) => format!(" body: {f}"),
            };
            table.push_str(&format!(
                "{method}: {} {}{body}\n",
                rule.method(),
                rule.template()
            ));
        }
    }
    let all_methods: usize = pool.services().map(|s| s.methods().len()).sum();
    assert_eq!(
        routes.len(),
        all_methods,
        "every RPC of the schema has a route"
    );
    insta::assert_snapshot!("rest_routes", table);
}

#[test]
fn operation_rpcs_name_their_metadata_and_response() {
    let pool = pool();
    for (name, metadata, response) in [
        (
            "yandex.cloud.containerregistry.v1.ImageService.Delete",
            "DeleteImageMetadata",
            "google.protobuf.Empty",
        ),
        (
            "yandex.cloud.compute.v1.ImageService.Create",
            "CreateImageMetadata",
            "Image",
        ),
        (
            "yandex.cloud.compute.v1.ImageService.Update",
            "UpdateImageMetadata",
            "Image",
        ),
        (
            "yandex.cloud.compute.v1.ImageService.Delete",
            "DeleteImageMetadata",
            "google.protobuf.Empty",
        ),
    ] {
        let method = method(&pool, name);
        assert_eq!(
            method.output().full_name(),
            "yandex.cloud.operation.Operation"
        );
        let option = extension(&pool, &method.options(), "yandex.cloud.api.operation")
            .and_then(|v| v.as_message().cloned())
            .unwrap_or_else(|| panic!("{name} has no operation option"));
        assert_eq!(string_field(&option, "metadata"), metadata, "{name}");
        assert_eq!(string_field(&option, "response"), response, "{name}");
        // Each named type resolves, in the service's package or by its full name.
        let package = method.parent_service().package_name().to_owned();
        for type_name in [metadata, response] {
            let resolved = pool
                .get_message_by_name(&format!("{package}.{type_name}"))
                .or_else(|| pool.get_message_by_name(type_name));
            assert!(resolved.is_some(), "{name}: {type_name} does not resolve");
        }
    }
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

#[test]
fn request_fields_carry_their_validation_rules() {
    let pool = pool();
    let cr = "yandex.cloud.containerregistry.v1";
    let cp = "yandex.cloud.compute.v1";
    let label_value = "[-_./\\@0-9a-z]*";
    // (message, field, option, value)
    #[rustfmt::skip]
    let rules: Vec<(String, &str, &str, Value)> = vec![
        (format!("{cr}.ListImagesRequest"), "registry_id", "length", s("<=50")),
        (format!("{cr}.ListImagesRequest"), "repository_name", "pattern", s("|[a-z0-9]+(?:[._-][a-z0-9]+)*(/([a-z0-9]+(?:[._-][a-z0-9]+)*))*")),
        (format!("{cr}.ListImagesRequest"), "folder_id", "length", s("<=50")),
        (format!("{cr}.ListImagesRequest"), "page_size", "value", s("0-1000")),
        (format!("{cr}.ListImagesRequest"), "page_token", "length", s("<=100")),
        (format!("{cr}.ListImagesRequest"), "filter", "length", s("<=1000")),
        (format!("{cr}.ListImagesRequest"), "order_by", "length", s("<=100")),
        (format!("{cr}.GetImageRequest"), "image_id", "required", Value::Bool(true)),
        (format!("{cr}.GetImageRequest"), "image_id", "length", s("<=50")),
        (format!("{cr}.DeleteImageRequest"), "image_id", "required", Value::Bool(true)),
        (format!("{cr}.DeleteImageRequest"), "image_id", "length", s("<=50")),
        (format!("{cp}.GetImageRequest"), "image_id", "required", Value::Bool(true)),
        (format!("{cp}.GetImageLatestByFamilyRequest"), "folder_id", "required", Value::Bool(true)),
        (format!("{cp}.GetImageLatestByFamilyRequest"), "family", "pattern", s("|[a-z][-a-z0-9]{1,61}[a-z0-9]")),
        (format!("{cp}.ListImagesRequest"), "folder_id", "required", Value::Bool(true)),
        (format!("{cp}.ListImagesRequest"), "page_size", "value", s("<=1000")),
        (format!("{cp}.ListImagesRequest"), "filter", "length", s("<=1000")),
        (format!("{cp}.CreateImageRequest"), "folder_id", "length", s("<=50")),
        (format!("{cp}.CreateImageRequest"), "name", "pattern", s("|[a-z]([-_a-z0-9]{0,61}[a-z0-9])?")),
        (format!("{cp}.CreateImageRequest"), "description", "length", s("<=256")),
        (format!("{cp}.CreateImageRequest"), "labels", "size", s("<=64")),
        (format!("{cp}.CreateImageRequest"), "labels", "length", s("<=63")),
        (format!("{cp}.CreateImageRequest"), "labels", "pattern", s(label_value)),
        (format!("{cp}.CreateImageRequest"), "family", "pattern", s("|[a-z][-a-z0-9]{1,61}[a-z0-9]")),
        (format!("{cp}.CreateImageRequest"), "min_disk_size", "value", s("4194304-4398046511104")),
        (format!("{cp}.CreateImageRequest"), "product_ids", "length", s("<=50")),
        (format!("{cp}.CreateImageRequest"), "image_id", "length", s("<=50")),
        (format!("{cp}.CreateImageRequest"), "snapshot_id", "length", s("<=50")),
        (format!("{cp}.UpdateImageRequest"), "image_id", "required", Value::Bool(true)),
        (format!("{cp}.UpdateImageRequest"), "min_disk_size", "value", s("4194304-4398046511104")),
        (format!("{cp}.UpdateImageRequest"), "labels", "size", s("<=64")),
        (format!("{cp}.DeleteImageRequest"), "image_id", "length", s("<=50")),
        (format!("{cp}.ListImageOperationsRequest"), "page_token", "length", s("<=100")),
        ("yandex.cloud.operation.GetOperationRequest".into(), "operation_id", "required", Value::Bool(true)),
        ("yandex.cloud.operation.CancelOperationRequest".into(), "operation_id", "required", Value::Bool(true)),
    ];
    for (message, field, option, expected) in rules {
        let descriptor = pool
            .get_message_by_name(&message)
            .and_then(|m| m.get_field_by_name(field))
            .unwrap_or_else(|| panic!("no field {message}.{field}"));
        let value = extension(
            &pool,
            &descriptor.options(),
            &format!("yandex.cloud.{option}"),
        );
        assert_eq!(value, Some(expected), "{message}.{field} ({option})");
    }

    // Map keys and the oneof rule.
    let create = pool
        .get_message_by_name(&format!("{cp}.CreateImageRequest"))
        .unwrap_or_else(|| panic!("no CreateImageRequest"));
    let labels = create
        .get_field_by_name("labels")
        .unwrap_or_else(|| panic!("no labels"));
    let map_key = extension(&pool, &labels.options(), "yandex.cloud.map_key")
        .and_then(|v| v.as_message().cloned())
        .unwrap_or_else(|| panic!("labels has no map_key rule"));
    assert_eq!(string_field(&map_key, "length"), "1-63");
    assert_eq!(string_field(&map_key, "pattern"), "[a-z][-_./\\@0-9a-z]*");
    let source = create
        .oneofs()
        .find(|o| o.name() == "source")
        .unwrap_or_else(|| panic!("no source"));
    assert_eq!(
        extension(&pool, &source.options(), "yandex.cloud.exactly_one"),
        Some(Value::Bool(true))
    );
}
