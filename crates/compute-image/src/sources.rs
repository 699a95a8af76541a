//! Disks and snapshots, the sources images are made from besides images and URIs: read only
//! here (Get and List of `DiskService` and `SnapshotService`), filled by seeding.
//!
//! Each kind is a table (`ci_disks`, `ci_snapshots`) with the columns List filters and sorts
//! on and the message in `body`, in the same database as the images; List is one keyset query
//! through `yc_api_runtime::list`, served by indexes on (folder, sort column, id), the same
//! way as the images' List.

use prost::{Message, Name};
use yc_api_runtime::list::sql::{KeysetSelect, cursor_gone, nanos, sort_keys};
use yc_api_runtime::list::{ListSpec, Page};
use yc_api_runtime::{Caller, Role, store_unavailable};
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::validate;
use yc_proto_types::yandex::cloud::compute::v1::{
    Disk, GetDiskRequest, GetSnapshotRequest, ListDisksRequest, ListDisksResponse,
    ListSnapshotsRequest, ListSnapshotsResponse, Snapshot, disk, snapshot,
};
use yc_sql::{ColumnTypes, Db, Query, query};

const COMPONENT: &str = "compute-sources";
const SCHEMA_VERSION: i64 = 1;
/// The columns List sorts by, besides `id`.
const SORT_COLUMNS: &[&str] = &["name", "status", "created_at"];
/// The fields List filters on.
pub const FILTER_FIELDS: &[&str] = &["name", "status", "id"];
/// The fields List sorts by.
pub const ORDER_FIELDS: &[&str] = &["id", "name", "status", "created_at"];

