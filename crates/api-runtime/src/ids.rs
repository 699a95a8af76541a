//! Resource and operation ids in the Yandex Cloud form: 20 characters of `[0-9a-v]`, the first
//! three a prefix naming the kind (`crp` for container registries and their images, `fd8` for
//! compute images and their operations, `b1g` for folders).

/// The alphabet of ids: the 32 characters of base32hex, lower case.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// The length of every id.
pub const ID_LENGTH: usize = 20;

/// A new random id with a three-character prefix: 17 random characters, 85 bits.
///
/// ```
/// let id = yc_api_runtime::ids::new_id("fd8");
/// assert_eq!(id.len(), 20);
/// assert!(id.starts_with("fd8"));
/// assert!(yc_api_runtime::ids::is_valid_id(&id));
/// ```
pub fn new_id(prefix: &str) -> String {
    debug_assert_eq!(prefix.len(), 3, "id prefixes have three characters");
    let mut random = [0u8; ID_LENGTH];
    // With no system randomness at all the process could not do TLS or anything else secure;
    // fall back to time and a counter so that ids stay unique within the process.
    if getrandom::fill(&mut random).is_err() {
        fallback_entropy(&mut random);
    }
    let mut id = String::with_capacity(ID_LENGTH);
    id.push_str(prefix);
    for byte in random.iter().take(ID_LENGTH - prefix.len()) {
        id.push(ALPHABET[usize::from(byte & 0x1f)] as char);
    }
    id
}

/// Whether `id` has the form of an id this server makes.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == ID_LENGTH && id.bytes().all(|b| ALPHABET.contains(&b))
}

fn fallback_entropy(out: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut state = nanos ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 64;
    for byte in out {
        // xorshift: good enough to spread the bits of the seed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_well_formed_and_distinct() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_id("crp")).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|id| is_valid_id(id) && id.starts_with("crp"))
        );
    }

    #[test]
    fn foreign_forms_are_not_ids() {
        for id in [
            "",
            "fd8",
            "FD8ABCDEFGHIJKLMNOPQ",
            "fd8abcdefghijklmnopw",
            "fd8abcdefghijklmnopqr",
        ] {
            assert!(!is_valid_id(id), "{id}");
        }
    }
}
