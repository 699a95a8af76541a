//! `type_registry.rs`: every generated message, by full name, for `google.protobuf.Any`.

use heck::{ToSnakeCase, ToUpperCamelCase};
use prost_types::{DescriptorProto, FileDescriptorProto};

pub(super) fn generate(files: &[FileDescriptorProto]) -> String {
    let mut entries = Vec::new();
    for file in files {
        let package = file.package();
        let module = package.replace('.', "::");
        for message in &file.message_type {
            collect(message, package, &format!("crate::{module}"), &mut entries);
        }
    }
    // Sorted by full name, so that lookups can binary-search.
    entries.sort();
    let mut out = String::from(
        "/// Every generated message type, sorted by full name.\n\
         pub(crate) static MESSAGE_TYPES: &[crate::type_registry::MessageType] = &[\n",
    );
    for (full_name, rust_path) in entries {
        out.push_str(&format!(
            "    crate::type_registry::MessageType::of::<{rust_path}>(\"{full_name}\"),\n"
        ));
    }
    out.push_str("];\n");
    out
}

fn collect(
    message: &DescriptorProto,
    scope: &str,
    rust_scope: &str,
    out: &mut Vec<(String, String)>,
) {
    if message.options.as_ref().is_some_and(|o| o.map_entry()) {
        return;
    }
    let name = message.name();
    let full_name = format!("{scope}.{name}");
    out.push((
        full_name.clone(),
        format!("{rust_scope}::{}", name.to_upper_camel_case()),
    ));
    // prost puts nested types into a module named after the message in snake case.
    let nested_scope = format!("{rust_scope}::{}", name.to_snake_case());
    for nested in &message.nested_type {
        collect(nested, &full_name, &nested_scope, out);
    }
}