/// A kind of read-only source: its table, its name in messages, and the fields List needs.
pub trait SourceKind: Message + Name + Default + Clone + 'static {
    /// Its table.
    const TABLE: &'static str;
    /// Its name in messages: `Disk`, `Snapshot`.
    const NOUN: &'static str;
    /// The prefix of ids made for it.
    const ID_PREFIX: &'static str;
    /// Its List method, for page tokens.
    const LIST_METHOD: &'static str;
    /// Its id.
    fn id(&self) -> &str;
    /// Its folder.
    fn folder_id(&self) -> &str;
    /// Its name.
    fn name(&self) -> &str;
    /// When it was created.
    fn created_at(&self) -> Option<Timestamp>;
    /// Its status by name (`READY`).
    fn status_name(&self) -> String;
    /// Whether it may be used: READY.
    fn is_ready(&self) -> bool;
    /// Fills what a seed may leave out: the id, the creation time, the status (READY).
    fn complete(&mut self);
}

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> String {
    E::try_from(value)
        .map(|e| name(e).to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// The [`SourceKind`] of a message with `id`, `folder_id`, `name`, `created_at` and a
/// `status` of its own `Status` enum (module `$module`).
macro_rules! source_kind {
    ($kind:ty, $module:ident, $table:literal, $noun:literal, $prefix:literal, $list:literal) => {
        impl SourceKind for $kind {
            const TABLE: &'static str = $table;
            const NOUN: &'static str = $noun;
            const ID_PREFIX: &'static str = $prefix;
            const LIST_METHOD: &'static str = $list;
            fn id(&self) -> &str {
                &self.id
            }
            fn folder_id(&self) -> &str {
                &self.folder_id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn created_at(&self) -> Option<Timestamp> {
                self.created_at
            }
            fn status_name(&self) -> String {
                enum_name(self.status, |s: $module::Status| s.as_str_name())
            }
            fn is_ready(&self) -> bool {
                self.status == $module::Status::Ready as i32
            }
            fn complete(&mut self) {
                if self.status == $module::Status::Unspecified as i32 {
                    self.status = $module::Status::Ready as i32;
                }
                complete_common(&mut self.id, &mut self.created_at, Self::ID_PREFIX);
            }
        }
    };
}

source_kind!(
    Disk,
    disk,
    "ci_disks",
    "Disk",
    "fhm",
    "yandex.cloud.compute.v1.DiskService.List"
);
source_kind!(
    Snapshot,
    snapshot,
    "ci_snapshots",
    "Snapshot",
    "fd8",
    "yandex.cloud.compute.v1.SnapshotService.List"
);

fn complete_common(id: &mut String, created_at: &mut Option<Timestamp>, prefix: &str) {
    if id.is_empty() {
        *id = yc_api_runtime::ids::new_id(prefix);
    }
    if created_at.is_none() {
        *created_at = Some(Timestamp::now());
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    store_unavailable("disk and snapshot store", &e.to_string())
}

fn column(field: &str) -> &'static str {
    match field {
        "name" => "name",
        "status" => "status",
        "created_at" => "created_at",
        _ => "id",
    }
}

/// Disks and snapshots in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlSources {
    db: Db,
}

impl SqlSources {
    /// The tables in `db`, created or checked.
    pub async fn open(db: impl Into<Db>) -> Result<Self, Status> {
        let db = db.into();
        let ColumnTypes { text, int, bytes } = db.dialect().types();
        let mut schema = Vec::new();
        for table in [Disk::TABLE, Snapshot::TABLE] {
            schema.push(format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                    id {text} PRIMARY KEY,
                    folder_id {text} NOT NULL,
                    name {text} NOT NULL,
                    status {text} NOT NULL,
                    created_at {int} NOT NULL,
                    body {bytes} NOT NULL
                )"
            ));
            schema.push(format!(
                "CREATE INDEX IF NOT EXISTS {table}_folder_id ON {table} (folder_id, id)"
            ));
            for sort in SORT_COLUMNS {
                schema.push(format!(
                    "CREATE INDEX IF NOT EXISTS {table}_folder_{sort} ON {table} (folder_id, {sort}, id)"
                ));
            }
        }
        db.migrate(COMPONENT, SCHEMA_VERSION, &schema)
            .await
            .map_err(unavailable)?;
        Ok(Self { db })
    }

    /// A store in a fresh in-memory SQLite database.
    pub async fn in_memory() -> Result<Self, Status> {
        Self::open(Db::sqlite_memory().await.map_err(unavailable)?).await
    }

    /// The source `id` of kind `K`.
    pub async fn get<K: SourceKind>(&self, id: &str) -> Result<Option<K>, Status> {
        let sql = format!("SELECT body FROM {} WHERE id = $1", K::TABLE);
        let body: Option<Vec<u8>> = self
            .db
            .fetch_scalar(&query(sql).bind(id))
            .await
            .map_err(unavailable)?;
        body.map(|b| decode::<K>(&b)).transpose()
    }

    /// Stores `source` unless its id is stored already (so that seeding is idempotent);
    /// whether it was new. A missing id, creation time and status are filled in.
    pub async fn seed<K: SourceKind>(&self, mut source: K) -> Result<bool, Status> {
        if source.folder_id().is_empty() {
            return Err(Status::new(
                tonic::Code::InvalidArgument,
                format!("a seeded {} needs its folderId", K::NOUN.to_lowercase()),
            ));
        }
        source.complete();
        let sql = format!(
            "INSERT INTO {} (id, folder_id, name, status, created_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            K::TABLE
        );
        let done = self
            .db
            .execute(
                &query(sql)
                    .bind(source.id())
                    .bind(source.folder_id())
                    .bind(source.name())
                    .bind(source.status_name())
                    .bind(nanos(source.created_at().unwrap_or_default()))
                    .bind(source.encode_to_vec()),
            )
            .await
            .map_err(unavailable)?;
        Ok(done > 0)
    }

    /// The statement of one page of a List of kind `K`, as `page` reads the request.
    fn list_sql<K: SourceKind>(&self, folder_id: &str, page: &Page) -> Query {
        let keys = sort_keys(&page.order, column);
        KeysetSelect {
            columns: "body",
            table: K::TABLE,
            live: None,
            scope: ("folder_id", folder_id.to_owned()),
            steer_from_scope: false,
            conditions: page
                .filter
                .conditions
                .iter()
                .map(|c| (column(&c.field), c))
                .collect(),
            keys,
            after: page.after.clone(),
            limit: page.fetch_limit(),
        }
        .build(self.db.dialect())
    }

    /// One page of a List of kind `K`, as `page` reads the request.
    async fn list<K: SourceKind>(&self, folder_id: &str, page: &Page) -> Result<Vec<K>, Status> {
        let sql = self.list_sql::<K>(folder_id, page);
        let found: Vec<K> = self
            .db
            .fetch_messages(&sql, K::NOUN)
            .await
            .map_err(unavailable)?;
        if cursor_gone(&self.db, K::TABLE, page.after.as_deref(), found.is_empty())
            .await
            .map_err(unavailable)?
            .is_some()
        {
            return Err(yc_api_runtime::list::token_too_old());
        }
        Ok(found)
    }

    /// The database's plan for a List of kind `K`, one line per step (see
    /// [`Db::query_plan`]).
    pub async fn query_plan<K: SourceKind>(
        &self,
        folder_id: &str,
        page: &Page,
    ) -> Result<Vec<String>, Status> {
        let sql = self.list_sql::<K>(folder_id, page);
        self.db.query_plan(&sql).await.map_err(unavailable)
    }
}

