//! What List requests of every service share: the filter syntax, the sort order, and page
//! tokens. Each service names its own fields; the parsing, the errors and the tokens are these.

mod filter;
mod order;
pub mod page_token;
pub mod sql;

pub use filter::{Condition, FilterExpr, FilterOp, FilterSpec};
pub use order::{OrderBy, OrderItem};
pub use page_token::{QueryKey, TokenKey, TokenKeys, token_too_old};
use prost::{Message, Name};
use yc_proto_types::encoded::{Form, PageWriter, page_shape};
use yc_proto_types::google::rpc::Status;

/// A List response written by [`Page::answer`] in protobuf form, decoded: for callers in
/// the same process that want the typed message.
pub fn decode_page<R: Message + Default + Name>(page: &[u8]) -> Result<R, Status> {
    R::decode(page).map_err(|e| {
        Status::new(
            tonic::Code::Internal,
            format!("a List page of {} does not decode: {e}", R::full_name()),
        )
    })
}

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
    ) -> Result<Self, Status> {
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

    /// Where a store puts the page's rows (fetched with [`Page::fetch_limit`]) as it reads
    /// them, in `form`, for the List response `R`; `INTERNAL` if `R` is not shaped as one
    /// (see [`PageShape`]).
    pub fn rows<R: Name>(&self, form: Form) -> Result<PageRows, Status> {
        PageRows::new::<R>(form, self.size)
    }

    /// The List response, encoded in the rows' form: their items and the next page's token.
    pub fn answer(&self, rows: PageRows) -> Vec<u8> {
        let token = if rows.more {
            self.key.token(&rows.last_id)
        } else {
            String::new()
        };
        rows.writer.finish(&token)
    }
}

/// The bytes an item of a page is expected to take, to size the page's buffer.
const ITEM_BYTES: usize = 512;
/// The most a page's buffer is sized for before its rows come.
const MAX_PRESIZED: usize = 1 << 20;

/// A List page's rows as a store reads them, each written into the response as it comes
/// (see [`PageWriter`]): the row after the page is only noted, for the next page's token.
#[derive(Debug)]
pub struct PageRows {
    writer: PageWriter,
    form: Form,
    size: usize,
    count: usize,
    last_id: String,
    more: bool,
}

impl PageRows {
    /// Rows for up to `size` items of the List response `R` in `form` (a store reads one
    /// more, to know a next page follows); `INTERNAL` if `R` is not shaped as a List
    /// response (see [`PageShape`](yc_proto_types::encoded::PageShape)).
    pub fn new<R: Name>(form: Form, size: usize) -> Result<Self, Status> {
        let shape = page_shape::<R>().ok_or_else(|| {
            Status::new(
                tonic::Code::Internal,
                format!("{} is not a List response", R::full_name()),
            )
        })?;
        Ok(Self {
            // Room for the page's items as they are usually stored (an image is a few hundred
            // bytes), so that the buffer is not grown and copied as rows come.
            writer: shape.writer(form, size.saturating_mul(ITEM_BYTES).min(MAX_PRESIZED)),
            form,
            size,
            count: 0,
            last_id: String::new(),
            more: false,
        })
    }

    /// The response without a next page token: the items only (for a store's own callers;
    /// a List answers through [`Page::answer`]).
    pub fn into_bytes(self) -> Vec<u8> {
        self.writer.finish("")
    }

    /// Whether no row came.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && !self.more
    }

    /// The form the rows are read in.
    pub fn form(&self) -> Form {
        self.form
    }

    /// The next row: the resource's id and its stored bytes in [`form`](Self::form).
    pub fn push(&mut self, id: &str, item: &[u8]) {
        if self.count == self.size {
            self.more = true;
            return;
        }
        self.writer.push(item);
        self.count += 1;
        self.last_id.clear();
        self.last_id.push_str(id);
    }
}
