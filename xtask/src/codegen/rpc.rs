//! `<package>.rpc.rs`: per service, every unary method as a typed `crate::rpc::Rpc` (its name,
//! request and response types, gRPC path) and `rest(service)`, which lists those methods
//! calling a server implementation, for the REST transcoder. The routes themselves are read
//! from the descriptor set at run time (`google.api.http`), so that nothing about a route is
//! written twice.

use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use prost_types::FileDescriptorProto;

/// The Rust path of the message `full_name` (with its leading dot), as prost names it.
fn rust_type(full_name: &str, packages: &[&str]) -> String {
    let name = full_name.trim_start_matches('.');
    let package = packages
        .iter()
        .chain(std::iter::once(&"google.protobuf"))
        .filter(|p| name.starts_with(&format!("{p}.")))
        .max_by_key(|p| p.len())
        .copied()
        .unwrap_or_default();
    let rest = name[package.len()..].trim_start_matches('.');
    let mut parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
    let last = parts.pop().unwrap_or_default().to_upper_camel_case();
    let mut path = format!("crate::{}", package.replace('.', "::"));
    for outer in parts {
        path.push_str("::");
        path.push_str(&outer.to_snake_case());
    }
    format!("{path}::{last}")
}

/// The file for one package, or `None` when it has no services.
pub(super) fn generate(file: &FileDescriptorProto, packages: &[&str]) -> Option<String> {
    if file.service.is_empty() {
        return None;
    }
    let package = file.package();
    let mut out = String::new();
    for service in &file.service {
        let name = service.name();
        let full = format!("{package}.{name}");
        let module = format!("{}_rpc", name.to_snake_case());
        let server = format!("{}_server::{name}", name.to_snake_case());
        out.push_str(&format!(
            "/// The methods of `{full}`: each a typed [`Rpc`](crate::rpc::Rpc), and [`rest`], them\n\
             /// calling a server implementation, for the REST transcoder.\n\
             pub mod {module} {{\n"
        ));
        let mut table = String::new();
        for method in &service.method {
            if method.client_streaming() || method.server_streaming() {
                continue;
            }
            let method_name = method.name();
            let constant = method_name.to_shouty_snake_case();
            let input = rust_type(method.input_type(), packages);
            let output = rust_type(method.output_type(), packages);
            out.push_str(&format!(
                "    /// `{full}.{method_name}`.\n\
                 \x20   pub const {constant}: crate::rpc::Rpc<{input}, {output}> = crate::rpc::Rpc::new(\"{full}\", \"{method_name}\", \"/{full}/{method_name}\");\n"
            ));
            table.push_str(&format!(
                "        {{\n\
                 \x20           let service = service.clone();\n\
                 \x20           rest.unary({constant}, move |request| {{\n\
                 \x20               let service = service.clone();\n\
                 \x20               async move {{ service.{}(request).await }}\n\
                 \x20           }});\n\
                 \x20       }}\n",
                method_name.to_snake_case()
            ));
        }
        out.push_str(&format!(
            "    /// The REST methods of `{full}`, each calling `service`.\n\
             \x20   pub fn rest<T: super::{server}>(service: std::sync::Arc<T>) -> crate::rpc::RestService {{\n\
             \x20       #[allow(unused_mut)]\n\
             \x20       let mut rest = crate::rpc::RestService::new(\"{full}\");\n\
             {table}\
             \x20       drop(service);\n\
             \x20       rest\n\
             \x20   }}\n\
             }}\n"
        ));
    }
    Some(out)
}
