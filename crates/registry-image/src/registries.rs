//! The Container Registry RegistryService, transport aside: Get, List, Create, Update and
//! Delete of registries, every mutation an operation through `yc-operations`.
//!
//! A registry is CREATING while its Create runs, ACTIVE once it is done (pushes go only into
//! ACTIVE registries), DELETING while its Delete runs, then gone. Like the real service,
//! Delete refuses a registry that still holds images (`FAILED_PRECONDITION`); the check and
//! the DELETING mark are one transaction that pushes into the registry are serialized with,
//! so no image can slip in between.

use std::sync::Arc;

use yc_api_runtime::list::{ListSpec, Page};
use yc_api_runtime::{Caller, Role};
use yc_operations::{OperationRunner, Resumers, StartOperation};
use yc_proto_types::google::protobuf::{Any, Empty, Timestamp};
use yc_proto_types::google::rpc::Status;
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::containerregistry::v1::{
    CreateRegistryMetadata, CreateRegistryRequest, DeleteRegistryMetadata, DeleteRegistryRequest,
    GetRegistryRequest, ListRegistriesRequest, ListRegistriesResponse, Registry,
    UpdateRegistryMetadata, UpdateRegistryRequest, registry,
};
use yc_proto_types::yandex::cloud::operation::Operation;

use crate::service::store_status;
use crate::store::{ImageStore, RegistryChange, RegistryModified, RegistryQuery};

const CREATE_METHOD: &str = "yandex.cloud.containerregistry.v1.RegistryService.Create";
const UPDATE_METHOD: &str = "yandex.cloud.containerregistry.v1.RegistryService.Update";
const DELETE_METHOD: &str = "yandex.cloud.containerregistry.v1.RegistryService.Delete";
/// The fields List can filter on.
pub const FILTER_FIELDS: &[&str] = &["name"];
/// The fields an update mask can name.
pub const UPDATE_FIELDS: &[&str] = &["name", "labels"];

/// What List accepts: a filter on `name`; registries come in id order (the request has no
/// `order_by`).
const LIST: ListSpec<'static> = ListSpec {
    method: "yandex.cloud.containerregistry.v1.RegistryService.List",
    filter_fields: FILTER_FIELDS,
    order_fields: &["id"],
    default_order: &[("id", false)],
};

/// Container registries over the same [`ImageStore`] as their images.
#[derive(Clone)]
pub struct Registries {
    store: Arc<dyn ImageStore>,
    runner: OperationRunner,
}

/// The registry `id` of `store`, if the caller holds `role` in its folder: `NOT_FOUND` when
/// there is none (for anyone signed in), `PERMISSION_DENIED` when the caller may not. Every
/// service of registries, repositories, images and the registry API looks registries up so.
pub(crate) async fn registry_for(
    store: &dyn ImageStore,
    id: &str,
    caller: &Caller,
    role: Role,
) -> Result<Registry, Status> {
    let registry = store
        .registry(id)
        .await
        .map_err(store_status)?
        .ok_or_else(|| not_found(id))?;
    caller.require(&registry.folder_id, role)?;
    Ok(registry)
}

fn not_found(id: &str) -> Status {
    Status::new(
        tonic::Code::NotFound,
        format!("Registry {} not found", yc_proto_types::bounded(id, 64)),
    )
}

/// Refuses a registry that is not ACTIVE: Update and Delete wait for a Create to finish, and
/// a registry being deleted changes no more.
fn active(registry: &Registry, action: &str) -> Result<(), Status> {
    let doing = match registry::Status::try_from(registry.status) {
        Ok(registry::Status::Creating) => "being created",
        Ok(registry::Status::Deleting) => "being deleted",
        _ => return Ok(()),
    };
    Err(Status::new(
        tonic::Code::FailedPrecondition,
        format!(
            "Registry {} is {doing}; it can be {action} once it is ACTIVE",
            registry.id
        ),
    ))
}

/// Who marks a registry DELETING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeletingBy {
    /// A Delete as it is called.
    New,
    /// A Delete resumed after a restart, which may have marked the registry before it.
    Resumed,
}

impl Registries {
    /// The registries of `store`, their mutations run through `runner`.
    pub fn new(store: Arc<dyn ImageStore>, runner: OperationRunner) -> Self {
        Self { store, runner }
    }

    /// The registry `id`, if the caller holds `role` in its folder: `NOT_FOUND` when there is
    /// none (for anyone signed in), `PERMISSION_DENIED` when the caller may not.
    pub async fn registry(
        &self,
        id: &str,
        caller: &Caller,
        role: Role,
    ) -> Result<Registry, Status> {
        registry_for(&*self.store, id, caller, role).await
    }

