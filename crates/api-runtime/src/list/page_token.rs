//! Page tokens: opaque to callers, bound to the query that made them, unforgeable, and short
//! (the API allows 100 characters).
//!
//! A token carries the id of the last resource of its page and a MAC (HMAC-SHA-256 with a
//! server key) over the query and that id: the same scope, filter and order. Only the server
//! can make one, so a token cannot name a resource its query did not return (say, an image of
//! a folder the caller may not read, to learn where it sorts). The store finds the sort
//! position of that resource by id and continues after it (keyset paging), so a resource that
//! exists for the whole walk is returned exactly once however others come and go; stores keep
//! a deleted resource's sort keys for a while so that a token whose last resource was deleted
//! still works. A token from another query, altered, or made with another key is
//! `INVALID_ARGUMENT`.
//!
//! The keys ([`TokenKeys`]) are kept in the operation store, so every replica sharing it signs
//! and checks with the same ones, and are rotated: a new key is made every
//! [`KEY_ROTATION`], signs only once every replica has had time to read it
//! ([`KEY_ACTIVATION`]), and old keys go on checking tokens in flight until [`KEY_LIFETIME`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use yc_proto_types::google::rpc::Status;

const VERSION: u8 = 2;
const MAC_LEN: usize = 12;

/// How often a new page token key is made.
pub const KEY_ROTATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How old a key must be before it signs: every replica reads the keys more often than this.
pub const KEY_ACTIVATION: Duration = Duration::from_secs(120);
/// How long a key checks tokens: a listing continued later starts again.
pub const KEY_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// A page token key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// Its number, increasing; a token names it by its lowest byte.
    pub id: i64,
    /// 32 random bytes.
    pub secret: Vec<u8>,
    /// When it was made, in nanoseconds since the epoch.
    pub created_at: i64,
}

impl TokenKey {
    /// A new key numbered `id`, made at `created_at`.
    pub fn generate(id: i64, created_at: i64) -> Self {
        let mut secret = vec![0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            // No randomness from the system call: the standard library's per-process random
            // hash keys, and the time.
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = Sha256::new();
            for n in 0..8u64 {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u64(n);
                hasher.update(h.finish().to_le_bytes());
            }
            hasher.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
            secret = hasher.finalize().to_vec();
        }
        Self {
            id,
            secret,
            created_at,
        }
    }
}

/// The keys page tokens are signed and checked with. Cheap to clone; clones share the keys,
/// which [`set`](Self::set) replaces as the store's change.
#[derive(Debug, Clone)]
pub struct TokenKeys {
    keys: Arc<RwLock<Keys>>,
}

#[derive(Debug)]
struct Keys {
    /// The key that signs.
    signing: TokenKey,
    /// Every key that checks, the signing one included.
    all: Vec<TokenKey>,
}

impl TokenKeys {
    /// One random key of this process's own: tokens made with it work only here.
    pub fn ephemeral() -> Self {
        let key = TokenKey::generate(0, 0);
        Self {
            keys: Arc::new(RwLock::new(Keys {
                signing: key.clone(),
                all: vec![key],
            })),
        }
    }

    /// The keys as stored, read at `now` (nanoseconds): the newest one at least
    /// [`KEY_ACTIVATION`] old signs (the oldest, when none is that old yet), and all check.
    /// Nothing changes when `keys` is empty.
    pub fn set(&self, mut keys: Vec<TokenKey>, now: i64) {
        keys.sort_by_key(|k| k.id);
        let active_before = now.saturating_sub(nanos_of(KEY_ACTIVATION));
        let signing = keys
            .iter()
            .rev()
            .find(|k| k.created_at <= active_before)
            .or_else(|| keys.first())
            .cloned();
        let (Some(signing), Ok(mut current)) = (signing, self.keys.write()) else {
            return;
        };
        *current = Keys { signing, all: keys };
    }

