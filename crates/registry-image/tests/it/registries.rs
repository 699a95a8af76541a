//! The RegistryService in-process, on SQLite and on PostgreSQL: Create (CREATING, then
//! ACTIVE; names unique in a folder), Get, List (filter, pages, a page token past a deleted
//! registry), Update by mask, Delete (refused while the registry holds images, pushes refused
//! once it is going), who may do what, a database of the first schema version upgraded in
//! place, and on PostgreSQL two replicas racing a Delete against pushes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::TestImage;
use yc_api_runtime::{Access, Caller, Principal, Role};
use yc_operations::{MemoryOperationStore, OperationRunner, TypedOperation};
use yc_proto_types::google::protobuf::{Empty, FieldMask};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    CreateRegistryMetadata, CreateRegistryRequest, DeleteImageRequest, DeleteRegistryMetadata,
    DeleteRegistryRequest, GetRegistryRequest, ListRegistriesRequest, Registry,
    UpdateRegistryMetadata, UpdateRegistryRequest, registry,
};
use yc_proto_types::yandex::cloud::operation::Operation;
use yc_registry_image::oci::ImageManifest;
use yc_registry_image::{Registries, RegistryImages, SqlImageStore};
use yc_sql::{Db, TestPostgres, query};

struct Service {
    registries: Registries,
    images: RegistryImages,
}

fn service(store: SqlImageStore) -> Service {
    let store = Arc::new(store);
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    Service {
        registries: Registries::new(store.clone(), runner.clone()),
        images: RegistryImages::new(store, runner),
    }
}

fn system() -> Caller {
    Caller::system()
}

fn caller(roles: &[(&str, Role)]) -> Caller {
    let roles: HashMap<String, Role> = roles.iter().map(|(f, r)| ((*f).to_owned(), *r)).collect();
    Caller::of(Principal::new("ajeuser", Access::roles(roles)), None)
}

fn create(folder: &str, name: &str) -> CreateRegistryRequest {
    CreateRegistryRequest {
        folder_id: folder.into(),
        name: name.into(),
        labels: [("team".to_owned(), "images".to_owned())].into(),
        secure: false,
    }
}

