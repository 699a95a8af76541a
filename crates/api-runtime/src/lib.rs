//! What every API service of the yc-images server shares, so that each rule exists once:
//!
//! - **who is calling** ([`Caller`], [`Principal`], [`Access`], [`Role`]): the server puts a
//!   [`Principal`] on every call (from IAM, or the explicit anonymous one of a server without
//!   IAM); a call without one is `UNAUTHENTICATED`, never a caller that may do anything.
//!   [`Caller::system`] is the server's own work (resuming operations, seeding);
//! - **errors** in their REST form ([`rest::ApiError`], [`rest::error_response`]) beside the
//!   gRPC one in `yc_proto_types`, and [`store_unavailable`];
//! - **the REST transcoder** ([`rest::transcode`]), which serves every `google.api.http` rule
//!   of the schema by calling the service as gRPC would;
//! - **List queries** ([`list`]): the filter syntax, `order_by`, page tokens, and keyset
//!   `SELECT`s in either SQL dialect, with [`list::Page`] putting them together;
//! - **access bindings** on one resource ([`bindings`]): the roles honoured there and what
//!   the three access-binding RPCs do;
//! - **ids** in the Yandex form ([`ids`]);
//! - **stored resources** ([`stored::Stored`]): a message with its two wire forms as stored,
//!   which Get answers with;
//! - **update masks** ([`update_paths`]): the fields an Update changes.

pub mod access;
pub mod answers;
pub mod bindings;
mod caller;
pub mod ids;
pub mod list;
pub mod rest;
pub mod stored;

pub use access::{Access, Principal, PrincipalLayer, Role, WithPrincipal, permission_denied};
pub use caller::{Caller, IDEMPOTENCY_KEY, idempotency_key};

/// The status a caller sees when a store fails: `UNAVAILABLE`, without internals, which go to
/// the log.
pub fn store_unavailable(store: &str, why: &str) -> yc_proto_types::google::rpc::Status {
    tracing::error!(store, error = %why, "store unavailable");
    yc_proto_types::google::rpc::Status::new(
        tonic::Code::Unavailable,
        format!("The {store} is unavailable; retry later"),
    )
}

/// The fields an Update changes: the paths of its `update_mask`, or without a mask the fields
/// it sets (`set`: each field and whether the request gives it a value). A path that is not
/// one of `fields` is a validation error of `update_mask`.
pub fn update_paths(
    mask: Option<&yc_proto_types::google::protobuf::FieldMask>,
    set: &[(&str, bool)],
    fields: &[&str],
) -> Result<Vec<String>, yc_proto_types::google::rpc::Status> {
    let paths: Vec<String> = match mask {
        Some(mask) => mask.paths.clone(),
        None => set
            .iter()
            .filter(|(_, set)| *set)
            .map(|(path, _)| (*path).to_owned())
            .collect(),
    };
    if let Some(unknown) = paths.iter().find(|p| !fields.contains(&p.as_str())) {
        return Err(yc_proto_types::validation_error(
            "update_mask",
            &format!(
                "{} is not a field that can be updated; the fields are {}",
                yc_proto_types::quote(unknown),
                fields.join(", ")
            ),
        ));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yc_proto_types::google::protobuf::FieldMask;

    #[test]
    fn an_update_changes_the_masked_fields_or_else_the_fields_it_sets() {
        let fields = &["name", "labels"];
        let set = &[("name", true), ("labels", false)];
        assert_eq!(update_paths(None, set, fields).unwrap(), ["name"]);
        let mask = FieldMask {
            paths: vec!["labels".into()],
        };
        assert_eq!(update_paths(Some(&mask), set, fields).unwrap(), ["labels"]);
        let bad = FieldMask {
            paths: vec!["folder_id".into()],
        };
        let refused = update_paths(Some(&bad), set, fields).unwrap_err();
        assert_eq!(refused.grpc_code(), tonic::Code::InvalidArgument);
        assert!(
            refused
                .message
                .contains("update_mask: \"folder_id\" is not a field"),
            "{}",
            refused.message
        );
    }
}
