//! Rewrites of pbjson's output where it departs from the proto3 JSON mapping.
//!
//! proto3 enums are open: a number the schema does not know is a valid value, kept by the
//! binary codec and written to JSON as the number. pbjson instead fails to serialize such a
//! value and rejects it when parsing. Every enum field is therefore routed through
//! `crate::json::OpenEnum`, which writes known values by name and unknown ones as numbers, and
//! reads names and any `i32`.
//!
//! proto3 JSON also reads `null` as the field's default value; pbjson rejects it for every
//! field that is not a message. Every field read is therefore wrapped in
//! `crate::json::NullAsDefault`, and pbjson's int64 reader in `crate::json::NullableNumber`.
//!
//! Each rewrite matches one exact shape of pbjson's output. Anything enum-like left over after
//! the rewrites is an error, so that a pbjson upgrade that changes its output cannot slip
//! through unnoticed.

use anyhow::{Result, bail};

const SER_ERROR: &str = r#".map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", "#;

pub(super) fn apply(text: &str) -> Result<String> {
    let text = rewrite_serialize(text)?;
    let text = rewrite_deserialize(&text)?;
    let text = rewrite_null_as_default(&text)?;
    for leftover in ["Invalid variant", " as i32"] {
        if let Some(line) = text.lines().find(|l| l.contains(leftover)) {
            bail!("pbjson output has an enum form these fixups do not handle: {line:?}");
        }
    }
    Ok(text)
}

/// ```text
/// let v = image::Status::try_from(self.status)
///     .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.status)))?;
/// ```
/// becomes `let v = crate::json::OpenEnum::<image::Status>::new(self.status);`.
fn rewrite_serialize(text: &str) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let next = lines.get(i + 1).map(|l| l.trim_start());
        if let Some(next) = next.filter(|n| n.starts_with(SER_ERROR)) {
            let Some((indent, ty, expr)) = parse_try_from(line) else {
                bail!("unexpected line before an enum conversion: {line:?}");
            };
            if !next.contains(&format!("{expr})))?;")) {
                bail!("enum conversion of {expr} reports another value: {next:?}");
            }
            out.push_str(&format!(
                "{indent}let v = crate::json::OpenEnum::<{ty}>::new({expr});\n"
            ));
            i += 2;
            continue;
        }
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    Ok(out)
}

/// Splits `    let v = TYPE::try_from(EXPR)` into its indent, type and expression.
fn parse_try_from(line: &str) -> Option<(&str, &str, &str)> {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let rest = body.strip_prefix("let v = ")?;
    let (ty, expr) = rest.split_once("::try_from(")?;
    let expr = expr.strip_suffix(')')?;
    Some((indent, ty, expr))
}

/// `map_.next_value::<TYPE>()? as i32` becomes
/// `map_.next_value::<crate::json::OpenEnum<TYPE>>()?.number()`.
fn rewrite_deserialize(text: &str) -> Result<String> {
    const START: &str = "map_.next_value::<";
    const END: &str = ">()? as i32";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(end) = rest.find(END) {
        let Some(start) = rest[..end].rfind(START) else {
            bail!("an `as i32` conversion not preceded by map_.next_value");
        };
        let ty = &rest[start + START.len()..end];
        out.push_str(&rest[..start]);
        out.push_str(&format!(
            "map_.next_value::<crate::json::OpenEnum<{ty}>>()?.number()"
        ));
        rest = &rest[end + END.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `map_.next_value()?` and `map_.next_value::<T>()?` read `null` as the default:
/// `map_.next_value::<crate::json::NullAsDefault<T>>()?.0`, except pbjson's int64 reader
/// `NumberDeserialize<_>`, which becomes `crate::json::NullableNumber<_>`, and the skipping of
/// unknown fields.
fn rewrite_null_as_default(text: &str) -> Result<String> {
    const CALL: &str = "map_.next_value";
    const NUMBER: &str = "::pbjson::private::NumberDeserialize<_>";
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut rest = text;
    while let Some(at) = rest.find(CALL) {
        out.push_str(&rest[..at]);
        let after = &rest[at + CALL.len()..];
        if let Some(after_call) = after.strip_prefix("()?") {
            out.push_str("map_.next_value::<crate::json::NullAsDefault<_>>()?.0");
            rest = after_call;
        } else if let Some(turbofish) = after.strip_prefix("::<") {
            let Some(end) = matching_angle(turbofish) else {
                bail!("unbalanced generic arguments after map_.next_value");
            };
            let ty = &turbofish[..end];
            let Some(after_call) = turbofish[end..].strip_prefix(">()?") else {
                bail!("map_.next_value::<{ty}> is not followed by ()?");
            };
            if ty == "serde::de::IgnoredAny" {
                out.push_str(&format!("map_.next_value::<{ty}>()?"));
            } else if ty == NUMBER {
                out.push_str("map_.next_value::<crate::json::NullableNumber<_>>()?");
            } else {
                out.push_str(&format!(
                    "map_.next_value::<crate::json::NullAsDefault<{ty}>>()?.0"
                ));
            }
            rest = after_call;
        } else {
            bail!(
                "unexpected use of map_.next_value: {:?}",
                &after[..after.len().min(40)]
            );
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the generic arguments at the start of `text`, up to the `>` that closes them.
fn matching_angle(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if depth == 0 => return Some(i),
            '>' => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_both_directions() {
        let input = r#"        if self.status != 0 {
            let v = image::Status::try_from(self.status)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.status)))?;
            struct_ser.serialize_field("status", &v)?;
        }
                            status__ = Some(map_.next_value::<image::Status>()? as i32);
"#;
        let expected = r#"        if self.status != 0 {
            let v = crate::json::OpenEnum::<image::Status>::new(self.status);
            struct_ser.serialize_field("status", &v)?;
        }
                            status__ = Some(map_.next_value::<crate::json::NullAsDefault<crate::json::OpenEnum<image::Status>>>()?.0.number());
"#;
        assert_eq!(apply(input).unwrap_or_else(|e| panic!("{e:#}")), expected);
    }

    #[test]
    fn every_field_read_takes_null() {
        let input = "a__ = Some(map_.next_value()?);\n\
                     b__ = Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0);\n\
                     c__ = Some(map_.next_value::<std::collections::BTreeMap<_, _>>()?);\n\
                     let _ = map_.next_value::<serde::de::IgnoredAny>()?;\n";
        let expected = "a__ = Some(map_.next_value::<crate::json::NullAsDefault<_>>()?.0);\n\
                        b__ = Some(map_.next_value::<crate::json::NullableNumber<_>>()?.0);\n\
                        c__ = Some(map_.next_value::<crate::json::NullAsDefault<std::collections::BTreeMap<_, _>>>()?.0);\n\
                        let _ = map_.next_value::<serde::de::IgnoredAny>()?;\n";
        assert_eq!(apply(input).unwrap_or_else(|e| panic!("{e:#}")), expected);
    }

    #[test]
    fn unknown_shapes_are_errors() {
        let repeated = "let v = self.kinds.iter().cloned().map(|v| Kind::try_from(v).map_err(|_| serde::ser::Error::custom(format!(\"Invalid variant {}\", v)))).collect::<Result<Vec<_>, _>>()?;\n";
        assert!(apply(repeated).is_err());
    }
}
