//! Property tests of every parser here that reads a caller's input: filters, orders, page
//! tokens, and request messages from query strings and JSON bodies (and, against a model, the
//! access-binding changes). Whatever comes in, the
//! answer is a value or an `INVALID_ARGUMENT` with a bounded message, never a panic.
//!
//! `cargo xtask fuzz` runs these with many more cases (`PROPTEST_CASES`).

use proptest::prelude::*;
use yc_api_runtime::list::{FilterExpr, FilterSpec, OrderBy, QueryKey, TokenKeys};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::rpc::{RestRequest, Rpc};
use yc_proto_types::yandex::cloud::compute::v1::image_service_rpc;

/// Reads a request by `rpc`'s first REST rule, as the server's transcoder does.
fn read<Req: serde::de::DeserializeOwned, Resp>(
    rpc: Rpc<Req, Resp>,
    path: Vec<(&str, &str)>,
    query: Option<&str>,
    body: &[u8],
) -> Result<Req, Status> {
    let fields = RestRequest::read(&rpc.http_rules()[0], path, query, body)?;
    RestRequest {
        fields,
        ..RestRequest::default()
    }
    .message()
}

const SPEC: FilterSpec<'static> = FilterSpec {
    fields: &["name", "family", "status", "id"],
    max_value_length: 256,
};

/// A refusal as a caller must see it.
fn refused(status: &Status) {
    assert_eq!(
        status.grpc_code(),
        tonic::Code::InvalidArgument,
        "{status:?}"
    );
    assert!(
        status.message.starts_with("Request validation error: "),
        "{}",
        status.message
    );
}

/// Text made of the filter language's own pieces, to get past the first token.
fn filter_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("name".to_owned()),
        Just("family".to_owned()),
        Just("status".to_owned()),
        Just("nope".to_owned()),
        Just("=".to_owned()),
        Just("!=".to_owned()),
        Just("IN".to_owned()),
        Just("not".to_owned()),
        Just("AND".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(",".to_owned()),
        Just(" ".to_owned()),
        "\"[^\"]{0,8}\"",
        "'[^']{0,8}'",
        "\"\\\\[xu0-9a-z\"']{0,6}\"",
        "\"[a-z]{300}\"",
        "[\\PC]{0,3}",
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

/// JSON objects whose keys are mostly the request's own fields, with values of every type.
fn json_like(fields: &'static [&'static str]) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        "[\\PC]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("9223372036854775808")),
        Just(serde_json::Value::from("READY")),
    ];
    let value = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    prop::sample::select(fields).prop_map(str::to_owned),
                    "[a-zA-Z_]{1,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(prop::sample::select(fields), value, 0..6).prop_map(|m| {
        serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            .to_string()
    })
}

const CREATE_FIELDS: &[&str] = &[
    "folderId",
    "name",
    "description",
    "labels",
    "family",
    "minDiskSize",
    "productIds",
    "imageId",
    "diskId",
    "snapshotId",
    "uri",
    "os",
    "pooled",
    "hardwareGeneration",
    "folder_id",
    "min_disk_size",
    "@type",
];

proptest! {
    /// Any path, against every REST rule of the schema: a rule matches or not, and the values
    /// it takes from the path are read into the request or refused naming the field.
    #[test]
    fn fuzz_paths_match_rules_or_not(path in prop_oneof![
        "(/(compute|v1|images|operations|endpoints|container-registry|fd8[a-z0-9%]{0,24}|:cancel|:latestByFamily|%[0-9A-Fa-f]{2}|){0,6})(:[a-z]{0,8})?",
        "[\\PC]{0,64}",
    ]) {
        for (_, rules) in yc_proto_types::rpc::every_http_rule() {
            for rule in rules {
                if let Some(values) = rule.template().matches(&path)
                    && let Err(status) = RestRequest::read(rule, values, None, b"")
                {
                    refused(&status);
                }
            }
        }
    }

    #[test]
    fn fuzz_filters_parse_or_say_why(text in prop_oneof![filter_like(), "[\\PC]{0,64}", any::<String>()]) {
        if let Err(status) = FilterExpr::parse(&text, SPEC) {
            refused(&status);
            prop_assert!(status.message.len() <= 1024 + 64, "{}", status.message.len());
        }
    }

    #[test]
    fn fuzz_orders_parse_or_say_why(text in prop_oneof![
        "((name|id|family|created_at|createdAt|x)( (asc|desc|up))?[, ]{0,2}){0,4}",
        any::<String>(),
    ]) {
        if let Err(status) = OrderBy::parse(&text, &["id", "name", "family", "created_at"]) {
            refused(&status);
        }
    }

    #[test]
    fn fuzz_page_tokens_not_made_here_are_refused(text in any::<String>(), id in "[a-z0-9]{0,40}") {
        let keys = TokenKeys::ephemeral();
        let query = QueryKey::new(&keys, "fuzz", &["b1gfolder"]);
        match query.resume_after(&text) {
            Ok(None) => prop_assert!(text.is_empty()),
            Ok(Some(found)) => prop_assert!(false, "{text:?} was taken for {found:?}"),
            Err(status) => refused(&status),
        }
        // What this server made is taken, for any id.
        let token = query.token(&id);
        prop_assert!(token.len() <= 100);
        prop_assert_eq!(query.resume_after(&token).ok().flatten(), Some(id));
    }

    #[test]
    fn fuzz_query_strings_read_or_name_what_is_wrong(text in prop_oneof![
        "((folderId|folder_id|pageSize|page_size|pageToken|filter|orderBy|x)=[\\PC%&=]{0,12}&?){0,6}",
        any::<String>(),
    ]) {
        if let Err(status) = read(image_service_rpc::LIST, vec![], Some(&text), b"") {
            refused(&status);
            prop_assert!(status.message.len() <= 1024, "{}", status.message.len());
        }
    }

    #[test]
    fn fuzz_json_bodies_read_or_name_what_is_wrong(
        body in prop_oneof![json_like(CREATE_FIELDS), any::<String>()],
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        for input in [body.as_bytes(), bytes.as_slice()] {
            if let Err(status) = read(image_service_rpc::CREATE, vec![], None, input) {
                refused(&status);
            }
            let path = vec![("image_id", "fd8abc")];
            if let Err(status) = read(image_service_rpc::UPDATE, path, None, input) {
                refused(&status);
            }
        }
    }
}

