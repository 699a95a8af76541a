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