    /// `Get`.
    pub async fn get(
        &self,
        request: &GetRegistryRequest,
        caller: &Caller,
    ) -> Result<Registry, Status> {
        validate(request)?;
        self.registry(&request.registry_id, caller, Role::Viewer)
            .await
    }

    /// `List`: a folder's registries in id order.
    pub async fn list(
        &self,
        request: &ListRegistriesRequest,
        caller: &Caller,
    ) -> Result<ListRegistriesResponse, Status> {
        validate(request)?;
        caller.require(&request.folder_id, Role::Viewer)?;
        let page = Page::read(
            self.runner.token_keys(),
            &LIST,
            &[&request.folder_id],
            &request.filter,
            "",
            request.page_size,
            &request.page_token,
        )?;
        let query = RegistryQuery {
            folder_id: request.folder_id.clone(),
            filter: page.filter.clone(),
            after: page.after.clone(),
            limit: page.fetch_limit(),
        };
        let mut registries = self
            .store
            .list_registries(&query)
            .await
            .map_err(store_status)?;
        let next_page_token = page.finish(&mut registries, |r| &r.id);
        Ok(ListRegistriesResponse {
            registries,
            next_page_token,
        })
    }

    /// `Create`: the registry is stored CREATING by the operation's work before the call
    /// returns (a name another registry of the folder has is refused then, with
    /// `ALREADY_EXISTS`), and is ACTIVE when the operation is done.
    pub async fn create(
        &self,
        request: &CreateRegistryRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        caller.require(&request.folder_id, Role::Editor)?;
        let id = yc_api_runtime::ids::new_id("crp");
        let registry = new_registry(request, &id, Timestamp::now());
        let start = StartOperation::new(
            "crp",
            CREATE_METHOD,
            "Create registry",
            &id,
            &CreateRegistryMetadata {
                registry_id: id.clone(),
            },
            request,
        )
        .caller(caller);
        let service = self.clone();
        self.runner
            .start_accepted(start, move |ctx| async move {
                service
                    .store
                    .create_registry(&registry)
                    .await
                    .map_err(store_status)?;
                ctx.accept();
                service.activate(&registry.id).await
            })
            .await
    }

    /// The end of a Create: the CREATING registry is ACTIVE.
    async fn activate(&self, id: &str) -> Result<Any, Status> {
        let registry = self
            .modify(id, &|registry, _| {
                if registry.status == registry::Status::Creating as i32 {
                    registry.status = registry::Status::Active as i32;
                }
                Ok(())
            })
            .await?;
        Ok(Any::from_msg(&registry))
    }

    /// Changes the registry `id` in one transaction: the registry as it then is, or the
    /// refusal; `NOT_FOUND` when there is none.
    async fn modify(&self, id: &str, change: &RegistryChange<'_>) -> Result<Registry, Status> {
        match self
            .store
            .modify_registry(id, change)
            .await
            .map_err(store_status)?
        {
            RegistryModified::Changed(registry) => Ok(*registry),
            RegistryModified::Refused(status) => Err(status),
            RegistryModified::Missing => Err(not_found(id)),
        }
    }

    /// `Update`: the fields the mask names (or, without a mask, the fields set) change, applied
    /// to the registry as it is when the operation applies them.
    pub async fn update(
        &self,
        request: &UpdateRegistryRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        let paths = update_paths(request)?;
        let now = self
            .registry(&request.registry_id, caller, Role::Editor)
            .await?;
        active(&now, "updated")?;
        let start = StartOperation::new(
            "crp",
            UPDATE_METHOD,
            "Update registry",
            &now.id,
            &UpdateRegistryMetadata {
                registry_id: now.id.clone(),
            },
            request,
        )
        .caller(caller);
        let service = self.clone();
        let request = request.clone();
        self.runner
            .start(start, move |_ctx| async move {
                service.apply_update(&request, &paths).await
            })
            .await
    }

    /// The work of an Update, done again as it is after a restart.
    async fn apply_update(
        &self,
        request: &UpdateRegistryRequest,
        paths: &[String],
    ) -> Result<Any, Status> {
        let registry = self
            .modify(&request.registry_id, &|registry, _| {
                active(registry, "updated")?;
                for path in paths {
                    match path.as_str() {
                        "name" => registry.name = request.name.clone(),
                        _ => registry.labels = request.labels.clone(),
                    }
                }
                Ok(())
            })
            .await?;
        Ok(Any::from_msg(&registry))
    }

