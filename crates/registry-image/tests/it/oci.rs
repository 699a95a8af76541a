//! Reading OCI image layouts and manifests: every digest and size checked, nothing taken that
//! does not verify.

use crate::support::TestImage;
use yc_registry_image::oci::{ImageManifest, OciError, read_layout};

fn image() -> TestImage {
    TestImage::new(
        "base",
        &[
            ("etc/os-release", b"NAME=Test\n"),
            ("bin/hello", b"\x7fELF hello"),
        ],
    )
}

#[test]
fn a_good_layout_gives_its_manifest_config_and_layers() {
    let dir = tempfile::tempdir().unwrap();
    let image = image();
    image.write_layout(dir.path(), "22.04");
    let read = read_layout(dir.path(), Some("22.04")).unwrap();
    assert_eq!(read.tag.as_deref(), Some("22.04"));
    assert_eq!(read.manifest.digest, image.digest());
    assert_eq!(read.manifest.bytes, image.manifest);
    let layers = &read.manifest.manifest.layers;
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0].digest, crate::support::sha256(&image.layers[0]));
    assert_eq!(
        read.manifest.compressed_size(),
        (image.layers[0].len() + image.layers[1].len()) as i64
    );
    assert_eq!(
        read.manifest.manifest.config.size,
        image.config.len() as i64
    );

    // With one image in the layout the tag may be left out.
    let only = read_layout(dir.path(), None).unwrap();
    assert_eq!(only.manifest.digest, image.digest());
}

#[test]
fn a_layout_with_several_images_is_read_by_tag() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (image(), TestImage::new("other", &[("a", b"a")]));
    a.write_layout(dir.path(), "a");
    b.write_layout(dir.path(), "b");
    let read = read_layout(dir.path(), Some("b")).unwrap();
    assert_eq!(read.manifest.digest, b.digest());
    assert!(matches!(
        read_layout(dir.path(), None),
        Err(OciError::NoSuchTag(_))
    ));
    let missing = read_layout(dir.path(), Some("c"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        missing.as_deref(),
        Some("the layout has no image tagged \"c\"")
    );
}

#[test]
fn a_layer_whose_bytes_changed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = image();
    image.write_layout(dir.path(), "t");
    let path = TestImage::blob_path(dir.path(), &image.layers[1]);
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    match read_layout(dir.path(), Some("t")) {
        Err(OciError::Mismatch { digest, what }) => {
            assert_eq!(digest, crate::support::sha256(&image.layers[1]));
            assert!(what.starts_with("its content has digest sha256:"), "{what}");
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
}

#[test]
fn a_blob_of_the_wrong_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = image();
    image.write_layout(dir.path(), "t");
    // The manifest says one size; make the descriptor in the index say another.
    let index_path = dir.path().join("index.json");
    let index = std::fs::read_to_string(&index_path).unwrap_or_default();
    let wrong = index.replace(&format!("\"size\":{}", image.manifest.len()), "\"size\":1");
    std::fs::write(&index_path, wrong).unwrap();
    let error = read_layout(dir.path(), Some("t"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains(&format!(
            "it is {} bytes, the descriptor says 1",
            image.manifest.len()
        )),
        "{error}"
    );
}

#[test]
fn a_missing_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = image();
    image.write_layout(dir.path(), "t");
    std::fs::remove_file(TestImage::blob_path(dir.path(), &image.config)).unwrap();
    match read_layout(dir.path(), Some("t")) {
        Err(OciError::MissingBlob(digest)) => {
            assert_eq!(digest, crate::support::sha256(&image.config))
        }
        other => panic!("expected a missing blob, got {other:?}"),
    }
}

#[test]
fn manifests_that_are_not_single_images_are_refused() {
    let rows: Vec<(&str, &str)> = vec![
        (
            r#"{"schemaVersion":1}"#,
            "invalid image: not an image manifest",
        ),
        (
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#,
            "unsupported image: this is an image index (a multi-platform image)",
        ),
        (
            r#"{"schemaVersion":2,"config":{"digest":"md5:abc","size":1},"layers":[]}"#,
            "invalid image: digest \"md5:abc\" is not sha256:<64 lower-case hex>",
        ),
        (
            r#"{"schemaVersion":3,"config":{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#,
            "invalid image: schemaVersion is 3, not 2",
        ),
        ("not json", "invalid image: not an image manifest"),
    ];
    for (manifest, error) in rows {
        let got = ImageManifest::parse(manifest.as_bytes().to_vec())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(got.starts_with(error), "{manifest}: {got}");
    }
    // Docker schema-2 manifests have the same shape and are taken.
    let docker = image().manifest;
    let docker = String::from_utf8(docker).unwrap_or_default().replace(
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    );
    let parsed = ImageManifest::parse(docker.clone().into_bytes()).unwrap();
    assert_eq!(parsed.digest, crate::support::sha256(docker.as_bytes()));
}

/// Either kind of manifest a registry takes: an image's, or an index (OCI image index, Docker
/// manifest list, or an index without a media type that lists `manifests`); an index's
/// descriptors are checked like an image's.
#[test]
fn pushed_manifests_are_images_or_indexes() {
    use yc_registry_image::oci::PushedManifest;
    let zero = format!("sha256:{}", "0".repeat(64));
    let image_bytes = image().manifest;
    match PushedManifest::parse(image_bytes.clone()).unwrap() {
        PushedManifest::Image(m) => assert_eq!(m.digest, crate::support::sha256(&image_bytes)),
        other => panic!("an image manifest read as {other:?}"),
    }
    for media_type in [
        "\"mediaType\":\"application/vnd.oci.image.index.v1+json\",",
        "\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\",",
        "",
    ] {
        let index = format!(
            r#"{{"schemaVersion":2,{media_type}"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{zero}","size":7,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
        );
        match PushedManifest::parse(index.clone().into_bytes()).unwrap() {
            PushedManifest::Index(m) => {
                assert_eq!(m.index.manifests[0].digest, zero);
                assert_eq!(m.digest, crate::support::sha256(index.as_bytes()));
            }
            other => panic!("{index} read as {other:?}"),
        }
    }
    let bad = r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:xyz","size":1}]}"#;
    let refused = PushedManifest::parse(bad.as_bytes().to_vec()).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("is not sha256:<64 lower-case hex>"),
        "{refused}"
    );
    let subject = format!(
        r#"{{"schemaVersion":2,"artifactType":"application/example","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{zero}","size":2}},"layers":[],"subject":{{"digest":"{zero}","size":9}}}}"#
    );
    let parsed = PushedManifest::parse(subject.into_bytes()).unwrap();
    assert_eq!(
        parsed.subject().map(|s| s.digest.as_str()),
        Some(zero.as_str())
    );
    assert_eq!(parsed.artifact_type(), Some("application/example"));
}
