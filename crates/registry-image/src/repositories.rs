//! The Container Registry RepositoryService, transport aside: Get, GetByName and List.
//!
//! A repository is the images of a registry pushed under one name, `<registry_id>/<name>`:
//! it exists while it holds an image (the store records it with the first image pushed and
//! drops it with the last one deleted), and its id is derived from its name, so it is the same
//! whenever the name is used.

use std::sync::Arc;

use yc_api_runtime::list::{ListSpec, Page};
use yc_api_runtime::{Caller, Role};
use yc_operations::OperationRunner;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    GetRepositoryByNameRequest, GetRepositoryRequest, ListRepositoriesRequest,
    ListRepositoriesResponse, Repository,
};

use crate::registries::registry_for;
use crate::service::{registry_of, store_status};
use crate::store::{ImageStore, RepositoryQuery, RepositoryScope};

/// What List accepts.
const LIST: ListSpec<'static> = ListSpec {
    method: "yandex.cloud.containerregistry.v1.RepositoryService.List",
    filter_fields: &["name"],
    order_fields: &["name", "id"],
    default_order: &[("name", false)],
};

/// The repositories of the registries in an [`ImageStore`].
#[derive(Clone)]
pub struct Repositories {
    store: Arc<dyn ImageStore>,
    runner: OperationRunner,
}

fn not_found(what: &str) -> Status {
    Status::new(
        tonic::Code::NotFound,
        format!(
            "Repository {} not found",
            yc_proto_types::bounded(what, 300)
        ),
    )
}

impl Repositories {
    /// The repositories of `store`; page tokens are sealed with `runner`'s keys.
    pub fn new(store: Arc<dyn ImageStore>, runner: OperationRunner) -> Self {
        Self { store, runner }
    }

    /// `repository`, if the caller may read its registry.
    async fn readable(
        &self,
        repository: Repository,
        caller: &Caller,
    ) -> Result<Repository, Status> {
        registry_for(
            &*self.store,
            registry_of(&repository.name),
            caller,
            Role::Viewer,
        )
        .await?;
        Ok(repository)
    }

    /// `Get`.
    pub async fn get(
        &self,
        request: &GetRepositoryRequest,
        caller: &Caller,
    ) -> Result<Repository, Status> {
        validate(request)?;
        let repository = self
            .store
            .repository(&request.repository_id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(&request.repository_id))?;
        self.readable(repository, caller).await
    }

    /// `GetByName`: the registry must exist and be readable (`NOT_FOUND`, `PERMISSION_DENIED`
    /// as for the registry), then the repository must hold an image.
    pub async fn get_by_name(
        &self,
        request: &GetRepositoryByNameRequest,
        caller: &Caller,
    ) -> Result<Repository, Status> {
        validate(request)?;
        let name = &request.repository_name;
        registry_for(&*self.store, registry_of(name), caller, Role::Viewer).await?;
        self.store
            .repository_by_name(name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(name))
    }

    /// `List`: a registry's repositories, or (without `registry_id`) those of every registry
    /// of a folder; by name unless `order_by` says otherwise.
    pub async fn list(
        &self,
        request: &ListRepositoriesRequest,
        caller: &Caller,
    ) -> Result<ListRepositoriesResponse, Status> {
        validate(request)?;
        let scope = if !request.registry_id.is_empty() {
            registry_for(&*self.store, &request.registry_id, caller, Role::Viewer).await?;
            RepositoryScope::Registry(request.registry_id.clone())
        } else if !request.folder_id.is_empty() {
            caller.require(&request.folder_id, Role::Viewer)?;
            RepositoryScope::Folder(request.folder_id.clone())
        } else {
            return Err(yc_proto_types::validation_error(
                "registry_id",
                "one of registry_id or folder_id is required",
            ));
        };
        let page = Page::read(
            self.runner.token_keys(),
            &LIST,
            &[&request.registry_id, &request.folder_id],
            &request.filter,
            &request.order_by,
            request.page_size,
            &request.page_token,
        )?;
        let query = RepositoryQuery {
            scope,
            filter: page.filter.clone(),
            order: page.order.clone(),
            after: page.after.clone(),
            limit: page.fetch_limit(),
        };
        let mut repositories = self
            .store
            .list_repositories(&query)
            .await
            .map_err(store_status)?;
        let next_page_token = page.finish(&mut repositories, |r| &r.id);
        Ok(ListRepositoriesResponse {
            repositories,
            next_page_token,
        })
    }
}