    /// `Delete`: a registry that holds no images is DELETING while the operation runs, then
    /// gone; one that holds images is refused with `FAILED_PRECONDITION`. The operation's
    /// work marks it (the call returns once it has), so that a restart at any moment resumes
    /// the Delete.
    pub async fn delete(
        &self,
        request: &DeleteRegistryRequest,
        caller: &Caller,
    ) -> Result<Operation, Status> {
        validate(request)?;
        let now = self
            .registry(&request.registry_id, caller, Role::Editor)
            .await?;
        active(&now, "deleted")?;
        let id = now.id;
        let start = StartOperation::new(
            "crp",
            DELETE_METHOD,
            "Delete registry",
            &id,
            &DeleteRegistryMetadata {
                registry_id: id.clone(),
            },
            request,
        )
        .caller(caller);
        let service = self.clone();
        self.runner
            .start_accepted(start, move |ctx| async move {
                service.mark_deleting(&id, DeletingBy::New).await?;
                ctx.accept();
                service.remove(&id).await
            })
            .await
    }

    /// Marks the registry DELETING if it holds no images: a new Delete only from ACTIVE, a
    /// resumed one from DELETING too (its own mark, from before the restart).
    async fn mark_deleting(&self, id: &str, by: DeletingBy) -> Result<Registry, Status> {
        self.modify(id, &|registry, facts| {
            if !(by == DeletingBy::Resumed && registry.status == registry::Status::Deleting as i32)
            {
                active(registry, "deleted")?;
            }
            if facts.has_images {
                return Err(Status::new(
                    tonic::Code::FailedPrecondition,
                    format!(
                        "Registry {} is not empty: delete its images first",
                        registry.id
                    ),
                ));
            }
            registry.status = registry::Status::Deleting as i32;
            Ok(())
        })
        .await
    }

    /// The end of a Delete: the DELETING registry is gone.
    async fn remove(&self, id: &str) -> Result<Any, Status> {
        self.store
            .delete_registry(id, Timestamp::now())
            .await
            .map_err(store_status)?;
        Ok(Any::from_msg(&Empty {}))
    }

    /// How interrupted Creates, Updates and Deletes continue after a restart: each is done
    /// again from its stored request.
    pub fn resumers(&self, resumers: Resumers) -> Resumers {
        let (create, update, delete) = (self.clone(), self.clone(), self.clone());
        resumers
            .add(CREATE_METHOD, false, move |record, _ctx| {
                let service = create.clone();
                async move {
                    let request: CreateRegistryRequest = record.request()?;
                    let id = record
                        .metadata::<CreateRegistryMetadata>()
                        .map(|m| m.registry_id)
                        .unwrap_or_default();
                    if service
                        .store
                        .registry(&id)
                        .await
                        .map_err(store_status)?
                        .is_none()
                    {
                        let at = record.operation.created_at.unwrap_or_else(Timestamp::now);
                        service
                            .store
                            .create_registry(&new_registry(&request, &id, at))
                            .await
                            .map_err(store_status)?;
                    }
                    service.activate(&id).await
                }
            })
            .add(UPDATE_METHOD, false, move |record, _ctx| {
                let service = update.clone();
                async move {
                    let request: UpdateRegistryRequest = record.request()?;
                    service
                        .apply_update(&request, &update_paths(&request)?)
                        .await
                }
            })
            .add(DELETE_METHOD, false, move |record, _ctx| {
                let service = delete.clone();
                async move {
                    let request: DeleteRegistryRequest = record.request()?;
                    match service
                        .mark_deleting(&request.registry_id, DeletingBy::Resumed)
                        .await
                    {
                        // Gone already: done.
                        Err(e) if e.grpc_code() == tonic::Code::NotFound => {
                            Ok(Any::from_msg(&Empty {}))
                        }
                        Err(e) => Err(e),
                        Ok(_) => service.remove(&request.registry_id).await,
                    }
                }
            })
    }
}

/// The registry a Create stores at first: CREATING, with what the request gives.
fn new_registry(request: &CreateRegistryRequest, id: &str, at: Timestamp) -> Registry {
    Registry {
        id: id.to_owned(),
        folder_id: request.folder_id.clone(),
        name: request.name.clone(),
        status: registry::Status::Creating as i32,
        created_at: Some(at),
        labels: request.labels.clone(),
    }
}

/// The fields an Update changes.
fn update_paths(request: &UpdateRegistryRequest) -> Result<Vec<String>, Status> {
    yc_api_runtime::update_paths(
        request.update_mask.as_ref(),
        &[
            ("name", !request.name.is_empty()),
            ("labels", !request.labels.is_empty()),
        ],
        UPDATE_FIELDS,
    )
}
