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

#[test]
fn every_rpc_has_its_rest_route() {
    let pool = pool();
    #[rustfmt::skip]
    let routes = [
        ("yandex.cloud.containerregistry.v1.ImageService.List", "get", "/container-registry/v1/images"),
        ("yandex.cloud.containerregistry.v1.ImageService.Get", "get", "/container-registry/v1/images/{image_id}"),
        ("yandex.cloud.containerregistry.v1.ImageService.Delete", "delete", "/container-registry/v1/images/{image_id}"),
        ("yandex.cloud.compute.v1.ImageService.Get", "get", "/compute/v1/images/{image_id}"),
        ("yandex.cloud.compute.v1.ImageService.GetLatestByFamily", "get", "/compute/v1/images:latestByFamily"),
        ("yandex.cloud.compute.v1.ImageService.List", "get", "/compute/v1/images"),
        ("yandex.cloud.compute.v1.ImageService.Create", "post", "/compute/v1/images"),
        ("yandex.cloud.compute.v1.ImageService.Update", "patch", "/compute/v1/images/{image_id}"),
        ("yandex.cloud.compute.v1.ImageService.Delete", "delete", "/compute/v1/images/{image_id}"),
        ("yandex.cloud.compute.v1.ImageService.ListOperations", "get", "/compute/v1/images/{image_id}/operations"),
        ("yandex.cloud.operation.OperationService.Get", "get", "/operations/{operation_id}"),
        ("yandex.cloud.operation.OperationService.Cancel", "get", "/operations/{operation_id}:cancel"),
        ("yandex.cloud.endpoint.ApiEndpointService.Get", "get", "/endpoints/{api_endpoint_id}"),
        ("yandex.cloud.endpoint.ApiEndpointService.List", "get", "/endpoints"),
    ];
    let mut seen = 0;
    for (name, verb, path) in routes {
        let method = method(&pool, name);
        let rule = extension(&pool, &method.options(), "google.api.http")
            .and_then(|v| v.as_message().cloned())
            .unwrap_or_else(|| panic!("{name} has no google.api.http option"));
        assert_eq!(string_field(&rule, verb), path, "{name}");
        let body = string_field(&rule, "body");
        let expects_body = matches!(verb, "post" | "patch");
        assert_eq!(body == "*", expects_body, "{name}: body {body:?}");
        seen += 1;
    }
    // Cancel also answers POST.
    let cancel = method(&pool, "yandex.cloud.operation.OperationService.Cancel");
    let rule = extension(&pool, &cancel.options(), "google.api.http")
        .and_then(|v| v.as_message().cloned())
        .unwrap_or_else(|| panic!("Cancel has no route"));
    let extra = rule
        .get_field_by_name("additional_bindings")
        .and_then(|v| v.as_list().map(<[Value]>::to_vec))
        .unwrap_or_default();
    let posts: Vec<String> = extra
        .iter()
        .filter_map(|b| b.as_message().map(|m| string_field(m, "post")))
        .collect();
    assert_eq!(posts, ["/operations/{operation_id}:cancel"]);

    let all_methods: usize = pool.services().map(|s| s.methods().len()).sum();
    assert_eq!(seen, all_methods, "every RPC of the schema has a row here");
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
