//! Who may do what, end to end: `yc-images serve --iam FILE`, and every RPC of both
//! ImageServices, of the RegistryService, the RepositoryService and of OperationService called over gRPC and over REST with no token, an
//! unknown token, the token of a subject whose roles are in another folder, a viewer's and an
//! editor's; then List with paging and filters as the other folder's subject, which must not
//! see a thing of the team's folder.

use std::future::Future;
use std::path::Path;

use crate::support::{
    Server, channel, seed_compute_image, seed_disk, seed_registry, seed_snapshot, start_seeded,
    write_iam,
};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use yc_api_runtime::bindings;
use yc_proto_types::yandex::cloud::access;
use yc_proto_types::yandex::cloud::compute::v1 as compute;
use yc_proto_types::yandex::cloud::containerregistry::v1 as registry;
use yc_proto_types::yandex::cloud::endpoint::ListApiEndpointsRequest;
use yc_proto_types::yandex::cloud::endpoint::api_endpoint_service_client::ApiEndpointServiceClient;
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;
use yc_proto_types::yandex::cloud::operation::{CancelOperationRequest, GetOperationRequest};

const TEAM: &str = "b1gteam";
const OTHER: &str = "b1gother";
const TEAM_REGISTRY: &str = "crpteamregistry00000";
const OTHER_REGISTRY: &str = "crpotherregistry0000";
const TEAM_IMAGE: &str = "fd8teamimage00000000";
const OTHER_IMAGE: &str = "fd8otherimage0000000";
const EDITOR: &str = "ajeeditor00000000000";
const TEAM_DISK: &str = "fhmteamdisk000000000";
const OTHER_DISK: &str = "fhmotherdisk00000000";
const TEAM_SNAPSHOT: &str = "fd8teamsnapshot00000";
const OTHER_SNAPSHOT: &str = "fd8othersnapshot0000";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoToken,
    UnknownToken,
    /// An editor of the other folder only.
    Stranger,
    Viewer,
    Editor,
}

impl Who {
    /// In this order, so that a change the editor is allowed comes after every refusal.
    const ALL: [Who; 5] = [
        Who::NoToken,
        Who::UnknownToken,
        Who::Stranger,
        Who::Viewer,
        Who::Editor,
    ];

    fn token(self) -> Option<&'static str> {
        match self {
            Who::NoToken => None,
            Who::UnknownToken => Some("not-a-token"),
            Who::Stranger => Some("stranger-token"),
            Who::Viewer => Some("viewer-token"),
            Who::Editor => Some("editor-token"),
        }
    }
}

/// What a call needs in the team's folder.
#[derive(Debug, Clone, Copy)]
enum Needs {
    /// A viewer's role.
    Read,
    /// An editor's role.
    Change,
    /// To be the subject that started the operation.
    OwnOperation,
}

fn expected(needs: Needs, who: Who) -> Code {
    match (who, needs) {
        (Who::NoToken | Who::UnknownToken, _) => Code::Unauthenticated,
        (Who::Stranger, _) => Code::PermissionDenied,
        (Who::Viewer, Needs::Read) => Code::Ok,
        (Who::Viewer, Needs::Change | Needs::OwnOperation) => Code::PermissionDenied,
        (Who::Editor, _) => Code::Ok,
    }
}

/// Calls `call` as everyone, checks each answer's code, and returns the editor's answer.
async fn matrix<T, F, Fut>(what: &str, needs: Needs, call: F) -> T
where
    F: Fn(Who) -> Fut,
    Fut: Future<Output = Result<T, Code>>,
{
    let mut editors = None;
    for who in Who::ALL {
        let answer = call(who).await;
        let code = answer.as_ref().err().copied().unwrap_or(Code::Ok);
        assert_eq!(code, expected(needs, who), "{what} as {who:?}");
        if who == Who::Editor {
            editors = answer.ok();
        }
    }
    editors.unwrap_or_else(|| panic!("{what}: the editor's call failed"))
}

/// A server with the IAM file and, in each folder, a registry with an image and a compute
/// image of family `base`.
fn start(dir: &Path, extra: &[&str]) -> Server {
    let iam = dir.join("iam.json");
    write_iam(
        &iam,
        &[
            (EDITOR, "editor-token", TEAM, "editor"),
            ("ajeviewer00000000000", "viewer-token", TEAM, "viewer"),
            ("ajestranger000000000", "stranger-token", OTHER, "editor"),
        ],
    );
    let seed = dir.join("seed");
    for (folder, registry, image) in [
        (TEAM, TEAM_REGISTRY, TEAM_IMAGE),
        (OTHER, OTHER_REGISTRY, OTHER_IMAGE),
    ] {
        seed_registry(&seed, registry, folder, folder);
        seed_compute_image(&seed, image, folder, &format!("{folder}-base"));
    }
    for (folder, disk, snapshot) in [
        (TEAM, TEAM_DISK, TEAM_SNAPSHOT),
        (OTHER, OTHER_DISK, OTHER_SNAPSHOT),
    ] {
        seed_disk(&seed, disk, folder, "boot", json!({}));
        seed_snapshot(&seed, snapshot, folder, "nightly", json!({}));
    }
    start_seeded(dir, &iam, &seed, extra)
}

