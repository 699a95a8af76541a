//! List pages written from their items' stored bytes (`yc_proto_types::encoded`) are the
//! bytes encoding the typed response gives, in protobuf and in JSON, whatever the items hold;
//! every List response of the schema has a page shape read from its descriptor.

use proptest::prelude::*;
use prost::{Message, Name};
use yc_proto_types::encoded::{Encoded, Form, PageShape, page_shape};
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::yandex::cloud::compute::v1 as compute;
use yc_proto_types::yandex::cloud::containerregistry::v1 as registry;

use crate::fixtures::compute::{generation2, image, legacy};

/// Each item in its two stored forms, the page written from them in both, and the typed
/// response encoded both ways: equal byte for byte.
fn check_page<R, M>(items: &[M], token: &str, response: &R)
where
    R: Message + Name + serde::Serialize + Default + PartialEq + std::fmt::Debug,
    M: Message + serde::Serialize,
{
    let shape = page_shape::<R>().expect("a List response");
    for form in [Form::Protobuf, Form::Json] {
        let mut page = shape.writer(form, 16);
        for item in items {
            match form {
                Form::Protobuf => page.push(&item.encode_to_vec()),
                Form::Json => page.push(&serde_json::to_vec(item).unwrap()),
            }
        }
        let written = page.finish(token);
        match form {
            Form::Protobuf => {
                assert_eq!(written, response.encode_to_vec());
                let encoded = Encoded::<R>::new(written.clone());
                assert_eq!(encoded.encode_to_vec(), written);
                assert_eq!(&encoded.decode().unwrap(), response);
            }
            Form::Json => assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(response).unwrap()
            ),
        }
    }
}

#[test]
fn every_list_response_has_a_page_shape() {
    let pool = yc_proto_types::descriptor_pool();
    let responses: Vec<String> = pool
        .all_messages()
        .map(|m| m.full_name().to_owned())
        .filter(|name| {
            name.starts_with("yandex.cloud.")
                && name
                    .rsplit('.')
                    .next()
                    .is_some_and(|n| n.starts_with("List") && n.ends_with("Response"))
        })
        .collect();
    assert!(responses.len() >= 8, "{responses:?}");
    for name in &responses {
        assert!(PageShape::of(name).is_some(), "{name} has no page shape");
    }
    assert!(PageShape::of("yandex.cloud.compute.v1.Image").is_none());
    assert!(PageShape::of("yandex.cloud.compute.v1.ListImagesRequest").is_none());
    assert!(PageShape::of("no.such.Message").is_none());
}

#[test]
fn empty_and_tokened_pages() {
    check_page::<compute::ListImagesResponse, compute::Image>(
        &[],
        "",
        &compute::ListImagesResponse::default(),
    );
    check_page::<compute::ListImagesResponse, compute::Image>(
        &[],
        "tok",
        &compute::ListImagesResponse {
            images: vec![],
            next_page_token: "tok".into(),
        },
    );
    // An item whose every field is default encodes to nothing: an empty entry all the same.
    let blank = compute::Image::default();
    check_page(
        std::slice::from_ref(&blank),
        "",
        &compute::ListImagesResponse {
            images: vec![blank.clone()],
            next_page_token: String::new(),
        },
    );
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,24}",
        "[\\PC]{0,12}",
        // What JSON escapes: quotes, backslashes, control characters, and U+2028.
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('\n'),
                Just('\u{1}'),
                Just('\u{2028}'),
                Just('é')
            ],
            0..6
        )
        .prop_map(|c| c.into_iter().collect()),
    ]
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::of(
        (-62_135_596_800i64..253_402_300_799, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
    )
}

fn compute_image() -> impl Strategy<Value = compute::Image> {
    (
        (text(), text(), text(), text()),
        proptest::collection::btree_map(text(), text(), 0..4),
        (any::<i64>(), any::<i64>(), 0i32..6, any::<bool>(), 0u8..3),
        proptest::collection::vec(text(), 0..3),
        timestamp(),
    )
        .prop_map(
            |((id, name, description, family), labels, numbers, product_ids, created_at)| {
                let (storage_size, size, status, pooled, generation) = numbers;
                compute::Image {
                    id,
                    name,
                    description,
                    family,
                    labels,
                    storage_size,
                    size,
                    status,
                    pooled,
                    product_ids,
                    created_at,
                    hardware_generation: match generation {
                        0 => None,
                        1 => Some(legacy()),
                        _ => Some(generation2()),
                    },
                    ..image()
                }
            },
        )
}

fn registry_image() -> impl Strategy<Value = registry::Image> {
    (
        (text(), text(), text()),
        any::<i64>(),
        proptest::collection::vec((text(), any::<i64>()), 0..3),
        proptest::collection::vec(text(), 0..3),
        timestamp(),
    )
        .prop_map(
            |((id, name, digest), compressed_size, layers, tags, created_at)| registry::Image {
                id,
                name,
                digest: digest.clone(),
                compressed_size,
                config: Some(registry::Blob {
                    id: String::new(),
                    digest,
                    size: compressed_size,
                    urls: vec![],
                }),
                layers: layers
                    .into_iter()
                    .map(|(digest, size)| registry::Blob {
                        id: String::new(),
                        digest,
                        size,
                        urls: vec![],
                    })
                    .collect(),
                tags,
                created_at,
            },
        )
}

proptest! {
    #[test]
    fn compute_pages_are_the_typed_encodings(
        images in proptest::collection::vec(compute_image(), 0..5),
        token in prop_oneof![Just(String::new()), text()],
    ) {
        let response = compute::ListImagesResponse {
            images: images.clone(),
            next_page_token: token.clone(),
        };
        check_page(&images, &token, &response);
    }

    #[test]
    fn registry_pages_are_the_typed_encodings(
        images in proptest::collection::vec(registry_image(), 0..5),
        token in prop_oneof![Just(String::new()), text()],
    ) {
        let response = registry::ListImagesResponse {
            images: images.clone(),
            next_page_token: token.clone(),
        };
        check_page(&images, &token, &response);
    }
}
