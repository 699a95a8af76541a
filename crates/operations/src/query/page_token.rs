//! Page tokens: opaque to callers, bound to the query that made them, and short (the API
//! allows 100 characters).
//!
//! A token carries the id of the last resource of its page and a check that ties it to the
//! query: the same scope, filter and order. The store finds the sort position of that
//! resource by id and continues after it (keyset paging), so a resource that exists for the
//! whole walk is returned exactly once however others come and go; stores keep a deleted
//! resource's sort keys for a while so that a token whose last resource was deleted still
//! works. A token from another query, or altered, is `INVALID_ARGUMENT`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use yc_proto_types::google::rpc::Status;

const VERSION: u8 = 1;
const CHECK_LEN: usize = 8;

/// The error for a page token whose last resource the store no longer knows.
pub fn token_too_old() -> Status {
    Status::new(
        tonic::Code::InvalidArgument,
        "Request validation error: page_token: the listing it continues is too old; list again from the first page",
    )
}

/// What a page token is bound to: the parts of a List request that define the listing (not
/// the page size, which may change between pages).
///
/// ```
/// use yc_operations::query::QueryKey;
///
/// let query = QueryKey::new("containerregistry.ListImages", &["crp1", "", "", "name = 'x'", ""]);
/// let token = query.token("crpabcdefghijklmnopq");
/// assert!(token.len() <= 100);
/// assert_eq!(query.resume_after(&token).unwrap().as_deref(), Some("crpabcdefghijklmnopq"));
///
/// let other = QueryKey::new("containerregistry.ListImages", &["crp2", "", "", "", ""]);
/// assert!(other.resume_after(&token).is_err());
/// assert_eq!(query.resume_after("").unwrap(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryKey {
    digest: [u8; 32],
}

impl QueryKey {
    /// The key of a listing of `kind` defined by `parts`.
    pub fn new(kind: &str, parts: &[&str]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"yc-images page token\0");
        hasher.update(kind.as_bytes());
        for part in parts {
            // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Self {
            digest: hasher.finalize().into(),
        }
    }

    fn check(&self, last_id: &str) -> [u8; CHECK_LEN] {
        let mut hasher = Sha256::new();
        hasher.update(self.digest);
        hasher.update(last_id.as_bytes());
        let full: [u8; 32] = hasher.finalize().into();
        let mut out = [0u8; CHECK_LEN];
        out.copy_from_slice(&full[..CHECK_LEN]);
        out
    }

    /// The token of the page after the resource `last_id`.
    pub fn token(&self, last_id: &str) -> String {
        let mut bytes = Vec::with_capacity(1 + CHECK_LEN + last_id.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.check(last_id));
        bytes.extend_from_slice(last_id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Finishes a page fetched with `limit + 1` rows: keeps `limit` of them and returns the
    /// token of the next page, empty when this is the last.
    pub fn finish_page<T>(
        &self,
        items: &mut Vec<T>,
        limit: usize,
        id: impl Fn(&T) -> &str,
    ) -> String {
        if items.len() <= limit {
            return String::new();
        }
        items.truncate(limit);
        items
            .last()
            .map(|last| self.token(id(last)))
            .unwrap_or_default()
    }

    /// The id to continue after, from a request's `page_token`: `None` for the first page.
    pub fn resume_after(&self, token: &str) -> Result<Option<String>, Status> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = |why: &str| {
            Status::new(
                tonic::Code::InvalidArgument,
                format!("Request validation error: page_token: {why}"),
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid("is not a page token of this API"))?;
        let (version, rest) = bytes
            .split_first()
            .ok_or_else(|| invalid("is not a page token of this API"))?;
        if *version != VERSION || rest.len() < CHECK_LEN {
            return Err(invalid("is not a page token of this API"));
        }
        let (check, id) = rest.split_at(CHECK_LEN);
        let id = std::str::from_utf8(id).map_err(|_| invalid("is not a page token of this API"))?;
        if check != self.check(id) {
            return Err(invalid(
                "belongs to another query; a token only continues the listing that made it",
            ));
        }
        Ok(Some(id.to_owned()))
    }
}