// ---------------------------------------------------------------------------------------
// gRPC

fn grpc_request<T>(who: Who, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = who.token() {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn answer<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, Code> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|s| s.code())
}

#[tokio::test]
async fn every_grpc_call_as_everyone() {
    use compute::image_service_client::ImageServiceClient as ComputeClient;
    use registry::image_service_client::ImageServiceClient as RegistryClient;

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let channel: Channel = channel(&server).await;
    let images = ComputeClient::new(channel.clone());
    let registry = RegistryClient::new(channel.clone());
    let operations = OperationServiceClient::new(channel.clone());

    // Compute ImageService.
    let image = matrix("compute Get", Needs::Read, |who| {
        let mut c = images.clone();
        async move {
            let request = compute::GetImageRequest {
                image_id: TEAM_IMAGE.into(),
            };
            answer(c.get(grpc_request(who, request)).await)
        }
    })
    .await;
    assert_eq!(image.folder_id, TEAM);
    matrix("compute GetLatestByFamily", Needs::Read, |who| {
        let mut c = images.clone();
        async move {
            let request = compute::GetImageLatestByFamilyRequest {
                folder_id: TEAM.into(),
                family: "base".into(),
            };
            answer(c.get_latest_by_family(grpc_request(who, request)).await)
        }
    })
    .await;
    let listed = matrix("compute List", Needs::Read, |who| {
        let mut c = images.clone();
        async move {
            let request = compute::ListImagesRequest {
                folder_id: TEAM.into(),
                ..Default::default()
            };
            answer(c.list(grpc_request(who, request)).await)
        }
    })
    .await;
    assert_eq!(listed.images.len(), 1);
    let created = matrix("compute Create", Needs::Change, |who| {
        let mut c = images.clone();
        async move {
            let request = compute::CreateImageRequest {
                folder_id: TEAM.into(),
                name: "copy".into(),
                source: Some(compute::create_image_request::Source::ImageId(
                    TEAM_IMAGE.into(),
                )),
                ..Default::default()
            };
            answer(c.create(grpc_request(who, request)).await)
        }
    })
    .await;
    assert_eq!(
        created.created_by, EDITOR,
        "the operation's creator is the subject"
    );
    matrix("compute Update", Needs::Change, |who| {
        let mut c = images.clone();
        async move {
            let request = compute::UpdateImageRequest {
                image_id: TEAM_IMAGE.into(),
                description: format!("changed by {who:?}"),
                ..Default::default()
            };
            answer(c.update(grpc_request(who, request)).await)
        }
    })
    .await;
    matrix("compute ListOperations", Needs::Read, |who| {
        let mut c = images.clone();
        async move {
            let request = compute::ListImageOperationsRequest {
                image_id: TEAM_IMAGE.into(),
                ..Default::default()
            };
            answer(c.list_operations(grpc_request(who, request)).await)
        }
    })
    .await;

    // DiskService and SnapshotService.
    {
        use compute::disk_service_client::DiskServiceClient;
        use compute::snapshot_service_client::SnapshotServiceClient;
        let disks = DiskServiceClient::new(channel.clone());
        let snapshots = SnapshotServiceClient::new(channel.clone());
        let disk = matrix("disk Get", Needs::Read, |who| {
            let mut c = disks.clone();
            async move {
                let request = compute::GetDiskRequest {
                    disk_id: TEAM_DISK.into(),
                };
                answer(c.get(grpc_request(who, request)).await)
            }
        })
        .await;
        assert_eq!(disk.folder_id, TEAM);
        let listed = matrix("disk List", Needs::Read, |who| {
            let mut c = disks.clone();
            async move {
                let request = compute::ListDisksRequest {
                    folder_id: TEAM.into(),
                    ..Default::default()
                };
                answer(c.list(grpc_request(who, request)).await)
            }
        })
        .await;
        assert_eq!(listed.disks.len(), 1);
        matrix("snapshot Get", Needs::Read, |who| {
            let mut c = snapshots.clone();
            async move {
                let request = compute::GetSnapshotRequest {
                    snapshot_id: TEAM_SNAPSHOT.into(),
                };
                answer(c.get(grpc_request(who, request)).await)
            }
        })
        .await;
        let listed = matrix("snapshot List", Needs::Read, |who| {
            let mut c = snapshots.clone();
            async move {
                let request = compute::ListSnapshotsRequest {
                    folder_id: TEAM.into(),
                    ..Default::default()
                };
                answer(c.list(grpc_request(who, request)).await)
            }
        })
        .await;
        assert_eq!(listed.snapshots.len(), 1);
        // An image from a disk or snapshot needs to read it: not another folder's.
        for source in [
            compute::create_image_request::Source::DiskId(OTHER_DISK.into()),
            compute::create_image_request::Source::SnapshotId(OTHER_SNAPSHOT.into()),
        ] {
            let request = compute::CreateImageRequest {
                folder_id: TEAM.into(),
                name: "stolen".into(),
                source: Some(source),
                ..Default::default()
            };
            let refused = images
                .clone()
                .create(grpc_request(Who::Editor, request))
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        }
        let from_disk = matrix("compute Create from a disk", Needs::Change, |who| {
            let mut c = images.clone();
            async move {
                let request = compute::CreateImageRequest {
                    folder_id: TEAM.into(),
                    name: "from-disk".into(),
                    source: Some(compute::create_image_request::Source::DiskId(
                        TEAM_DISK.into(),
                    )),
                    ..Default::default()
                };
                answer(c.create(grpc_request(who, request)).await)
            }
        })
        .await;
        assert!(wait_grpc(&operations, &from_disk.id).await.result.is_some());
    }

    // OperationService: only the subject that started an operation sees it.
    let id = created.id.clone();
    let done = matrix("operation Get", Needs::OwnOperation, |who| {
        let mut c = operations.clone();
        let operation_id = id.clone();
        async move {
            answer(
                c.get(grpc_request(who, GetOperationRequest { operation_id }))
                    .await,
            )
        }
    })
    .await;
    assert_eq!(done.created_by, EDITOR);
    matrix("operation Cancel", Needs::OwnOperation, |who| {
        let mut c = operations.clone();
        let operation_id = id.clone();
        async move {
            answer(
                c.cancel(grpc_request(who, CancelOperationRequest { operation_id }))
                    .await,
            )
        }
    })
    .await;
    let bound = matrix("compute SetAccessBindings", Needs::Change, |who| {
        let mut c = images.clone();
        async move {
            let request = access::SetAccessBindingsRequest {
                resource_id: TEAM_IMAGE.into(),
                access_bindings: vec![bindings::binding("viewer", "userAccount", "ajesomeone")],
            };
            answer(c.set_access_bindings(grpc_request(who, request)).await)
        }
    })
    .await;
    assert!(wait_grpc(&operations, &bound.id).await.result.is_some());
    let bound = matrix("compute UpdateAccessBindings", Needs::Change, |who| {
        let mut c = images.clone();
        async move {
            let request = access::UpdateAccessBindingsRequest {
                resource_id: TEAM_IMAGE.into(),
                access_binding_deltas: vec![access::AccessBindingDelta {
                    action: access::AccessBindingAction::Add as i32,
                    access_binding: Some(bindings::binding("editor", "serviceAccount", "ajeci")),
                }],
            };
            answer(c.update_access_bindings(grpc_request(who, request)).await)
        }
    })
    .await;
    wait_grpc(&operations, &bound.id).await;
    let listed = matrix("compute ListAccessBindings", Needs::Read, |who| {
        let mut c = images.clone();
        async move {
            let request = access::ListAccessBindingsRequest {
                resource_id: TEAM_IMAGE.into(),
                ..Default::default()
            };
            answer(c.list_access_bindings(grpc_request(who, request)).await)
        }
    })
    .await;
    assert_eq!(listed.access_bindings.len(), 2, "{listed:?}");
    matrix("compute Delete", Needs::Change, |who| {
        let mut c = images.clone();
        async move {
            let request = compute::DeleteImageRequest {
                image_id: TEAM_IMAGE.into(),
            };
            answer(c.delete(grpc_request(who, request)).await)
        }
    })
    .await;

    // Container Registry ImageService, by folder, registry and repository.
    for (what, request) in [
        (
            "registry List by folder",
            registry::ListImagesRequest {
                folder_id: TEAM.into(),
                ..Default::default()
            },
        ),
        (
            "registry List by registry",
            registry::ListImagesRequest {
                registry_id: TEAM_REGISTRY.into(),
                ..Default::default()
            },
        ),
        (
            "registry List by repository",
            registry::ListImagesRequest {
                repository_name: format!("{TEAM_REGISTRY}/app"),
                ..Default::default()
            },
        ),
    ] {
        let listed = matrix(what, Needs::Read, |who| {
            let mut c = registry.clone();
            let request = request.clone();
            async move { answer(c.list(grpc_request(who, request)).await) }
        })
        .await;
        assert_eq!(listed.images.len(), 1, "{what}");
    }
    let listed = answer(
        registry
            .clone()
            .list(grpc_request(
                Who::Editor,
                registry::ListImagesRequest {
                    registry_id: TEAM_REGISTRY.into(),
                    ..Default::default()
                },
            ))
            .await,
    )
    .unwrap_or_else(|c| panic!("{c:?}"));
    let image_id = listed.images[0].id.clone();
    let id = image_id.clone();
    matrix("registry Get", Needs::Read, |who| {
        let mut c = registry.clone();
        let image_id = id.clone();
        async move {
            answer(
                c.get(grpc_request(who, registry::GetImageRequest { image_id }))
                    .await,
            )
        }
    })
    .await;
    // Container Registry RepositoryService: the seeded image's repository.
    let repositories =
        registry::repository_service_client::RepositoryServiceClient::new(channel.clone());
    let repository = matrix("repository GetByName", Needs::Read, |who| {
        let mut c = repositories.clone();
        async move {
            let request = registry::GetRepositoryByNameRequest {
                repository_name: format!("{TEAM_REGISTRY}/app"),
            };
            answer(c.get_by_name(grpc_request(who, request)).await)
        }
    })
    .await;
    let repository_id = repository.id.clone();
    matrix("repository Get", Needs::Read, |who| {
        let mut c = repositories.clone();
        let repository_id = repository_id.clone();
        async move {
            answer(
                c.get(grpc_request(
                    who,
                    registry::GetRepositoryRequest { repository_id },
                ))
                .await,
            )
        }
    })
    .await;
    for (what, request) in [
        (
            "repository List by registry",
            registry::ListRepositoriesRequest {
                registry_id: TEAM_REGISTRY.into(),
                ..Default::default()
            },
        ),
        (
            "repository List by folder",
            registry::ListRepositoriesRequest {
                folder_id: TEAM.into(),
                ..Default::default()
            },
        ),
    ] {
        let listed = matrix(what, Needs::Read, |who| {
            let mut c = repositories.clone();
            let request = request.clone();
            async move { answer(c.list(grpc_request(who, request)).await) }
        })
        .await;
        assert_eq!(
            listed.repositories,
            std::slice::from_ref(&repository),
            "{what}"
        );
    }

    let deleted = matrix("registry Delete", Needs::Change, |who| {
        let mut c = registry.clone();
        let image_id = image_id.clone();
        async move {
            answer(
                c.delete(grpc_request(who, registry::DeleteImageRequest { image_id }))
                    .await,
            )
        }
    })
    .await;
    assert_eq!(deleted.created_by, EDITOR);

    // Container Registry RegistryService.
    let registries = registry::registry_service_client::RegistryServiceClient::new(channel.clone());
    let got = matrix("registry service Get", Needs::Read, |who| {
        let mut c = registries.clone();
        async move {
            let request = registry::GetRegistryRequest {
                registry_id: TEAM_REGISTRY.into(),
            };
            answer(c.get(grpc_request(who, request)).await)
        }
    })
    .await;
    assert_eq!(got.folder_id, TEAM);
    let listed = matrix("registry service List", Needs::Read, |who| {
        let mut c = registries.clone();
        async move {
            let request = registry::ListRegistriesRequest {
                folder_id: TEAM.into(),
                ..Default::default()
            };
            answer(c.list(grpc_request(who, request)).await)
        }
    })
    .await;
    let ids: Vec<&str> = listed.registries.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [TEAM_REGISTRY]);
    let created = matrix("registry service Create", Needs::Change, |who| {
        let mut c = registries.clone();
        async move {
            let request = registry::CreateRegistryRequest {
                folder_id: TEAM.into(),
                name: "made-by-editor".into(),
                ..Default::default()
            };
            answer(c.create(grpc_request(who, request)).await)
        }
    })
    .await;
    assert_eq!(created.created_by, EDITOR);
    let made = wait_grpc(&operations, &created.id).await;
    let made_id = made
        .metadata
        .as_ref()
        .and_then(|m| m.to_msg::<registry::CreateRegistryMetadata>().ok())
        .map(|m| m.registry_id)
        .unwrap_or_default();
    matrix("registry service Update", Needs::Change, |who| {
        let mut c = registries.clone();
        async move {
            let request = registry::UpdateRegistryRequest {
                registry_id: TEAM_REGISTRY.into(),
                labels: [("changed-by".to_owned(), format!("{who:?}").to_lowercase())].into(),
                ..Default::default()
            };
            answer(c.update(grpc_request(who, request)).await)
        }
    })
    .await;
    matrix("registry service Delete", Needs::Change, |who| {
        let mut c = registries.clone();
        let registry_id = made_id.clone();
        async move {
            answer(
                c.delete(grpc_request(
                    who,
                    registry::DeleteRegistryRequest { registry_id },
                ))
                .await,
            )
        }
    })
    .await;

    // Discovery needs no token: SDKs ask before they send one.
    let endpoints = ApiEndpointServiceClient::new(channel.clone())
        .list(ListApiEndpointsRequest::default())
        .await
        .unwrap();
    assert!(!endpoints.into_inner().endpoints.is_empty());

    // What exists in no folder is NOT_FOUND for anyone signed in; the real API hides nothing
    // more than that.
    let missing = answer(
        images
            .clone()
            .get(grpc_request(
                Who::Stranger,
                compute::GetImageRequest {
                    image_id: "fd8nosuchimage000000".into(),
                },
            ))
            .await,
    );
    assert_eq!(missing.err(), Some(Code::NotFound));

    // The other folder's subject sees its own folder and nothing of the team's, page by page
    // and whatever the filter names.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = answer(
            images
                .clone()
                .list(grpc_request(
                    Who::Stranger,
                    compute::ListImagesRequest {
                        folder_id: OTHER.into(),
                        page_size: 1,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                ))
                .await,
        )
        .unwrap_or_else(|c| panic!("{c:?}"));
        seen.extend(page.images.iter().map(|i| i.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, [OTHER_IMAGE]);
    let filtered = answer(
        images
            .clone()
            .list(grpc_request(
                Who::Stranger,
                compute::ListImagesRequest {
                    folder_id: OTHER.into(),
                    filter: format!("id = \"{TEAM_IMAGE}\""),
                    ..Default::default()
                },
            ))
            .await,
    )
    .unwrap_or_else(|c| panic!("{c:?}"));
    assert!(filtered.images.is_empty());
    let theirs = answer(
        registry
            .clone()
            .list(grpc_request(
                Who::Stranger,
                registry::ListImagesRequest {
                    folder_id: OTHER.into(),
                    ..Default::default()
                },
            ))
            .await,
    )
    .unwrap_or_else(|c| panic!("{c:?}"));
    assert_eq!(theirs.images.len(), 1);
    assert!(theirs.images[0].name.starts_with(OTHER_REGISTRY));
}

