//! Property tests of what the registry reads from outside: manifests as pushed, and OCI image
//! layouts as found on disk. Whatever comes in, the answer is a value or an error that says
//! what is wrong, never a panic; a manifest taken has well-formed digests and sizes.
//!
//! `cargo xtask fuzz` runs these with many more cases (`PROPTEST_CASES`).

use proptest::prelude::*;
use yc_registry_image::oci::{ImageManifest, is_sha256_digest, read_layout};

fn digest_like() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        "sha256:[0-9a-f]{64}".prop_map(serde_json::Value::from),
        "sha256:[0-9a-fA-F]{0,70}".prop_map(serde_json::Value::from),
        "(sha512|md5|SHA256):[0-9a-f]{0,10}".prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ]
}

fn descriptor() -> impl Strategy<Value = serde_json::Value> {
    (
        digest_like(),
        prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("7")),
            Just(serde_json::Value::Null)
        ],
        prop_oneof![
            Just("application/vnd.oci.image.layer.v1.tar+gzip"),
            Just("application/vnd.oci.image.config.v1+json"),
            Just("text/plain"),
        ],
        prop::option::of(prop::collection::vec("[\\PC]{0,10}", 0..2)),
    )
        .prop_map(|(digest, size, media, urls)| {
            let mut d = serde_json::json!({"digest": digest, "size": size, "mediaType": media});
            if let Some(urls) = urls {
                d["urls"] = serde_json::Value::from(urls);
            }
            d
        })
}

/// Manifests close enough to real ones to get past the JSON.
fn manifest_like() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(serde_json::Value::from(2)),
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("2"))
        ],
        prop::option::of(prop_oneof![
            Just("application/vnd.oci.image.manifest.v1+json"),
            Just("application/vnd.docker.distribution.manifest.v2+json"),
            Just("application/vnd.oci.image.index.v1+json"),
            Just("application/vnd.docker.distribution.manifest.list.v2+json"),
            Just("application/json"),
        ]),
        prop::option::of(descriptor()),
        prop::collection::vec(descriptor(), 0..4),
    )
        .prop_map(|(version, media, config, layers)| {
            let mut m = serde_json::json!({"schemaVersion": version, "layers": layers});
            if let Some(media) = media {
                m["mediaType"] = serde_json::Value::from(media);
            }
            if let Some(config) = config {
                m["config"] = config;
            }
            m.to_string().into_bytes()
        })
}

proptest! {
    #[test]
    fn fuzz_manifests_parse_or_say_why(bytes in prop_oneof![manifest_like(), prop::collection::vec(any::<u8>(), 0..256)]) {
        match ImageManifest::parse(bytes.clone()) {
            Ok(manifest) => {
                prop_assert_eq!(&manifest.bytes, &bytes);
                for blob in manifest.manifest.blobs() {
                    prop_assert!(is_sha256_digest(&blob.digest), "{}", blob.digest);
                    prop_assert!(blob.size >= 0);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// What a push may send, image or index: parsed with every descriptor checked, or
    /// refused with a reason; never a panic.
    #[test]
    fn fuzz_pushed_manifests_parse_or_say_why(
        bytes in prop_oneof![
            manifest_like(),
            (prop::option::of(prop_oneof![
                Just("application/vnd.oci.image.index.v1+json"),
                Just("application/vnd.docker.distribution.manifest.list.v2+json"),
                Just("text/plain"),
            ]), prop::collection::vec(descriptor(), 0..4), prop::option::of(descriptor()))
                .prop_map(|(media, manifests, subject)| {
                    let mut m = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
                    if let Some(media) = media {
                        m["mediaType"] = serde_json::Value::from(media);
                    }
                    if let Some(subject) = subject {
                        m["subject"] = subject;
                    }
                    m.to_string().into_bytes()
                }),
            prop::collection::vec(any::<u8>(), 0..256),
        ]
    ) {
        use yc_registry_image::oci::PushedManifest;
        match PushedManifest::parse(bytes.clone()) {
            Ok(PushedManifest::Image(manifest)) => {
                prop_assert_eq!(&manifest.bytes, &bytes);
                for blob in manifest.manifest.blobs() {
                    prop_assert!(is_sha256_digest(&blob.digest), "{}", blob.digest);
                }
            }
            Ok(PushedManifest::Index(index)) => {
                prop_assert_eq!(&index.bytes, &bytes);
                for d in index.index.manifests.iter().chain(&index.index.subject) {
                    prop_assert!(is_sha256_digest(&d.digest), "{}", d.digest);
                    prop_assert!(d.size >= 0);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn fuzz_layouts_read_or_say_why(
        index in prop_oneof![
            (prop::collection::vec((digest_like(), prop::option::of("[a-z0-9:._-]{0,12}"), any::<i64>()), 0..3)).prop_map(|entries| {
                let manifests: Vec<serde_json::Value> = entries.into_iter().map(|(digest, tag, size)| {
                    let mut e = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size});
                    if let Some(tag) = tag {
                        e["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
                    }
                    e
                }).collect();
                serde_json::json!({"schemaVersion": 2, "manifests": manifests}).to_string()
            }),
            "[\\PC]{0,64}",
        ],
        layout in prop_oneof![Just(r#"{"imageLayoutVersion":"1.0.0"}"#.to_owned()), "[\\PC]{0,32}"],
        manifest in manifest_like(),
        tag in prop::option::of("[a-z0-9]{0,4}"),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(dir.path().join("index.json"), &index).unwrap();
        std::fs::write(dir.path().join("oci-layout"), &layout).unwrap();
        // A manifest the index may name, by its digest.
        let digest = yc_registry_image::oci::sha256_digest(&manifest);
        std::fs::write(blobs.join(&digest[7..]), &manifest).unwrap();
        if let Err(e) = read_layout(dir.path(), tag.as_deref()) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
