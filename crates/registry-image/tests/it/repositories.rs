//! The RepositoryService in-process, on SQLite and on PostgreSQL: a repository exists while it
//! holds an image, keeps its id when emptied and pushed to again, lists by registry or folder
//! in either order and in pages, answers only callers that may read its registry; a database
//! from before repositories were recorded gets them when upgraded; and on PostgreSQL, the last
//! image deleted while another replica pushes a new one never leaves a repository unrecorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::TestImage;
use yc_api_runtime::{Access, Caller, Principal, Role};
use yc_operations::{MemoryOperationStore, OperationRunner};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    DeleteImageRequest, GetRepositoryByNameRequest, GetRepositoryRequest, ListRepositoriesRequest,
    Repository,
};
use yc_registry_image::oci::ImageManifest;
use yc_registry_image::store::{ImageStore, Registry, repository_id};
use yc_registry_image::{RegistryImages, Repositories, SqlImageStore};
use yc_sql::{TestPostgres, query};

struct Service {
    repositories: Repositories,
    images: RegistryImages,
}

async fn service(store: SqlImageStore) -> Service {
    for (id, folder) in [
        ("crpone", "b1gfolder"),
        ("crptwo", "b1gfolder"),
        ("crpthree", "b1gother"),
    ] {
        store
            .ensure_registry(&Registry {
                id: id.into(),
                folder_id: folder.into(),
                name: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let store = Arc::new(store);
    let runner = OperationRunner::new(Arc::new(MemoryOperationStore::new()));
    Service {
        repositories: Repositories::new(store.clone(), runner.clone()),
        images: RegistryImages::new(store, runner),
    }
}

async fn push(service: &Service, repository: &str, seed: &str) -> String {
    let image = TestImage::new(seed, &[("app", seed.as_bytes())]);
    let manifest = ImageManifest::parse(image.manifest).unwrap();
    service
        .images
        .push(repository, &manifest, None)
        .await
        .unwrap()
        .id
}

async fn delete(service: &Service, image_id: &str) {
    let op = service
        .images
        .delete(
            &DeleteImageRequest {
                image_id: image_id.into(),
            },
            &Caller::system(),
        )
        .await
        .unwrap();
    for _ in 0..400 {
        if service.images.runner().get(&op.id).await.unwrap().done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the Delete of {image_id} did not finish");
}

async fn list(service: &Service, request: ListRepositoriesRequest) -> Result<Vec<String>, Status> {
    let mut names = Vec::new();
    let mut request = ListRepositoriesRequest {
        page_size: 2,
        ..request
    };
    loop {
        let page = service
            .repositories
            .list(&request, &Caller::system())
            .await?;
        assert!(page.repositories.len() <= 2);
        names.extend(page.repositories.into_iter().map(|r| r.name));
        if page.next_page_token.is_empty() {
            return Ok(names);
        }
        request.page_token = page.next_page_token;
    }
}

fn by_registry(id: &str) -> ListRepositoriesRequest {
    ListRepositoriesRequest {
        registry_id: id.into(),
        ..Default::default()
    }
}

async fn by_name(service: &Service, name: &str, caller: &Caller) -> Result<Repository, Status> {
    service
        .repositories
        .get_by_name(
            &GetRepositoryByNameRequest {
                repository_name: name.into(),
            },
            caller,
        )
        .await
}

async fn by_id(service: &Service, id: &str, caller: &Caller) -> Result<Repository, Status> {
    service
        .repositories
        .get(
            &GetRepositoryRequest {
                repository_id: id.into(),
            },
            caller,
        )
        .await
}

fn code<T: std::fmt::Debug>(result: Result<T, Status>) -> tonic::Code {
    result.unwrap_err().grpc_code()
}

async fn behaviour(store: SqlImageStore) {
    let service = service(store).await;
    let system = Caller::system();
    let first = push(&service, "crpone/web", "w1").await;
    push(&service, "crpone/web", "w2").await;
    push(&service, "crpone/app", "a1").await;
    push(&service, "crpone/base/os", "b1").await;
    push(&service, "crptwo/app", "t1").await;
    push(&service, "crpthree/app", "o1").await;

    // Listed by registry (by name unless asked otherwise), by folder, filtered, in pages.
    assert_eq!(
        list(&service, by_registry("crpone")).await.unwrap(),
        ["crpone/app", "crpone/base/os", "crpone/web"]
    );
    assert_eq!(
        list(
            &service,
            ListRepositoriesRequest {
                folder_id: "b1gfolder".into(),
                order_by: "name desc".into(),
                ..Default::default()
            }
        )
        .await
        .unwrap(),
        ["crptwo/app", "crpone/web", "crpone/base/os", "crpone/app"]
    );
    let mut by_id_order = vec!["crpone/app", "crpone/base/os", "crpone/web"];
    by_id_order.sort_by_key(|name| repository_id(name));
    assert_eq!(
        list(
            &service,
            ListRepositoriesRequest {
                order_by: "id".into(),
                ..by_registry("crpone")
            }
        )
        .await
        .unwrap(),
        by_id_order
    );
    assert_eq!(
        list(
            &service,
            ListRepositoriesRequest {
                filter: "name = \"crpone/web\"".into(),
                ..by_registry("crpone")
            }
        )
        .await
        .unwrap(),
        ["crpone/web"]
    );
    // The registry_id wins over folder_id.
    assert_eq!(
        list(
            &service,
            ListRepositoriesRequest {
                folder_id: "b1gother".into(),
                ..by_registry("crptwo")
            }
        )
        .await
        .unwrap(),
        ["crptwo/app"]
    );

    // Get by id and by name; the id is the name's.
    let web = by_name(&service, "crpone/web", &system).await.unwrap();
    assert_eq!(web.id, repository_id("crpone/web"));
    assert!(
        web.id.starts_with("crp") && web.id.len() == 20,
        "{}",
        web.id
    );
    assert_eq!(by_id(&service, &web.id, &system).await.unwrap(), web);

    // A repository exists while it holds an image, and keeps its id.
    let images = service
        .images
        .list(
            &yc_proto_types::yandex::cloud::containerregistry::v1::ListImagesRequest {
                repository_name: "crpone/web".into(),
                ..Default::default()
            },
            &system,
        )
        .await
        .unwrap()
        .images;
    assert_eq!(images.len(), 2);
    delete(&service, &first).await;
    assert!(by_name(&service, "crpone/web", &system).await.is_ok());
    let last = images.iter().find(|i| i.id != first).unwrap().id.clone();
    delete(&service, &last).await;
    assert_eq!(
        code(by_name(&service, "crpone/web", &system).await),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(by_id(&service, &web.id, &system).await),
        tonic::Code::NotFound
    );
    assert_eq!(
        list(&service, by_registry("crpone")).await.unwrap(),
        ["crpone/app", "crpone/base/os"]
    );
    push(&service, "crpone/web", "w3").await;
    assert_eq!(by_name(&service, "crpone/web", &system).await.unwrap(), web);

    // Who may read: the registry's folder's viewers; an unknown registry is NOT_FOUND.
    let viewer = Caller::of(
        Principal::new(
            "ajeviewer",
            Access::roles(HashMap::from([("b1gfolder".to_owned(), Role::Viewer)])),
        ),
        None,
    );
    assert!(by_name(&service, "crpone/app", &viewer).await.is_ok());
    let theirs = repository_id("crpthree/app");
    assert_eq!(
        code(by_id(&service, &theirs, &viewer).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(by_name(&service, "crpthree/app", &viewer).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(by_name(&service, "crpnosuch/app", &viewer).await),
        tonic::Code::NotFound
    );
    assert_eq!(
        code(
            service
                .repositories
                .list(&by_registry("crpthree"), &viewer)
                .await
        ),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(list(&service, by_registry("crpnosuchregistry")).await),
        tonic::Code::NotFound
    );
    let unscoped = list(&service, ListRepositoriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unscoped.grpc_code(), tonic::Code::InvalidArgument);
    assert!(
        unscoped
            .message
            .starts_with("Request validation error: registry_id:"),
        "{}",
        unscoped.message
    );
    let bad_name = by_name(&service, "crpone/Upper", &system)
        .await
        .unwrap_err();
    assert_eq!(bad_name.grpc_code(), tonic::Code::InvalidArgument);
    assert!(
        bad_name
            .message
            .starts_with("Request validation error: repository_name"),
        "{}",
        bad_name.message
    );
}

#[tokio::test]
async fn repositories_on_sqlite() {
    behaviour(SqlImageStore::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn repositories_on_postgres() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    behaviour(SqlImageStore::open(pg.pool.clone()).await.unwrap()).await;
    pg.drop_schema().await;
}

/// A database whose images were pushed before repositories and the blobs images need were
/// recorded (schema version 2) gets both when it is upgraded.
#[tokio::test]
async fn an_upgraded_database_gets_its_repositories() {
    let db = yc_sql::Db::sqlite_memory().await.unwrap();
    let service = service(SqlImageStore::open(db.clone()).await.unwrap()).await;
    push(&service, "crpone/app", "a1").await;
    push(&service, "crptwo/web", "w1").await;
    let count = "SELECT COUNT(*) FROM cr_image_blobs";
    let needed: Option<i64> = db.fetch_scalar(&query(count)).await.unwrap();
    // Each image needs its manifest, config and layer.
    assert_eq!(needed, Some(6));
    for statement in [
        "DELETE FROM cr_repositories",
        "DELETE FROM cr_image_blobs",
        "UPDATE yc_schema SET version = 2 WHERE component = 'registry-image'",
    ] {
        db.execute(&query(statement)).await.unwrap();
    }
    let store = SqlImageStore::open(db.clone()).await.unwrap();
    let refilled: Option<i64> = db.fetch_scalar(&query(count)).await.unwrap();
    assert_eq!(
        refilled, needed,
        "the blobs each image needs are recorded again"
    );
    for name in ["crpone/app", "crptwo/web"] {
        let found = store.repository_by_name(name).await.unwrap();
        assert_eq!(
            found.map(|r| r.id),
            Some(repository_id(name)),
            "{name} is recorded"
        );
    }
}

/// Two replicas: one deletes a repository's last image while the other pushes a new image
/// into it. The repository is recorded after both, since it holds the new image.
#[tokio::test]
async fn postgres_a_last_delete_racing_a_push_keeps_the_repository() {
    let Some(pg) = TestPostgres::fresh().await else {
        return;
    };
    let one = service(SqlImageStore::open(pg.pool.clone()).await.unwrap()).await;
    let two = Service {
        repositories: Repositories::new(
            Arc::new(SqlImageStore::open(pg.replica_pool().await).await.unwrap()),
            one.images.runner().clone(),
        ),
        images: RegistryImages::new(
            Arc::new(SqlImageStore::open(pg.replica_pool().await).await.unwrap()),
            one.images.runner().clone(),
        ),
    };
    for n in 0..20 {
        let repository = format!("crpone/race{n}");
        let old = push(&one, &repository, &format!("old{n}")).await;
        let seed = format!("new{n}");
        tokio::join!(delete(&one, &old), push(&two, &repository, &seed));
        assert!(
            by_name(&two, &repository, &Caller::system()).await.is_ok(),
            "round {n}: the repository holds the new image"
        );
    }
    pg.drop_schema().await;
}