/// Access bindings on an image take part in the access check: a viewer binding lets a
/// subject without a role in the image's folder read the image and make images from it (but
/// not change it, list the folder or change the bindings), an admin binding lets a folder
/// viewer change the bindings, `allAuthenticatedUsers` lets anyone with a token read, and
/// removing a binding takes its access away.
#[tokio::test]
async fn bindings_on_an_image_grant_access_to_it() {
    use compute::image_service_client::ImageServiceClient as ComputeClient;

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let channel: Channel = channel(&server).await;
    let images = ComputeClient::new(channel.clone());
    let operations = OperationServiceClient::new(channel);
    let get = |who: Who| {
        let mut c = images.clone();
        async move {
            let request = compute::GetImageRequest {
                image_id: TEAM_IMAGE.into(),
            };
            answer(c.get(grpc_request(who, request)).await)
        }
    };
    // Changes the team image's bindings as `who`, waiting for the operation as the editor
    // (whose operations it may read) when `who` is the editor, else as the starter.
    let change = |who: Who, action: access::AccessBindingAction, binding: access::AccessBinding| {
        let mut c = images.clone();
        let operations = operations.clone();
        async move {
            let request = access::UpdateAccessBindingsRequest {
                resource_id: TEAM_IMAGE.into(),
                access_binding_deltas: vec![access::AccessBindingDelta {
                    action: action as i32,
                    access_binding: Some(binding),
                }],
            };
            let op = answer(c.update_access_bindings(grpc_request(who, request)).await)?;
            for _ in 0..400 {
                let now = answer(
                    operations
                        .clone()
                        .get(grpc_request(
                            who,
                            GetOperationRequest {
                                operation_id: op.id.clone(),
                            },
                        ))
                        .await,
                )?;
                if now.done {
                    return Ok::<_, Code>(now);
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("operation {} did not finish", op.id);
        }
    };
    use access::AccessBindingAction::{Add, Remove};
    let stranger = bindings::binding("compute.images.user", "userAccount", "ajestranger000000000");

    assert_eq!(
        get(Who::Stranger).await.unwrap_err(),
        Code::PermissionDenied
    );
    // Nobody but the folder's editor (or the image's admin) changes the bindings.
    assert_eq!(
        change(Who::Stranger, Add, stranger.clone())
            .await
            .unwrap_err(),
        Code::PermissionDenied
    );
    assert_eq!(
        change(Who::Viewer, Add, stranger.clone())
            .await
            .unwrap_err(),
        Code::PermissionDenied
    );
    let done = change(Who::Editor, Add, stranger.clone()).await.unwrap();
    let result: access::AccessBindingsOperationResult = match done.result {
        Some(yc_proto_types::yandex::cloud::operation::operation::Result::Response(any)) => {
            any.to_msg().unwrap()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(result.effective_deltas.len(), 1);

    // The stranger reads the image and makes an image of its own folder from it.
    assert_eq!(get(Who::Stranger).await.unwrap().id, TEAM_IMAGE);
    let copy = answer(
        images
            .clone()
            .create(grpc_request(
                Who::Stranger,
                compute::CreateImageRequest {
                    folder_id: OTHER.into(),
                    name: "from-team".into(),
                    source: Some(compute::create_image_request::Source::ImageId(
                        TEAM_IMAGE.into(),
                    )),
                    ..Default::default()
                },
            ))
            .await,
    )
    .unwrap();
    let copied = wait_as(&operations, Who::Stranger, &copy.id).await;
    assert!(
        matches!(
            copied.result,
            Some(yc_proto_types::yandex::cloud::operation::operation::Result::Response(_))
        ),
        "{copied:?}"
    );
    // But it changes nothing of the team's, lists nothing of it, and cannot pass its access on.
    let update = compute::UpdateImageRequest {
        image_id: TEAM_IMAGE.into(),
        description: "mine now".into(),
        ..Default::default()
    };
    assert_eq!(
        answer(
            images
                .clone()
                .update(grpc_request(Who::Stranger, update))
                .await
        )
        .unwrap_err(),
        Code::PermissionDenied
    );
    let list = compute::ListImagesRequest {
        folder_id: TEAM.into(),
        ..Default::default()
    };
    assert_eq!(
        answer(images.clone().list(grpc_request(Who::Stranger, list)).await).unwrap_err(),
        Code::PermissionDenied
    );
    assert_eq!(
        change(
            Who::Stranger,
            Add,
            bindings::binding("viewer", "system", "allUsers")
        )
        .await
        .unwrap_err(),
        Code::PermissionDenied
    );

    // An admin binding lets the folder's viewer change the bindings.
    let viewer_admin = bindings::binding("admin", "userAccount", "ajeviewer00000000000");
    change(Who::Editor, Add, viewer_admin).await.unwrap();
    change(Who::Viewer, Remove, stranger.clone()).await.unwrap();
    assert_eq!(
        get(Who::Stranger).await.unwrap_err(),
        Code::PermissionDenied
    );

    // Everyone with a token, while the binding lasts.
    let public = bindings::binding("viewer", "system", "allAuthenticatedUsers");
    change(Who::Viewer, Add, public.clone()).await.unwrap();
    assert_eq!(get(Who::Stranger).await.unwrap().id, TEAM_IMAGE);
    assert_eq!(
        get(Who::UnknownToken).await.unwrap_err(),
        Code::Unauthenticated
    );
    change(Who::Viewer, Remove, public).await.unwrap();
    assert_eq!(
        get(Who::Stranger).await.unwrap_err(),
        Code::PermissionDenied
    );
}

/// The operation `id`, polled as its starter (the editor) until it is done.
async fn wait_grpc(
    operations: &OperationServiceClient<Channel>,
    id: &str,
) -> yc_proto_types::yandex::cloud::operation::Operation {
    wait_as(operations, Who::Editor, id).await
}

/// The operation `id`, polled as `who` (its starter) until it is done.
async fn wait_as(
    operations: &OperationServiceClient<Channel>,
    who: Who,
    id: &str,
) -> yc_proto_types::yandex::cloud::operation::Operation {
    for _ in 0..400 {
        let op = answer(
            operations
                .clone()
                .get(grpc_request(
                    who,
                    GetOperationRequest {
                        operation_id: id.to_owned(),
                    },
                ))
                .await,
        )
        .unwrap_or_else(|c| panic!("{c:?}"));
        if op.done {
            return op;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("operation {id} did not finish");
}

// ---------------------------------------------------------------------------------------
// REST

/// A REST call as `who`: the JSON answer, or the code of the `google.rpc.Status` it answered
/// with (whose HTTP status must be the code's).
async fn rest(
    http: &reqwest::Client,
    who: Who,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<Value, Code> {
    let mut request = http.request(method, url);
    if let Some(token) = who.token() {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    if status == 200 {
        return Ok(body);
    }
    let code = Code::from_i32(body["code"].as_i64().unwrap_or_default() as i32);
    assert_eq!(status, yc_proto_types::http_status(code), "{body}");
    Err(code)
}

#[tokio::test]
async fn every_rest_call_as_everyone() {
    use reqwest::Method;

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let base = server.url();
    let http = reqwest::Client::new();
    let call = |who: Who, method: Method, path: String, body: Option<Value>| {
        rest(&http, who, method, format!("{base}{path}"), body)
    };
    let get = |who: Who, path: String| call(who, Method::GET, path, None);

    let image = matrix("compute Get", Needs::Read, |who| {
        get(who, format!("/compute/v1/images/{TEAM_IMAGE}"))
    })
    .await;
    assert_eq!(image["folderId"], TEAM);
    matrix("compute GetLatestByFamily", Needs::Read, |who| {
        get(
            who,
            format!("/compute/v1/images:latestByFamily?folderId={TEAM}&family=base"),
        )
    })
    .await;
    let listed = matrix("compute List", Needs::Read, |who| {
        get(who, format!("/compute/v1/images?folderId={TEAM}"))
    })
    .await;
    assert_eq!(listed["images"].as_array().map(Vec::len), Some(1));
    let created = matrix("compute Create", Needs::Change, |who| {
        let body = json!({"folderId": TEAM, "name": "copy", "imageId": TEAM_IMAGE});
        call(who, Method::POST, "/compute/v1/images".into(), Some(body))
    })
    .await;
    assert_eq!(created["createdBy"], EDITOR);
    matrix("compute Update", Needs::Change, |who| {
        let body =
            json!({"description": format!("changed by {who:?}"), "updateMask": "description"});
        call(
            who,
            Method::PATCH,
            format!("/compute/v1/images/{TEAM_IMAGE}"),
            Some(body),
        )
    })
    .await;
    matrix("compute ListOperations", Needs::Read, |who| {
        get(who, format!("/compute/v1/images/{TEAM_IMAGE}/operations"))
    })
    .await;
    matrix("disk Get", Needs::Read, |who| {
        get(who, format!("/compute/v1/disks/{TEAM_DISK}"))
    })
    .await;
    let listed = matrix("disk List", Needs::Read, |who| {
        get(who, format!("/compute/v1/disks?folderId={TEAM}"))
    })
    .await;
    assert_eq!(listed["disks"].as_array().map(Vec::len), Some(1));
    matrix("snapshot Get", Needs::Read, |who| {
        get(who, format!("/compute/v1/snapshots/{TEAM_SNAPSHOT}"))
    })
    .await;
    let listed = matrix("snapshot List", Needs::Read, |who| {
        get(who, format!("/compute/v1/snapshots?folderId={TEAM}"))
    })
    .await;
    assert_eq!(listed["snapshots"].as_array().map(Vec::len), Some(1));
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    matrix("operation Get", Needs::OwnOperation, |who| {
        get(who, format!("/operations/{id}"))
    })
    .await;
    matrix("operation Cancel", Needs::OwnOperation, |who| {
        call(who, Method::POST, format!("/operations/{id}:cancel"), None)
    })
    .await;
    matrix("compute SetAccessBindings", Needs::Change, |who| {
        let body = json!({"accessBindings": [
            {"roleId": "viewer", "subject": {"id": "ajesomeone", "type": "userAccount"}}
        ]});
        call(
            who,
            Method::POST,
            format!("/compute/v1/images/{TEAM_IMAGE}:setAccessBindings"),
            Some(body),
        )
    })
    .await;
    matrix("compute UpdateAccessBindings", Needs::Change, |who| {
        let body = json!({"accessBindingDeltas": [{"action": "ADD", "accessBinding":
            {"roleId": "editor", "subject": {"id": "ajeci", "type": "serviceAccount"}}}]});
        call(
            who,
            Method::POST,
            format!("/compute/v1/images/{TEAM_IMAGE}:updateAccessBindings"),
            Some(body),
        )
    })
    .await;
    matrix("compute ListAccessBindings", Needs::Read, |who| {
        get(
            who,
            format!("/compute/v1/images/{TEAM_IMAGE}:listAccessBindings"),
        )
    })
    .await;
    matrix("compute Delete", Needs::Change, |who| {
        call(
            who,
            Method::DELETE,
            format!("/compute/v1/images/{TEAM_IMAGE}"),
            None,
        )
    })
    .await;

    for query in [
        format!("folderId={TEAM}"),
        format!("registryId={TEAM_REGISTRY}"),
        format!("repositoryName={TEAM_REGISTRY}/app"),
    ] {
        let listed = matrix(&format!("registry List {query}"), Needs::Read, |who| {
            get(who, format!("/container-registry/v1/images?{query}"))
        })
        .await;
        assert_eq!(
            listed["images"].as_array().map(Vec::len),
            Some(1),
            "{query}"
        );
    }
    let listed = get(
        Who::Editor,
        format!("/container-registry/v1/images?registryId={TEAM_REGISTRY}"),
    )
    .await
    .unwrap_or_else(|c| panic!("{c:?}"));
    let image_id = listed["images"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    matrix("registry Get", Needs::Read, |who| {
        get(who, format!("/container-registry/v1/images/{image_id}"))
    })
    .await;
    // The registry API's reads and deletes, with the same rules: 401 without a known token,
    // 403 without the role, the catalog only what the caller may read.
    let digest = listed["images"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let v2 = |who: Who, method: Method, path: String, range: bool| {
        let mut request = http.request(method, format!("{base}{path}"));
        if let Some(token) = who.token() {
            request = request.bearer_auth(token);
        }
        if range {
            request = request.header("range", "bytes=0-0");
        }
        async move {
            let response = request.send().await.unwrap();
            match response.status().as_u16() {
                401 => Err(Code::Unauthenticated),
                403 => Err(Code::PermissionDenied),
                200..=299 => Ok(response.bytes().await.unwrap()),
                other => panic!("{other}: {:?}", response.bytes().await),
            }
        }
    };
    matrix("registry API referrers", Needs::Read, |who| {
        v2(
            who,
            Method::GET,
            format!("/v2/{TEAM_REGISTRY}/app/referrers/{digest}"),
            false,
        )
    })
    .await;
    let manifest = matrix("registry API manifest", Needs::Read, |who| {
        v2(
            who,
            Method::GET,
            format!("/v2/{TEAM_REGISTRY}/app/manifests/{digest}"),
            false,
        )
    })
    .await;
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let part = matrix("registry API blob range", Needs::Read, |who| {
        v2(
            who,
            Method::GET,
            format!("/v2/{TEAM_REGISTRY}/app/blobs/{layer}"),
            true,
        )
    })
    .await;
    assert_eq!(part.len(), 1);
    for who in Who::ALL {
        let catalog = v2(who, Method::GET, "/v2/_catalog".into(), false).await;
        let names: Vec<String> = match catalog {
            Err(code) => {
                assert_eq!(code, expected(Needs::Read, Who::NoToken), "{who:?}");
                assert!(matches!(who, Who::NoToken | Who::UnknownToken));
                continue;
            }
            Ok(body) => serde_json::from_slice::<Value>(&body).unwrap()["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect(),
        };
        let expected = match who {
            Who::Stranger => format!("{OTHER_REGISTRY}/app"),
            _ => format!("{TEAM_REGISTRY}/app"),
        };
        assert_eq!(names, [expected], "the catalog as {who:?}");
    }
    matrix("registry API tag delete", Needs::Change, |who| {
        v2(
            who,
            Method::DELETE,
            format!("/v2/{TEAM_REGISTRY}/app/manifests/v1"),
            false,
        )
    })
    .await;

    let repository = matrix("repository GetByName", Needs::Read, |who| {
        get(
            who,
            format!("/container-registry/v1/repositories/{TEAM_REGISTRY}%2Fapp:byName"),
        )
    })
    .await;
    assert_eq!(repository["name"], format!("{TEAM_REGISTRY}/app"));
    let repository_id = repository["id"].as_str().unwrap_or_default().to_owned();
    matrix("repository Get", Needs::Read, |who| {
        get(
            who,
            format!("/container-registry/v1/repositories/{repository_id}"),
        )
    })
    .await;
    for query in [
        format!("registryId={TEAM_REGISTRY}"),
        format!("folderId={TEAM}"),
    ] {
        let listed = matrix(&format!("repository List {query}"), Needs::Read, |who| {
            get(who, format!("/container-registry/v1/repositories?{query}"))
        })
        .await;
        assert_eq!(listed["repositories"][0], repository, "{query}");
    }
    let deleted = matrix("registry Delete", Needs::Change, |who| {
        call(
            who,
            Method::DELETE,
            format!("/container-registry/v1/images/{image_id}"),
            None,
        )
    })
    .await;
    assert_eq!(deleted["createdBy"], EDITOR);

    // Container Registry RegistryService.
    let got = matrix("registry service Get", Needs::Read, |who| {
        get(
            who,
            format!("/container-registry/v1/registries/{TEAM_REGISTRY}"),
        )
    })
    .await;
    assert_eq!(got["folderId"], TEAM);
    let listed = matrix("registry service List", Needs::Read, |who| {
        get(
            who,
            format!("/container-registry/v1/registries?folderId={TEAM}"),
        )
    })
    .await;
    assert_eq!(listed["registries"][0]["id"], TEAM_REGISTRY);
    assert_eq!(listed["registries"].as_array().map(Vec::len), Some(1));
    let created = matrix("registry service Create", Needs::Change, |who| {
        let body = json!({"folderId": TEAM, "name": "made-by-editor"});
        call(
            who,
            Method::POST,
            "/container-registry/v1/registries".into(),
            Some(body),
        )
    })
    .await;
    assert_eq!(created["createdBy"], EDITOR);
    let made_id = created["metadata"]["registryId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let op_id = created["id"].as_str().unwrap_or_default().to_owned();
    for _ in 0..400 {
        let op = get(Who::Editor, format!("/operations/{op_id}"))
            .await
            .unwrap_or_else(|c| panic!("{c:?}"));
        if op["done"] == true {
            assert_eq!(op["response"]["status"], "ACTIVE", "{op}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    matrix("registry service Update", Needs::Change, |who| {
        let body = json!({"labels": {"changed-by": format!("{who:?}").to_lowercase()}, "updateMask": "labels"});
        call(
            who,
            Method::PATCH,
            format!("/container-registry/v1/registries/{TEAM_REGISTRY}"),
            Some(body),
        )
    })
    .await;
    matrix("registry service Delete", Needs::Change, |who| {
        call(
            who,
            Method::DELETE,
            format!("/container-registry/v1/registries/{made_id}"),
            None,
        )
    })
    .await;

    // Health checks need no token.
    let healthz = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);

    // The other folder's subject lists its own folder only.
    let theirs = get(
        Who::Stranger,
        format!("/compute/v1/images?folderId={OTHER}&filter=family%3D%22base%22"),
    )
    .await
    .unwrap_or_else(|c| panic!("{c:?}"));
    let ids: Vec<&str> = theirs["images"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [OTHER_IMAGE]);
}

/// The official Python SDK created as for the real cloud, with only this server's address,
/// the CA of `--tls` and an IAM token, finds every API by discovery and works over TLS (see
/// `sdk_discovery.py`). It needs the SDK's Python environment, which `cargo xtask ci` provides.
/// The official Python SDK's stubs and waiter drive the three access-binding RPCs (see
/// `sdk_bindings.py`): a binding lets a subject of another folder read the team's image.
#[tokio::test]
async fn the_official_python_sdk_binds_a_subject_to_an_image() {
    let Some(python) = crate::support::sdk_python("the Python SDK access-binding test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let args = [
        server.address.as_str(),
        "editor-token",
        "stranger-token",
        "ajestranger000000000",
        OTHER,
        TEAM_IMAGE,
    ];
    crate::support::run_sdk_script(
        python,
        "sdk_bindings.py",
        &args.map(std::ffi::OsStr::new),
        "the official Python SDK binds a subject to an image",
    )
    .await;
}

#[tokio::test]
async fn the_official_python_sdk_finds_everything_by_discovery_over_tls() {
    let Some(python) = crate::support::sdk_python("the Python SDK discovery test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--tls"]);
    let ca = dir.path().join("data/tls/ca.pem");
    let args = [
        server.address.as_ref(),
        ca.as_os_str(),
        "editor-token".as_ref(),
        TEAM.as_ref(),
        TEAM_IMAGE.as_ref(),
    ];
    crate::support::run_sdk_script(
        python,
        "sdk_discovery.py",
        &args,
        "the official Python SDK found yc-images by discovery over TLS",
    )
    .await;
}
