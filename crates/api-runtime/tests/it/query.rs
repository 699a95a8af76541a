//! The List query plumbing every service shares: filters, sort orders, page tokens.

use yc_api_runtime::list::{
    Condition, FilterExpr, FilterOp, FilterSpec, OrderBy, QueryKey, TokenKeys,
};

const SPEC: FilterSpec<'static> = FilterSpec {
    fields: &["name", "family", "status", "id"],
    max_value_length: 256,
};

fn cond(field: &str, op: FilterOp, values: &[&str]) -> Condition {
    Condition {
        field: field.into(),
        op,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

#[test]
fn filters_that_parse() {
    use FilterOp::*;
    let rows: Vec<(&str, Vec<Condition>)> = vec![
        ("", vec![]),
        ("   ", vec![]),
        (r#"name = "ubuntu""#, vec![cond("name", Eq, &["ubuntu"])]),
        ("name='ubuntu'", vec![cond("name", Eq, &["ubuntu"])]),
        (r#"name != "a""#, vec![cond("name", Ne, &["a"])]),
        (
            r#"name IN ("a", 'b',"c")"#,
            vec![cond("name", In, &["a", "b", "c"])],
        ),
        (r#"name in ("a")"#, vec![cond("name", In, &["a"])]),
        (
            r#"name NOT IN ("a", "b")"#,
            vec![cond("name", NotIn, &["a", "b"])],
        ),
        (r#"name not   in('a')"#, vec![cond("name", NotIn, &["a"])]),
        (
            r#"name = "a" AND family != 'b' and status IN ("READY")"#,
            vec![
                cond("name", Eq, &["a"]),
                cond("family", Ne, &["b"]),
                cond("status", In, &["READY"]),
            ],
        ),
        (
            r#"name = "say \"hi\"""#,
            vec![cond("name", Eq, &["say \"hi\""])],
        ),
        (r"name = 'it\'s'", vec![cond("name", Eq, &["it's"])]),
        (
            r#"name = "tab\there\\ \x41 \u00e9 \n""#,
            vec![cond("name", Eq, &["tab\there\\ A é \n"])],
        ),
        (r#"name = """#, vec![cond("name", Eq, &[""])]),
        (r#"name = "образ""#, vec![cond("name", Eq, &["образ"])]),
    ];
    for (text, conditions) in rows {
        let parsed =
            FilterExpr::parse(text, SPEC).unwrap_or_else(|e| panic!("{text}: {}", e.message));
        assert_eq!(parsed.conditions, conditions, "{text}");
    }
}

#[test]
fn filters_that_do_not_parse_say_what_and_where() {
    let long = format!("name = \"{}\"", "x".repeat(257));
    let rows: Vec<(&str, &str)> = vec![
        (
            "size = '1'",
            "column 1: cannot filter on \"size\"; the fields are name, family, status, id",
        ),
        (
            "name",
            "column 5: expected =, !=, IN or NOT IN, found the end of the filter",
        ),
        (
            "name = ubuntu",
            "column 8: expected a quoted value, found \"ubuntu\"",
        ),
        (
            "name = 'a",
            "column 8: the string starting here has no closing '",
        ),
        (
            "name = 'a' OR name = 'b'",
            "column 12: expected AND or the end, found \"OR\"",
        ),
        (
            "name = 'a' AND",
            "column 15: expected a field name, found the end of the filter",
        ),
        (
            "name IN 'a'",
            "column 9: expected \"(\" after IN, found the string \"a\"",
        ),
        (
            "name IN ('a' 'b')",
            "column 14: expected \",\" or \")\", found the string \"b\"",
        ),
        (
            "name IN ()",
            "column 10: expected a quoted value, found \")\"",
        ),
        (
            "name NOT = 'a'",
            "column 10: expected IN after NOT, found \"=\"",
        ),
        ("name = 'a\\q'", "column 10: unknown escape \\q"),
        (
            "name = 'a\\x4'",
            "column 10: expected 2 hex digits after the escape",
        ),
        (
            "name ! 'a'",
            "column 6: expected =, !=, IN or NOT IN, found \"!\"",
        ),
        (
            &long,
            "column 8: the value is 257 characters long; at most 256 are allowed",
        ),
    ];
    for (text, message) in rows {
        let error = FilterExpr::parse(text, SPEC).err().unwrap_or_default();
        assert_eq!(error.grpc_code(), tonic::Code::InvalidArgument, "{text}");
        assert_eq!(
            error.message,
            format!("Request validation error: filter: {message}"),
            "{text}"
        );
    }
}

#[test]
fn filters_match_field_values() {
    let filter = FilterExpr::parse(r#"name IN ("a", "b") AND family != "old""#, SPEC)
        .unwrap_or_else(|e| panic!("{}", e.message));
    let image = |name: &'static str, family: &'static str| {
        move |field: &str| match field {
            "name" => name,
            "family" => family,
            _ => "",
        }
    };
    assert!(filter.matches(image("a", "new")));
    assert!(!filter.matches(image("c", "new")));
    assert!(!filter.matches(image("b", "old")));
}

#[test]
fn sort_orders() {
    let fields = ["name", "digest", "created_at", "last_modified"];
    let parsed = |text: &str| {
        OrderBy::parse(text, &fields)
            .map(|o| {
                o.items
                    .iter()
                    .map(|i| format!("{} {}", i.field, if i.descending { "desc" } else { "asc" }))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.message)
    };
    assert_eq!(parsed(""), Ok(vec![]));
    assert_eq!(parsed("name"), Ok(vec!["name asc".to_owned()]));
    assert_eq!(
        parsed("createdAt DESC, name asc"),
        Ok(vec!["created_at desc".to_owned(), "name asc".to_owned()])
    );
    assert_eq!(
        parsed(" last_modified desc ,digest "),
        Ok(vec![
            "last_modified desc".to_owned(),
            "digest asc".to_owned()
        ])
    );
    let error = |what: &str| Err(format!("Request validation error: order_by: {what}"));
    assert_eq!(
        parsed("size"),
        error("cannot sort by \"size\"; the fields are name, digest, created_at, last_modified")
    );
    assert_eq!(parsed("name,name desc"), error("\"name\" appears twice"));
    assert_eq!(
        parsed("name up"),
        error("\"name up\" is not `field`, `field asc` or `field desc`")
    );
    assert_eq!(parsed("name,"), error("empty sort key in \"name,\""));
}

#[test]
fn page_tokens_are_bound_to_their_query_and_detect_tampering() {
    let keys = TokenKeys::ephemeral();
    let query = QueryKey::new(&keys, "list", &["crp1", "", "", "", "name"]);
    let token = query.token("crpd50616s9a2t7gr8mi");
    assert!(token.len() <= 100, "{token}");
    assert_eq!(
        query.resume_after(&token).ok().flatten().as_deref(),
        Some("crpd50616s9a2t7gr8mi")
    );

    // Another query: a different scope, filter or order, even when the parts only shift.
    for parts in [
        ["crp2", "", "", "", "name"],
        ["crp1", "", "", "", "name desc"],
        ["crp", "1", "", "", "name"],
    ] {
        let other = QueryKey::new(&keys, "list", &parts);
        let error = other.resume_after(&token).err().unwrap_or_default();
        assert_eq!(
            error.message,
            "Request validation error: page_token: was not made by this server for this query; a token only continues the listing that made it"
        );
    }
    // An altered token, or none of ours.
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap_or_default();
    for bad in [altered.as_str(), "not a token!", "AQ", "Ag"] {
        assert_eq!(
            query.resume_after(bad).err().map(|e| e.grpc_code()),
            Some(tonic::Code::InvalidArgument),
            "{bad}"
        );
    }
}

/// What an attacker can compute without the server's key: the token format with a check of
/// their own making, for an id the query never returned. Refused, whatever the check.
#[test]
fn page_tokens_cannot_be_forged_without_the_key() {
    use base64::Engine as _;
    let keys = TokenKeys::ephemeral();
    let query = QueryKey::new(&keys, "list", &["b1gmine", "", ""]);
    for key_byte in [0u8, 1, 2, 255] {
        for check in [[0u8; 12], [0xff; 12], [7; 12]] {
            let mut bytes = vec![2u8, key_byte];
            bytes.extend_from_slice(&check);
            bytes.extend_from_slice(b"fd8imageofanotherfld");
            let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(
                query.resume_after(&forged).err().map(|e| e.grpc_code()),
                Some(tonic::Code::InvalidArgument)
            );
        }
    }
    // Version 1 tokens (a plain hash of the query, which anyone could compute) are no more.
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(&[0u8; 8]);
    bytes.extend_from_slice(b"fd8imageofanotherfld");
    let old = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    assert!(query.resume_after(&old).is_err());
}
