//! What List requests of every service share: the filter syntax, the sort order, and page
//! tokens. Each service names its own fields; the parsing, the errors and the tokens are these.

mod filter;
mod order;
pub mod page_token;
pub mod sql;

pub use filter::{Condition, FilterExpr, FilterOp, FilterSpec};
pub use order::{OrderBy, OrderItem};
pub use page_token::{QueryKey, TokenKey, TokenKeys, token_too_old};

/// The page size of a request: 0 means the default, 100; the validation rules cap it.
pub fn page_size(requested: i64) -> usize {
    match requested {
        n if n <= 0 => 100,
        n => usize::try_from(n).unwrap_or(100),
    }
}

/// What a service's List accepts: its name for page tokens, and the fields it filters and
/// sorts by.
#[derive(Debug, Clone, Copy)]
pub struct ListSpec<'a> {
    /// The List method (`yandex.cloud.compute.v1.ImageService.List`): page tokens of one
    /// method are not taken by another.
    pub method: &'a str,
    /// The fields `filter` may name.
    pub filter_fields: &'a [&'a str],
    /// The fields `order_by` may name.
    pub order_fields: &'a [&'a str],
    /// The order when the request gives none.
    pub default_order: &'a [(&'a str, bool)],
}

/// The longest value a filter condition may compare with, in characters.
pub const MAX_FILTER_VALUE: usize = 256;

/// A List request read once, the same way for every service: its filter, its order, where its
/// page starts, and how many rows to fetch. A store answers it with one keyset query; then
/// [`Page::finish`] cuts the page and makes the next page's token.
#[derive(Debug)]
pub struct Page {
    /// The filter's conditions.
    pub filter: FilterExpr,
    /// The sort keys, most significant first.
    pub order: Vec<OrderItem>,
    /// The id of the last resource of the previous page, for the keyset cursor.
    pub after: Option<String>,
    /// The page size.
    pub size: usize,
    key: QueryKey,
}

impl Page {
    /// Reads a List request (`size` its `page_size`): `scope` are the request fields that choose what is listed (a
    /// folder, a registry, …); they, the filter and the order bind the page token, so that a
    /// token continues only the listing that made it. `INVALID_ARGUMENT` naming the field for a
    /// filter, order or token that does not read.
    pub fn read(
        keys: &TokenKeys,
        spec: &ListSpec<'_>,
        scope: &[&str],
        filter: &str,
        order_by: &str,
        size: i64,
        page_token: &str,
    ) -> Result<Self, yc_proto_types::google::rpc::Status> {
        let parsed_filter = FilterExpr::parse(
            filter,
            FilterSpec {
                fields: spec.filter_fields,
                max_value_length: MAX_FILTER_VALUE,
            },
        )?;
        let order = OrderBy::parse(order_by, spec.order_fields)?.or(spec.default_order);
        let mut parts: Vec<&str> = scope.to_vec();
        parts.extend([filter, order_by]);
        let key = QueryKey::new(keys, spec.method, &parts);
        let after = key.resume_after(page_token)?;
        Ok(Self {
            filter: parsed_filter,
            order: order.items,
            after,
            size: page_size(size),
            key,
        })
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch_limit(&self) -> usize {
        self.size + 1
    }

    /// Cuts `items` (fetched with [`Page::fetch_limit`]) to the page and returns the next
    /// page's token, empty on the last page.
    pub fn finish<T>(&self, items: &mut Vec<T>, id: impl Fn(&T) -> &str) -> String {
        self.key.finish_page(items, self.size, id)
    }
}