/// One binding of a small universe, so that random changes collide often.
fn small_binding() -> impl Strategy<Value = yc_proto_types::yandex::cloud::access::AccessBinding> {
    (0..3usize, 0..2usize, 0..4usize).prop_map(|(role, kind, id)| {
        yc_api_runtime::bindings::binding(
            ["viewer", "editor", "admin"][role],
            ["userAccount", "serviceAccount"][kind],
            &format!("aje{id}"),
        )
    })
}

proptest! {
    /// Any sequence of Sets and Updates leaves the bindings a model set says (each once), each
    /// change reports exactly what changed the model, and pages of any size list every
    /// binding once.
    #[test]
    fn fuzz_binding_changes_match_a_set_model(
        changes in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec((any::<bool>(), small_binding()), 0..8)),
            1..20,
        ),
        page_size in 1..30i64,
    ) {
        use std::collections::BTreeSet;
        use yc_api_runtime::bindings;
        use yc_proto_types::yandex::cloud::access::{AccessBindingAction, AccessBindingDelta};

        let key_of = |b: &yc_proto_types::yandex::cloud::access::AccessBinding| {
            let s = b.subject.clone().unwrap_or_default();
            (b.role_id.clone(), s.r#type, s.id)
        };
        let mut held = Vec::new();
        let mut model = BTreeSet::new();
        for (whole, items) in changes {
            if whole {
                let wanted: Vec<_> = items.iter().map(|(_, b)| b.clone()).collect();
                let next: BTreeSet<_> = wanted.iter().map(key_of).collect();
                let deltas = bindings::set(&mut held, wanted);
                let changed = model.symmetric_difference(&next).count();
                prop_assert_eq!(deltas.len(), changed);
                model = next;
            } else {
                let deltas: Vec<AccessBindingDelta> = items
                    .iter()
                    .map(|(add, b)| AccessBindingDelta {
                        action: if *add { AccessBindingAction::Add } else { AccessBindingAction::Remove } as i32,
                        access_binding: Some(b.clone()),
                    })
                    .collect();
                let effective = bindings::update(&mut held, &deltas).unwrap();
                let mut expected = Vec::new();
                for (add, b) in &items {
                    let changed = if *add { model.insert(key_of(b)) } else { model.remove(&key_of(b)) };
                    if changed {
                        expected.push(key_of(b));
                    }
                }
                let got: Vec<_> = effective.iter().filter_map(|d| d.access_binding.as_ref()).map(key_of).collect();
                prop_assert_eq!(got, expected);
            }
            let now: Vec<_> = held.iter().map(key_of).collect();
            let unique: BTreeSet<_> = now.iter().cloned().collect();
            prop_assert_eq!(now.len(), unique.len(), "a binding held twice");
            prop_assert_eq!(&unique, &model);
        }
        let keys = TokenKeys::ephemeral();
        let query = QueryKey::new(&keys, "test.ListAccessBindings", &["r"]);
        let mut listed = Vec::new();
        let mut token = String::new();
        loop {
            let page = bindings::page(held.clone(), &query, &token, page_size).unwrap();
            prop_assert!(page.access_bindings.len() as i64 <= page_size);
            listed.extend(page.access_bindings.iter().map(key_of));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let as_set: BTreeSet<_> = listed.iter().cloned().collect();
        prop_assert_eq!(listed.len(), as_set.len());
        prop_assert_eq!(as_set, model);
    }
}
