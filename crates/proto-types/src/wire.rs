//! The `prost` runtime as the generated code sees it (`prost_path = "crate::wire"`), with one
//! change: a map entry is always encoded with both its key and its value.
//!
//! prost leaves a key or value out of a map entry when it equals the default (an empty label
//! value, say). That is valid protobuf, and decoders read it back the same, but the official
//! runtimes (C++, upb behind Python, Go, Java) always write both, so their deterministic
//! serialization of the same message has different bytes. Writing both here makes ours equal
//! theirs byte for byte.
//!
//! Entries go in ascending byte order of their keys (the maps are `BTreeMap`s), as C++, Go and
//! Java order them deterministically. upb, behind the Python SDK, differs in one case: of two
//! keys where one is a prefix of the other (`"a"`, `"ab"`) it writes the longer first.

pub(crate) use prost::*;

pub(crate) mod encoding {
    pub(crate) use prost::encoding::*;

    /// `prost::encoding::btree_map` with entries that always carry key and value.
    pub(crate) mod btree_map {
        use std::collections::BTreeMap;

        use prost::bytes::BufMut;
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

        // The `_with_default` functions serve maps with enum values.
        #[allow(unused_imports)]
        pub(crate) use prost::encoding::btree_map::{merge, merge_with_default};

        /// Encodes every entry, in key order, with both fields.
        pub(crate) fn encode<K, V, B, KE, KL, VE, VL>(
            key_encode: KE,
            key_encoded_len: KL,
            val_encode: VE,
            val_encoded_len: VL,
            tag: u32,
            values: &BTreeMap<K, V>,
            buf: &mut B,
        ) where
            B: BufMut,
            KE: Fn(u32, &K, &mut B),
            KL: Fn(u32, &K) -> usize,
            VE: Fn(u32, &V, &mut B),
            VL: Fn(u32, &V) -> usize,
        {
            for (key, val) in values {
                let len = key_encoded_len(1, key) + val_encoded_len(2, val);
                encode_key(tag, WireType::LengthDelimited, buf);
                encode_varint(len as u64, buf);
                key_encode(1, key, buf);
                val_encode(2, val, buf);
            }
        }

        /// As [`encode`]: the default value is written like any other.
        #[allow(clippy::too_many_arguments, dead_code)]
        pub(crate) fn encode_with_default<K, V, B, KE, KL, VE, VL>(
            key_encode: KE,
            key_encoded_len: KL,
            val_encode: VE,
            val_encoded_len: VL,
            _val_default: &V,
            tag: u32,
            values: &BTreeMap<K, V>,
            buf: &mut B,
        ) where
            B: BufMut,
            KE: Fn(u32, &K, &mut B),
            KL: Fn(u32, &K) -> usize,
            VE: Fn(u32, &V, &mut B),
            VL: Fn(u32, &V) -> usize,
        {
            encode(
                key_encode,
                key_encoded_len,
                val_encode,
                val_encoded_len,
                tag,
                values,
                buf,
            );
        }

        /// The length [`encode`] writes.
        pub(crate) fn encoded_len<K, V, KL, VL>(
            key_encoded_len: KL,
            val_encoded_len: VL,
            tag: u32,
            values: &BTreeMap<K, V>,
        ) -> usize
        where
            KL: Fn(u32, &K) -> usize,
            VL: Fn(u32, &V) -> usize,
        {
            key_len(tag) * values.len()
                + values
                    .iter()
                    .map(|(key, val)| {
                        let len = key_encoded_len(1, key) + val_encoded_len(2, val);
                        encoded_len_varint(len as u64) + len
                    })
                    .sum::<usize>()
        }

        /// As [`encoded_len`].
        #[allow(dead_code)]
        pub(crate) fn encoded_len_with_default<K, V, KL, VL>(
            key_encoded_len: KL,
            val_encoded_len: VL,
            _val_default: &V,
            tag: u32,
            values: &BTreeMap<K, V>,
        ) -> usize
        where
            KL: Fn(u32, &K) -> usize,
            VL: Fn(u32, &V) -> usize,
        {
            encoded_len(key_encoded_len, val_encoded_len, tag, values)
        }
    }
}
