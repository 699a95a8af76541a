//! Every message type this crate knows, by full name: what `google.protobuf.Any` needs to
//! write its payload as JSON and to read it back.

use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

include!("generated/type_registry.rs");

/// How to move one message type between its binary and its JSON form.
pub(crate) struct MessageType {
    full_name: &'static str,
    to_json: fn(&[u8]) -> Result<Value, String>,
    from_json: fn(Value) -> Result<Vec<u8>, String>,
    /// Well-known types with their own JSON form (a string, not an object) sit under
    /// `"value"` inside an Any; every other message's fields sit beside `"@type"`.
    special_json: bool,
}

impl MessageType {
    /// The entry of the message type `T`, whose full name is `full_name`.
    pub(crate) const fn of<T>(full_name: &'static str) -> Self
    where
        T: Message + Default + Serialize + DeserializeOwned,
    {
        Self {
            full_name,
            to_json: to_json::<T>,
            from_json: from_json::<T>,
            special_json: false,
        }
    }

    /// The entry of a well-known type whose JSON form is not an object.
    pub(crate) const fn special<T>(full_name: &'static str) -> Self
    where
        T: Message + Default + Serialize + DeserializeOwned,
    {
        Self {
            special_json: true,
            ..Self::of::<T>(full_name)
        }
    }

    pub(crate) fn full_name(&self) -> &'static str {
        self.full_name
    }

    pub(crate) fn special_json(&self) -> bool {
        self.special_json
    }

    /// Decodes protobuf bytes of this type and writes them as a JSON value.
    pub(crate) fn bytes_to_json(&self, bytes: &[u8]) -> Result<Value, String> {
        (self.to_json)(bytes)
    }

    /// Reads a JSON value of this type and encodes it as protobuf bytes.
    pub(crate) fn json_to_bytes(&self, value: Value) -> Result<Vec<u8>, String> {
        (self.from_json)(value)
    }
}

fn to_json<T: Message + Default + Serialize>(bytes: &[u8]) -> Result<Value, String> {
    let message = T::decode(bytes).map_err(|e| e.to_string())?;
    serde_json::to_value(&message).map_err(|e| e.to_string())
}

fn from_json<T: Message + DeserializeOwned>(value: Value) -> Result<Vec<u8>, String> {
    let message: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok(message.encode_to_vec())
}

/// The well-known types this crate implements, sorted by full name.
static WELL_KNOWN_TYPES: &[MessageType] = &[
    MessageType::special::<crate::wkt::Any>("google.protobuf.Any"),
    MessageType::of::<crate::wkt::Empty>("google.protobuf.Empty"),
    MessageType::special::<crate::wkt::FieldMask>("google.protobuf.FieldMask"),
    MessageType::special::<crate::wkt::Timestamp>("google.protobuf.Timestamp"),
];

/// Finds a message type by its full name, e.g. `yandex.cloud.compute.v1.Image`.
pub(crate) fn find(full_name: &str) -> Option<&'static MessageType> {
    [MESSAGE_TYPES, WELL_KNOWN_TYPES]
        .into_iter()
        .find_map(|types| {
            types
                .binary_search_by(|t| t.full_name.cmp(full_name))
                .ok()
                .map(|i| &types[i])
        })
}

/// The full names of every message type that a `google.protobuf.Any` of this crate can carry
/// in JSON: the generated API messages and the well-known types.
///
/// ```
/// let names: Vec<_> = yc_proto_types::message_type_names().collect();
/// assert!(names.contains(&"yandex.cloud.compute.v1.CreateImageMetadata"));
/// assert!(names.contains(&"google.protobuf.Empty"));
/// ```
pub fn message_type_names() -> impl Iterator<Item = &'static str> {
    MESSAGE_TYPES
        .iter()
        .chain(WELL_KNOWN_TYPES)
        .map(MessageType::full_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for types in [MESSAGE_TYPES, WELL_KNOWN_TYPES] {
            assert!(types.windows(2).all(|w| w[0].full_name < w[1].full_name));
        }
    }

    #[test]
    fn finds_generated_and_well_known_types() {
        for name in message_type_names() {
            assert_eq!(find(name).map(MessageType::full_name), Some(name));
        }
        assert!(find("yandex.cloud.compute.v1.NoSuchMessage").is_none());
    }
}
