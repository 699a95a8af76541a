//! The `order_by` of List requests: `field [asc|desc]`, comma separated, e.g.
//! `created_at desc, name` or `createdAt desc`.

use yc_proto_types::google::rpc::Status;

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    /// The field in snake_case, one of the service's sortable fields.
    pub field: String,
    /// Descending rather than ascending.
    pub descending: bool,
}

/// A parsed `order_by`: sort keys, most significant first. Services add the id as the last,
/// tie-breaking key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderBy {
    /// The keys, as written.
    pub items: Vec<OrderItem>,
}

impl OrderBy {
    /// Parses `text` against the sortable `fields` (snake_case; the text may also use
    /// lowerCamelCase). Empty text gives no keys. Errors are `INVALID_ARGUMENT`,
    /// `Request validation error: order_by: …`.
    ///
    /// ```
    /// use yc_api_runtime::list::OrderBy;
    ///
    /// let order = OrderBy::parse("createdAt desc, name", &["name", "created_at"]).unwrap();
    /// assert_eq!(order.items[0].field, "created_at");
    /// assert!(order.items[0].descending && !order.items[1].descending);
    /// assert!(OrderBy::parse("size", &["name"]).is_err());
    /// ```
    pub fn parse(text: &str, fields: &[&str]) -> Result<Self, Status> {
        let error = |what: String| yc_proto_types::validation_error("order_by", &what);
        let mut order = OrderBy::default();
        if text.trim().is_empty() {
            return Ok(order);
        }
        for part in text.split(',') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let (name, descending) = match words.as_slice() {
                [name] => (*name, false),
                [name, dir] if dir.eq_ignore_ascii_case("asc") => (*name, false),
                [name, dir] if dir.eq_ignore_ascii_case("desc") => (*name, true),
                [] => {
                    return Err(error(format!(
                        "empty sort key in {}",
                        yc_proto_types::quote(text)
                    )));
                }
                _ => {
                    return Err(error(format!(
                        "{} is not `field`, `field asc` or `field desc`",
                        yc_proto_types::quote(part.trim())
                    )));
                }
            };
            let field = yc_proto_types::snake_case(name);
            if !fields.contains(&field.as_str()) {
                return Err(error(format!(
                    "cannot sort by {}; the fields are {}",
                    yc_proto_types::quote(name),
                    fields.join(", ")
                )));
            }
            if order.items.iter().any(|i| i.field == field) {
                return Err(error(format!(
                    "{} appears twice",
                    yc_proto_types::quote(name)
                )));
            }
            order.items.push(OrderItem { field, descending });
        }
        Ok(order)
    }

    /// The keys, or `default` when there are none.
    pub fn or(self, default: &[(&str, bool)]) -> Self {
        if !self.items.is_empty() {
            return self;
        }
        OrderBy {
            items: default
                .iter()
                .map(|(field, descending)| OrderItem {
                    field: (*field).to_owned(),
                    descending: *descending,
                })
                .collect(),
        }
    }
}
