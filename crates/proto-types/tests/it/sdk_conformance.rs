//! Our encodings against the official Yandex Cloud Python SDK (`yandexcloud`), fixture by
//! fixture: our bytes must equal the SDK's deterministic serialization of the message it reads
//! from our JSON, and the SDK's JSON of the message it reads from our bytes must equal ours.
//!
//! The SDK runs in the Python environment that `cargo xtask sdk-env` sets up; its interpreter
//! is passed in `YC_SDK_PYTHON`. `cargo xtask ci` always passes it and sets
//! `YC_REQUIRE_SDK=1`, so there the suite can never be skipped.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde_json::{Value, json};

fn sdk_python() -> Option<PathBuf> {
    let python = std::env::var_os("YC_SDK_PYTHON").map(PathBuf::from);
    if python.is_none() {
        let required = std::env::var_os("YC_REQUIRE_SDK").is_some_and(|v| v == "1")
            || std::env::var_os("CI").is_some_and(|v| v == "true");
        assert!(
            !required,
            "YC_REQUIRE_SDK=1 or CI=true, but YC_SDK_PYTHON is not set"
        );
        eprintln!(
            "SKIPPED: SDK conformance needs the official Python SDK; \
             run `cargo xtask ci`, or set YC_SDK_PYTHON=$(cargo xtask sdk-env)"
        );
    }
    python
}

#[test]
fn encodings_match_the_official_python_sdk() {
    let Some(python) = sdk_python() else { return };
    let fixtures = crate::fixtures::all();
    let input: String = fixtures
        .iter()
        .map(|f| {
            let line = json!({
                "name": f.name,
                "type": f.type_name,
                "hex": hex::encode(&f.bytes),
                "json": f.json,
            });
            format!("{line}\n")
        })
        .collect();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_conformance.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input.as_bytes()))
        .transpose()
        .unwrap_or_else(|e| panic!("writing fixtures to the SDK: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for the SDK: {e}"));
    assert!(
        output.status.success(),
        "the SDK script failed: {}",
        output.status
    );

    let results: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("SDK wrote {l:?}: {e}")))
        .collect();
    assert_eq!(
        results.len(),
        fixtures.len(),
        "the SDK answered for every fixture"
    );

    let mut failures = Vec::new();
    for (fixture, result) in fixtures.iter().zip(&results) {
        let name = format!("{} ({})", fixture.name, fixture.type_name);
        assert_eq!(result["name"], fixture.name.as_str());
        if let Some(error) = result.get("error") {
            failures.push(format!("{name}: the SDK rejects it: {error}"));
            continue;
        }
        let ours = hex::encode(&fixture.bytes);
        if result["sdk_hex"] != ours.as_str() {
            failures.push(format!(
                "{name}: bytes differ\n  ours: {ours}\n  SDK:  {}",
                result["sdk_hex"]
            ));
        }
        if result["sdk_json"] != fixture.json {
            failures.push(format!(
                "{name}: JSON differs\n  ours: {}\n  SDK:  {}",
                fixture.json, result["sdk_json"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ from the SDK:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} fixtures agree with the official Python SDK",
        fixtures.len()
    );
}

/// Full names of the messages in the schema that have no fields, and so no populated value.
fn fieldless_messages() -> BTreeSet<String> {
    fn walk(scope: &str, messages: &[DescriptorProto], out: &mut BTreeSet<String>) {
        for message in messages {
            let name = format!("{scope}.{}", message.name());
            if message.field.is_empty() {
                out.insert(name.clone());
            }
            walk(&name, &message.nested_type, out);
        }
    }
    let set = FileDescriptorSet::decode(yc_proto_types::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|e| panic!("the shipped descriptor set does not decode: {e}"));
    let mut out = BTreeSet::new();
    for file in &set.file {
        walk(file.package(), &file.message_type, &mut out);
    }
    out
}

/// Every message type of the schema has a default fixture and a populated one, so that both
/// the snapshots and the SDK comparison cover it.
#[test]
fn every_message_type_has_fixtures() {
    let fixtures = crate::fixtures::all();
    let fieldless = fieldless_messages();
    assert!(fieldless.contains("yandex.cloud.compute.v1.Generation2HardwareFeatures"));
    let mut missing = BTreeSet::new();
    for name in yc_proto_types::message_type_names() {
        if name.starts_with("google.protobuf.") {
            continue;
        }
        let of_type = || fixtures.iter().filter(move |f| f.type_name == name);
        if !of_type().any(|f| f.is_default) {
            missing.insert(format!("{name}: default value"));
        }
        if !fieldless.contains(name) && !of_type().any(|f| !f.is_default) {
            missing.insert(format!("{name}: populated value"));
        }
    }
    assert!(missing.is_empty(), "fixtures missing: {missing:#?}");
}