    fn sign(&self, digest: &[u8; 32], last_id: &str) -> Option<(u8, [u8; MAC_LEN])> {
        let keys = self.keys.read().ok()?;
        let key = &keys.signing;
        Some((key.id as u8, mac(&key.secret, digest, last_id)))
    }

    fn verify(&self, key: u8, digest: &[u8; 32], last_id: &str, check: &[u8]) -> bool {
        let Ok(keys) = self.keys.read() else {
            return false;
        };
        keys.all.iter().filter(|k| k.id as u8 == key).any(|k| {
            let Ok(mut verifier) = Hmac::<Sha256>::new_from_slice(&k.secret) else {
                return false;
            };
            verifier.update(digest);
            verifier.update(last_id.as_bytes());
            verifier.verify_truncated_left(check).is_ok()
        })
    }
}

fn nanos_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn mac(secret: &[u8], digest: &[u8; 32], last_id: &str) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) {
        mac.update(digest);
        mac.update(last_id.as_bytes());
        out.copy_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
    }
    out
}

/// The error for a page token whose last resource the store no longer knows.
pub fn token_too_old() -> Status {
    yc_proto_types::validation_error(
        "page_token",
        "the listing it continues is too old; list again from the first page",
    )
}

/// What a page token is bound to: the parts of a List request that define the listing (not
/// the page size, which may change between pages).
///
/// ```
/// use yc_api_runtime::list::{QueryKey, TokenKeys};
///
/// let keys = TokenKeys::ephemeral();
/// let query = QueryKey::new(&keys, "containerregistry.ListImages", &["crp1", "", "", "name = 'x'", ""]);
/// let token = query.token("crpabcdefghijklmnopq");
/// assert!(token.len() <= 100);
/// assert_eq!(query.resume_after(&token).unwrap().as_deref(), Some("crpabcdefghijklmnopq"));
///
/// let other = QueryKey::new(&keys, "containerregistry.ListImages", &["crp2", "", "", "", ""]);
/// assert!(other.resume_after(&token).is_err());
/// assert_eq!(query.resume_after("").unwrap(), None);
/// // Another server's key: not a token of this one.
/// let elsewhere = QueryKey::new(&TokenKeys::ephemeral(), "containerregistry.ListImages", &["crp1", "", "", "name = 'x'", ""]);
/// assert!(elsewhere.resume_after(&token).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct QueryKey {
    digest: [u8; 32],
    keys: TokenKeys,
}

impl QueryKey {
    /// The key of a listing of `kind` defined by `parts`, its tokens signed with `keys`.
    pub fn new(keys: &TokenKeys, kind: &str, parts: &[&str]) -> Self {
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
            keys: keys.clone(),
        }
    }

    /// The token of the page after the resource `last_id`.
    pub fn token(&self, last_id: &str) -> String {
        let (key, mac) = self
            .keys
            .sign(&self.digest, last_id)
            .unwrap_or((0, [0u8; MAC_LEN]));
        let mut bytes = Vec::with_capacity(2 + MAC_LEN + last_id.len());
        bytes.push(VERSION);
        bytes.push(key);
        bytes.extend_from_slice(&mac);
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
        let invalid = |why: &str| yc_proto_types::validation_error("page_token", why);
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid("is not a page token of this API"))?;
        let [version, key, rest @ ..] = bytes.as_slice() else {
            return Err(invalid("is not a page token of this API"));
        };
        if *version != VERSION || rest.len() < MAC_LEN {
            return Err(invalid("is not a page token of this API"));
        }
        let (check, id) = rest.split_at(MAC_LEN);
        let id = std::str::from_utf8(id).map_err(|_| invalid("is not a page token of this API"))?;
        if !self.keys.verify(*key, &self.digest, id, check) {
            return Err(invalid(
                "was not made by this server for this query; a token only continues the \
                 listing that made it",
            ));
        }
        Ok(Some(id.to_owned()))
    }
}
