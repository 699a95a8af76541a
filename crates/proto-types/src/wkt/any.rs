use std::fmt;

use prost::Name;
use serde::de::Error as _;
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::type_registry;

/// `google.protobuf.Any`: a message of any type, named by its type URL.
///
/// Its JSON form names the type under `"@type"` and carries the message's own fields beside
/// it; a well-known type whose JSON form is not an object (Timestamp, FieldMask, Any) sits
/// under `"value"`:
///
/// ```
/// use yc_proto_types::wkt::Any;
/// use yc_proto_types::yandex::cloud::compute::v1::CreateImageMetadata;
///
/// let metadata = CreateImageMetadata { image_id: "fd8abcdefghijklmnopq".into() };
/// let any = Any::from_msg(&metadata);
/// assert_eq!(
///     serde_json::to_string(&any).unwrap(),
///     r#"{"@type":"type.googleapis.com/yandex.cloud.compute.v1.CreateImageMetadata","imageId":"fd8abcdefghijklmnopq"}"#,
/// );
/// assert_eq!(any.to_msg::<CreateImageMetadata>().unwrap(), metadata);
/// ```
///
/// Both directions go through the registry of every message type of this crate; a type URL
/// outside it is an error, never a panic.
#[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Any {
    /// `type.googleapis.com/<full message name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The message, protobuf-encoded.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

super::well_known_name!(Any);

/// Why an [`Any`] could not be packed or unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyError {
    /// The Any holds another type than the one asked for.
    TypeMismatch {
        /// The full name asked for.
        expected: String,
        /// The type URL the Any carries.
        actual: String,
    },
    /// The bytes are not a valid encoding of the type.
    Decode(String),
}

impl fmt::Display for AnyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TypeMismatch { expected, actual } => {
                write!(f, "expected an Any of {expected}, found {actual:?}")
            }
            Self::Decode(e) => write!(f, "cannot decode the Any's message: {e}"),
        }
    }
}

impl std::error::Error for AnyError {}

impl Any {
    /// Packs a message.
    pub fn from_msg<M: Name>(message: &M) -> Self {
        Self {
            type_url: M::type_url(),
            value: message.encode_to_vec(),
        }
    }

    /// The full message name in the type URL: what follows its last `/`.
    pub fn type_name(&self) -> &str {
        type_name(&self.type_url)
    }

    /// Whether the Any holds a message of type `M`.
    pub fn is<M: Name>(&self) -> bool {
        self.type_name() == M::full_name()
    }

    /// Unpacks a message of type `M`.
    pub fn to_msg<M: Name + Default>(&self) -> Result<M, AnyError> {
        if !self.is::<M>() {
            return Err(AnyError::TypeMismatch {
                expected: M::full_name(),
                actual: self.type_url.clone(),
            });
        }
        M::decode(self.value.as_slice()).map_err(|e| AnyError::Decode(e.to_string()))
    }
}

fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}

fn lookup(type_url: &str) -> Result<&'static type_registry::MessageType, String> {
    if !type_url.contains('/') {
        return Err(format!(
            "Any type URL {type_url:?} is not of the form type.googleapis.com/<message name>"
        ));
    }
    type_registry::find(type_name(type_url))
        .ok_or_else(|| format!("Any holds {type_url:?}, a type this schema does not know"))
}

impl Serialize for Any {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kind = lookup(&self.type_url).map_err(S::Error::custom)?;
        let value = kind
            .bytes_to_json(&self.value)
            .map_err(|e| S::Error::custom(format!("Any of {}: {e}", kind.full_name())))?;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("@type", &self.type_url)?;
        match value {
            Value::Object(fields) if !kind.special_json() => {
                for (name, field) in &fields {
                    map.serialize_entry(name, field)?;
                }
            }
            other => map.serialize_entry("value", &other)?,
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let type_url = match fields.remove("@type") {
            Some(Value::String(url)) => url,
            Some(_) => return Err(D::Error::custom("Any \"@type\" must be a string")),
            None => {
                return Err(D::Error::custom(
                    "Any needs an \"@type\" naming its message",
                ));
            }
        };
        let kind = lookup(&type_url).map_err(D::Error::custom)?;
        let payload = if kind.special_json() {
            fields.remove("value").unwrap_or(Value::Null)
        } else {
            Value::Object(fields)
        };
        let value = kind
            .json_to_bytes(payload)
            .map_err(|e| D::Error::custom(format!("Any of {}: {e}", kind.full_name())))?;
        Ok(Any { type_url, value })
    }
}
