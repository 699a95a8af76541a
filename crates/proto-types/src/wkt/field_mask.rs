use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `google.protobuf.FieldMask`: the set of fields an update changes.
///
/// Paths are kept as in the proto (`min_disk_size`). The JSON form is one string of
/// lowerCamelCase paths joined by commas (`"name,minDiskSize"`); an empty mask is `""`.
///
/// ```
/// use yc_proto_types::wkt::FieldMask;
///
/// let mask: FieldMask = serde_json::from_str(r#""name,minDiskSize""#).unwrap();
/// assert_eq!(mask.paths, ["name", "min_disk_size"]);
/// assert_eq!(serde_json::to_string(&mask).unwrap(), r#""name,minDiskSize""#);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
pub struct FieldMask {
    /// Field paths in snake_case, nested fields joined by `.`.
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

super::well_known_name!(FieldMask);

impl FieldMask {
    /// A mask of the given snake_case paths.
    pub fn new<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    /// The JSON form: lowerCamelCase paths joined by commas. A path that has no lowerCamelCase
    /// form (an upper-case letter, or `_` not followed by a lower-case letter) is an error,
    /// since reading the JSON back would give another path.
    pub fn to_json_string(&self) -> Result<String, String> {
        let camel: Result<Vec<String>, String> =
            self.paths.iter().map(|p| snake_to_camel(p)).collect();
        Ok(camel?.join(","))
    }

    /// Reads the JSON form. A path with `_` in it is an error: JSON paths are lowerCamelCase.
    pub fn from_json_string(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(Self::default());
        }
        let paths: Result<Vec<String>, String> = text.split(',').map(camel_to_snake).collect();
        Ok(Self { paths: paths? })
    }
}

fn snake_to_camel(path: &str) -> Result<String, String> {
    let mut out = String::with_capacity(path.len());
    let mut after_underscore = false;
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            return Err(format!(
                "field mask path {path:?} has an upper-case letter and no JSON form"
            ));
        }
        if after_underscore {
            if !c.is_ascii_lowercase() {
                return Err(format!(
                    "field mask path {path:?} has '_' not followed by a lower-case letter"
                ));
            }
            out.push(c.to_ascii_uppercase());
            after_underscore = false;
        } else if c == '_' {
            after_underscore = true;
        } else {
            out.push(c);
        }
    }
    if after_underscore {
        return Err(format!("field mask path {path:?} ends with '_'"));
    }
    Ok(out)
}

fn camel_to_snake(path: &str) -> Result<String, String> {
    if path.contains('_') {
        return Err(format!(
            "field mask path {path:?} must be lowerCamelCase, without '_'"
        ));
    }
    Ok(snake_case(path))
}

/// A lowerCamelCase name (`pageSize`, `createdAt`) as the proto field name (`page_size`,
/// `created_at`); a name already in snake_case is unchanged.
///
/// ```
/// assert_eq!(yc_proto_types::snake_case("minDiskSize"), "min_disk_size");
/// assert_eq!(yc_proto_types::snake_case("folder_id"), "folder_id");
/// ```
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Serialize for FieldMask {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_json_string().map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for FieldMask {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldMaskVisitor;
        impl Visitor<'_> for FieldMaskVisitor {
            type Value = FieldMask;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string of comma-separated lowerCamelCase field paths")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<FieldMask, E> {
                FieldMask::from_json_string(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(FieldMaskVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_convert_segment_by_segment() {
        let mask = FieldMask::new(["os.nvidia.driver", "hardware_generation.legacy_features"]);
        let text = mask.to_json_string().unwrap();
        assert_eq!(text, "os.nvidia.driver,hardwareGeneration.legacyFeatures");
        assert_eq!(FieldMask::from_json_string(&text), Ok(mask));
    }

    #[test]
    fn paths_without_a_json_form_are_errors() {
        for path in ["minDiskSize", "name_", "a__b", "a_1"] {
            assert!(FieldMask::new([path]).to_json_string().is_err(), "{path}");
        }
        assert!(FieldMask::from_json_string("min_disk_size").is_err());
    }
}