async fn wait(service: &Service, op: &Operation) -> Operation {
    for _ in 0..400 {
        let current = service.images.runner().get(&op.id).await.unwrap();
        if current.done {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("operation {} did not finish", op.id);
}

/// Creates a registry and waits for it: the registry the operation answers.
async fn created(service: &Service, folder: &str, name: &str) -> Registry {
    let op = service
        .registries
        .create(&create(folder, name), &system())
        .await
        .unwrap();
    let done = TypedOperation::<CreateRegistryMetadata, Registry>::from_operation(
        &wait(service, &op).await,
    )
    .unwrap();
    done.result.unwrap().unwrap()
}

fn code(result: Result<impl std::fmt::Debug, Status>) -> tonic::Code {
    result.unwrap_err().grpc_code()
}

async fn get(service: &Service, id: &str, caller: &Caller) -> Result<Registry, Status> {
    service
        .registries
        .get(
            &GetRegistryRequest {
                registry_id: id.into(),
            },
            caller,
        )
        .await
}

async fn push(service: &Service, repository: &str, seed: &str) -> Result<String, Status> {
    let image = TestImage::new(seed, &[("app", seed.as_bytes())]);
    let manifest = ImageManifest::parse(image.manifest).unwrap();
    service
        .images
        .push(repository, &manifest, Some("latest"))
        .await
        .map(|i| i.id)
}

async fn names(service: &Service, request: ListRegistriesRequest) -> (Vec<String>, String) {
    let page = service.registries.list(&request, &system()).await.unwrap();
    (
        page.registries.into_iter().map(|r| r.name).collect(),
        page.next_page_token,
    )
}

/// Every behaviour of the service, on one store.
async fn lifecycle(store: SqlImageStore) {
    let service = service(store);

    // Create: CREATING while it runs, ACTIVE when done, with what the request gave.
    let op = service
        .registries
        .create(&create("b1gfolder", "main"), &system())
        .await
        .unwrap();
    let meta = TypedOperation::<CreateRegistryMetadata, Registry>::from_operation(&op).unwrap();
    let id = meta.metadata.unwrap().registry_id;
    assert!(id.starts_with("crp") && id.len() == 20, "{id}");
    let done = TypedOperation::<CreateRegistryMetadata, Registry>::from_operation(
        &wait(&service, &op).await,
    )
    .unwrap();
    let made = done.result.unwrap().unwrap();
    assert_eq!(made.id, id);
    assert_eq!(made.folder_id, "b1gfolder");
    assert_eq!(made.name, "main");
    assert_eq!(made.status, registry::Status::Active as i32);
    assert_eq!(made.labels.get("team").map(String::as_str), Some("images"));
    assert!(made.created_at.is_some());
    assert_eq!(get(&service, &id, &system()).await.unwrap(), made);

    // A name is unique within its folder, not across folders; a registry may have none.
    assert_eq!(
        code(
            service
                .registries
                .create(&create("b1gfolder", "main"), &system())
                .await
        ),
        tonic::Code::AlreadyExists
    );
    created(&service, "b1gother", "main").await;
    created(&service, "b1gfolder", "").await;
    created(&service, "b1gfolder", "").await;

    // List: the folder's registries in id order, in pages; a filter on the name.
    for name in ["b-reg", "c-reg", "d-reg"] {
        created(&service, "b1gfolder", name).await;
    }
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = service
            .registries
            .list(
                &ListRegistriesRequest {
                    folder_id: "b1gfolder".into(),
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &system(),
            )
            .await
            .unwrap();
        assert!(page.registries.len() <= 2);
        all.extend(page.registries.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(all.len(), 6, "{all:?}");
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    let (filtered, _) = names(
        &service,
        ListRegistriesRequest {
            folder_id: "b1gfolder".into(),
            filter: "name = \"c-reg\"".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(filtered, ["c-reg"]);
    let refused = service
        .registries
        .list(
            &ListRegistriesRequest {
                folder_id: "b1gfolder".into(),
                filter: "status = \"ACTIVE\"".into(),
                ..Default::default()
            },
            &system(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.grpc_code(), tonic::Code::InvalidArgument);
    assert!(refused.message.contains("filter"), "{}", refused.message);

    // Update: the masked fields only; a name taken in the folder fails the operation.
    let op = service
        .registries
        .update(
            &UpdateRegistryRequest {
                registry_id: id.clone(),
                update_mask: Some(FieldMask {
                    paths: vec!["labels".into()],
                }),
                name: "ignored".into(),
                labels: [("env".to_owned(), "prod".to_owned())].into(),
            },
            &system(),
        )
        .await
        .unwrap();
    let updated = TypedOperation::<UpdateRegistryMetadata, Registry>::from_operation(
        &wait(&service, &op).await,
    )
    .unwrap()
    .result
    .unwrap()
    .unwrap();
    assert_eq!(updated.name, "main");
    assert_eq!(updated.labels.len(), 1);
    assert_eq!(updated.labels.get("env").map(String::as_str), Some("prod"));
    let op = service
        .registries
        .update(
            &UpdateRegistryRequest {
                registry_id: id.clone(),
                name: "b-reg".into(),
                ..Default::default()
            },
            &system(),
        )
        .await
        .unwrap();
    let failed = wait(&service, &op).await;
    let error = TypedOperation::<UpdateRegistryMetadata, Registry>::from_operation(&failed)
        .unwrap()
        .result
        .unwrap()
        .unwrap_err();
    assert_eq!(error.grpc_code(), tonic::Code::AlreadyExists);
    assert_eq!(get(&service, &id, &system()).await.unwrap().name, "main");
    let bad_mask = service
        .registries
        .update(
            &UpdateRegistryRequest {
                registry_id: id.clone(),
                update_mask: Some(FieldMask {
                    paths: vec!["folder_id".into()],
                }),
                ..Default::default()
            },
            &system(),
        )
        .await
        .unwrap_err();
    assert!(
        bad_mask
            .message
            .starts_with("Request validation error: update_mask:"),
        "{}",
        bad_mask.message
    );

    // Delete: refused while an image is in the registry, done once none is.
    let image = push(&service, &format!("{id}/app"), "v1").await.unwrap();
    let delete = DeleteRegistryRequest {
        registry_id: id.clone(),
    };
    let refused = service
        .registries
        .delete(&delete, &system())
        .await
        .unwrap_err();
    assert_eq!(refused.grpc_code(), tonic::Code::FailedPrecondition);
    assert!(refused.message.contains("not empty"), "{}", refused.message);
    assert_eq!(
        get(&service, &id, &system()).await.unwrap().status,
        registry::Status::Active as i32
    );
    let op = service
        .images
        .delete(&DeleteImageRequest { image_id: image }, &system())
        .await
        .unwrap();
    wait(&service, &op).await;
    let op = service.registries.delete(&delete, &system()).await.unwrap();
    let done =
        TypedOperation::<DeleteRegistryMetadata, Empty>::from_operation(&wait(&service, &op).await)
            .unwrap();
    assert_eq!(done.metadata.unwrap().registry_id, id);
    assert!(done.result.unwrap().is_ok());
    assert_eq!(
        code(get(&service, &id, &system()).await),
        tonic::Code::NotFound
    );
    // Gone: pushes into it are refused, its name is free again, and a page token that stops
    // at it continues.
    assert_eq!(
        code(push(&service, &format!("{id}/app"), "v2").await),
        tonic::Code::NotFound
    );
    created(&service, "b1gfolder", "main").await;
    let first = service
        .registries
        .list(
            &ListRegistriesRequest {
                folder_id: "b1gfolder".into(),
                page_size: 1,
                ..Default::default()
            },
            &system(),
        )
        .await
        .unwrap();
    let (total, _) = names(
        &service,
        ListRegistriesRequest {
            folder_id: "b1gfolder".into(),
            ..Default::default()
        },
    )
    .await;
    let op = service
        .registries
        .delete(
            &DeleteRegistryRequest {
                registry_id: first.registries[0].id.clone(),
            },
            &system(),
        )
        .await
        .unwrap();
    wait(&service, &op).await;
    let (rest, _) = names(
        &service,
        ListRegistriesRequest {
            folder_id: "b1gfolder".into(),
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rest.len(), total.len() - 1);

    // Who may do what: a viewer reads, an editor changes; an unknown id is NOT_FOUND for
    // anyone signed in, another folder's registry PERMISSION_DENIED.
    let other = created(&service, "b1gother", "theirs").await;
    let viewer = caller(&[("b1gother", Role::Viewer)]);
    let stranger = caller(&[("b1gfolder", Role::Editor)]);
    assert_eq!(
        get(&service, &other.id, &viewer).await.unwrap().id,
        other.id
    );
    assert_eq!(
        code(get(&service, &other.id, &stranger).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(get(&service, "crpnosuchregistry000", &stranger).await),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(
            service
                .registries
                .create(&create("b1gother", "mine"), &viewer)
                .await
        ),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(
            service
                .registries
                .delete(
                    &DeleteRegistryRequest {
                        registry_id: other.id.clone()
                    },
                    &viewer
                )
                .await
        ),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(
            service
                .registries
                .list(
                    &ListRegistriesRequest {
                        folder_id: "b1gother".into(),
                        ..Default::default()
                    },
                    &stranger
                )
                .await
        ),
        tonic::Code::PermissionDenied
    );
    assert!(
        service
            .registries
            .create(&create("b1gfolder", "editors"), &stranger)
            .await
            .is_ok()
    );

    // Validation from the proto's rules, naming the field.
    for (request, field) in [
        (create("b1gfolder", "Upper"), "name"),
        (create("b1gfolder", "a"), "name"),
        (
            CreateRegistryRequest {
                labels: [("Bad".to_owned(), "x".to_owned())].into(),
                ..create("b1gfolder", "ok-name")
            },
            "labels",
        ),
        (create("", "ok-name"), "folder_id"),
    ] {
        let refused = service
            .registries
            .create(&request, &system())
            .await
            .unwrap_err();
        assert_eq!(refused.grpc_code(), tonic::Code::InvalidArgument);
        assert!(
            refused
                .message
                .starts_with(&format!("Request validation error: {field}")),
            "{}",
            refused.message
        );
    }
}

#[tokio::test]
async fn registries_live_and_die_on_sqlite() {
    lifecycle(SqlImageStore::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn registries_live_and_die_on_postgres() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    lifecycle(SqlImageStore::open(pg.pool.clone()).await.unwrap()).await;
    pg.drop_schema().await;
}

/// A database the first schema version wrote (registries with an id, a folder and a name)
/// is upgraded in place: its registries are ACTIVE and take pushes.
#[tokio::test]
async fn a_first_version_database_is_upgraded_in_place() {
    let db = Db::sqlite_memory().await.unwrap();
    for statement in [
        "CREATE TABLE yc_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)",
        "INSERT INTO yc_schema (component, version) VALUES ('registry-image', 1)",
        "CREATE TABLE cr_registries (id TEXT PRIMARY KEY, folder_id TEXT NOT NULL, name TEXT NOT NULL)",
        "INSERT INTO cr_registries (id, folder_id, name) VALUES ('crpold', 'b1gfolder', 'old')",
    ] {
        db.execute(&query(statement)).await.unwrap();
    }
    let service = service(SqlImageStore::open(db.clone()).await.unwrap());
    let old = get(&service, "crpold", &system()).await.unwrap();
    assert_eq!(old.name, "old");
    assert_eq!(old.folder_id, "b1gfolder");
    assert_eq!(old.status, registry::Status::Active as i32);
    push(&service, "crpold/app", "v1").await.unwrap();
    let (listed, _) = names(
        &service,
        ListRegistriesRequest {
            folder_id: "b1gfolder".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed, ["old"]);
    // Opened again: nothing runs twice.
    SqlImageStore::open(db).await.unwrap();
}

/// Two replicas on one PostgreSQL database: one deletes a registry while the other pushes
/// into it, many times. Never both: either the Delete is refused and the image is there, or
/// the registry is gone and the push was refused.
#[tokio::test]
async fn postgres_a_delete_racing_pushes_never_strands_an_image() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let one = service(SqlImageStore::open(pg.pool.clone()).await.unwrap());
    let two = service(SqlImageStore::open(pg.replica_pool().await).await.unwrap());
    let (mut refused, mut deleted) = (0, 0);
    for n in 0..30 {
        let made = created(&one, "b1gfolder", &format!("race-{n}")).await;
        let repository = format!("{}/app", made.id);
        let delete = DeleteRegistryRequest {
            registry_id: made.id.clone(),
        };
        let (server, seed) = (system(), format!("v{n}"));
        let (deleting, pushed) = tokio::join!(
            one.registries.delete(&delete, &server),
            push(&two, &repository, &seed)
        );
        match (deleting, pushed) {
            (Ok(op), Err(e)) => {
                assert!(
                    matches!(
                        e.grpc_code(),
                        tonic::Code::NotFound | tonic::Code::FailedPrecondition
                    ),
                    "{e:?}"
                );
                let done = TypedOperation::<DeleteRegistryMetadata, Empty>::from_operation(
                    &wait(&one, &op).await,
                )
                .unwrap();
                assert!(done.result.unwrap().is_ok());
                assert_eq!(
                    code(get(&two, &made.id, &system()).await),
                    tonic::Code::NotFound
                );
                deleted += 1;
            }
            (Err(e), Ok(image)) => {
                assert_eq!(e.grpc_code(), tonic::Code::FailedPrecondition, "{e:?}");
                assert_eq!(
                    get(&two, &made.id, &system()).await.unwrap().status,
                    registry::Status::Active as i32
                );
                assert!(
                    one.images
                        .get(
                            &yc_proto_types::yandex::cloud::containerregistry::v1::GetImageRequest {
                                image_id: image
                            },
                            &system()
                        )
                        .await
                        .is_ok()
                );
                refused += 1;
            }
            (deleting, pushed) => {
                panic!(
                    "round {n}: delete {deleting:?} and push {pushed:?} both took effect or both failed"
                )
            }
        }
    }
    assert_eq!(refused + deleted, 30);
    pg.drop_schema().await;
}
