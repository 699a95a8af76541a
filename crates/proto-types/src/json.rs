//! JSON helpers the generated serde code calls.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IntoDeserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A field read that takes `null` as the field's default value, as proto3 JSON does. The
/// codegen fixups wrap every field read of the generated code in it.
pub(crate) struct NullAsDefault<T>(pub(crate) T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for NullAsDefault<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self(
            Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
        ))
    }
}

/// pbjson's reader of 64-bit integers (a string or a number), taking `null` as 0.
pub(crate) struct NullableNumber<T>(pub(crate) T);

impl<'de, T> Deserialize<'de> for NullableNumber<T>
where
    T: Default,
    pbjson::private::NumberDeserialize<T>: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = Option::<pbjson::private::NumberDeserialize<T>>::deserialize(deserializer)?;
        Ok(Self(number.map(|n| n.0).unwrap_or_default()))
    }
}

/// The JSON form of a proto3 enum field, which is open: a value the schema knows is written by
/// name, any other `i32` as a number; names and numbers are both read. The codegen fixups route
/// every enum field of the generated code through this type.
pub(crate) struct OpenEnum<E> {
    number: i32,
    kind: PhantomData<E>,
}

impl<E> OpenEnum<E> {
    pub(crate) fn new(number: i32) -> Self {
        Self {
            number,
            kind: PhantomData,
        }
    }

    pub(crate) fn number(&self) -> i32 {
        self.number
    }
}

impl<E> Default for OpenEnum<E> {
    fn default() -> Self {
        Self::new(0)
    }
}

impl<E> Serialize for OpenEnum<E>
where
    E: TryFrom<i32> + Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match E::try_from(self.number) {
            Ok(known) => known.serialize(serializer),
            Err(_) => serializer.serialize_i32(self.number),
        }
    }
}

impl<'de, E> Deserialize<'de> for OpenEnum<E>
where
    E: Deserialize<'de> + Into<i32>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OpenEnumVisitor(PhantomData))
    }
}

struct OpenEnumVisitor<E>(PhantomData<E>);

impl<'de, E> Visitor<'de> for OpenEnumVisitor<E>
where
    E: Deserialize<'de> + Into<i32>,
{
    type Value = OpenEnum<E>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an enum value name or a 32-bit integer")
    }

    fn visit_str<Er: de::Error>(self, name: &str) -> Result<Self::Value, Er> {
        let known = E::deserialize(name.into_deserializer())?;
        Ok(OpenEnum::new(known.into()))
    }

    fn visit_i64<Er: de::Error>(self, v: i64) -> Result<Self::Value, Er> {
        i32::try_from(v)
            .map(OpenEnum::new)
            .map_err(|_| Er::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_u64<Er: de::Error>(self, v: u64) -> Result<Self::Value, Er> {
        i32::try_from(v)
            .map(OpenEnum::new)
            .map_err(|_| Er::invalid_value(de::Unexpected::Unsigned(v), &self))
    }
}