/// What a List of kind `K` accepts.
pub fn list_spec<K: SourceKind>() -> ListSpec<'static> {
    ListSpec {
        method: K::LIST_METHOD,
        filter_fields: FILTER_FIELDS,
        order_fields: ORDER_FIELDS,
        default_order: &[("id", false)],
    }
}

fn decode<K: SourceKind>(body: &[u8]) -> Result<K, Status> {
    K::decode(body).map_err(|e| unavailable(format!("a stored {} does not decode: {e}", K::NOUN)))
}

/// `DiskService` and `SnapshotService`, transport aside: Get and List of each, for callers
/// who may read the folder; and the sources a Create reads.
#[derive(Debug, Clone)]
pub struct ComputeSources {
    store: SqlSources,
    token_keys: yc_api_runtime::list::TokenKeys,
}

/// A List request of either kind, as the shared List reads it.
struct ListRequest<'a> {
    folder_id: &'a str,
    page_size: i64,
    page_token: &'a str,
    filter: &'a str,
    order_by: &'a str,
}

impl ComputeSources {
    /// The services over `store`; page tokens signed with `token_keys` (the operation
    /// runner's, shared by every List of the server).
    pub fn new(store: SqlSources, token_keys: yc_api_runtime::list::TokenKeys) -> Self {
        Self { store, token_keys }
    }

    /// The store, for seeding.
    pub fn store(&self) -> &SqlSources {
        &self.store
    }

    /// The source `id` of kind `K`, if the caller may read its folder: `NOT_FOUND` when
    /// there is none, `PERMISSION_DENIED` when it may not.
    pub async fn readable<K: SourceKind>(&self, id: &str, caller: &Caller) -> Result<K, Status> {
        let source: K = self.store.get(id).await?.ok_or_else(|| {
            Status::new(tonic::Code::NotFound, format!("{} {id} not found", K::NOUN))
        })?;
        caller.require(source.folder_id(), Role::Viewer)?;
        Ok(source)
    }

    async fn list<K: SourceKind>(
        &self,
        request: ListRequest<'_>,
        caller: &Caller,
    ) -> Result<(Vec<K>, String), Status> {
        caller.require(request.folder_id, Role::Viewer)?;
        let page = Page::read(
            &self.token_keys,
            &list_spec::<K>(),
            &[request.folder_id],
            request.filter,
            request.order_by,
            request.page_size,
            request.page_token,
        )?;
        let mut found: Vec<K> = self.store.list(request.folder_id, &page).await?;
        let next = page.finish(&mut found, |s| s.id());
        Ok((found, next))
    }

    /// `DiskService.Get`.
    pub async fn get_disk(
        &self,
        request: &GetDiskRequest,
        caller: &Caller,
    ) -> Result<Disk, Status> {
        validate(request)?;
        self.readable(&request.disk_id, caller).await
    }

    /// `DiskService.List`.
    pub async fn list_disks(
        &self,
        request: &ListDisksRequest,
        caller: &Caller,
    ) -> Result<ListDisksResponse, Status> {
        validate(request)?;
        let (disks, next_page_token) = self
            .list(
                ListRequest {
                    folder_id: &request.folder_id,
                    page_size: request.page_size,
                    page_token: &request.page_token,
                    filter: &request.filter,
                    order_by: &request.order_by,
                },
                caller,
            )
            .await?;
        Ok(ListDisksResponse {
            disks,
            next_page_token,
        })
    }

    /// `SnapshotService.Get`.
    pub async fn get_snapshot(
        &self,
        request: &GetSnapshotRequest,
        caller: &Caller,
    ) -> Result<Snapshot, Status> {
        validate(request)?;
        self.readable(&request.snapshot_id, caller).await
    }

    /// `SnapshotService.List`.
    pub async fn list_snapshots(
        &self,
        request: &ListSnapshotsRequest,
        caller: &Caller,
    ) -> Result<ListSnapshotsResponse, Status> {
        validate(request)?;
        let (snapshots, next_page_token) = self
            .list(
                ListRequest {
                    folder_id: &request.folder_id,
                    page_size: request.page_size,
                    page_token: &request.page_token,
                    filter: &request.filter,
                    order_by: &request.order_by,
                },
                caller,
            )
            .await?;
        Ok(ListSnapshotsResponse {
            snapshots,
            next_page_token,
        })
    }
}
