//! Who may do what: the roles a caller holds in folders, and the one check every service makes
//! before it reads or changes what a folder holds.
//!
//! The server authenticates a call's token, finds its [`Principal`] and puts it in the
//! request's extensions; [`Caller`](crate::Caller) carries it to the services, which call
//! [`Caller::require`](crate::Caller::require) with the folder of what the call reads
//! ([`Role::Viewer`]) or changes ([`Role::Editor`]). Without a principal (a server without an
//! IAM configuration, or a service used as a library) a caller may do anything.
//!
//! ```
//! use std::collections::HashMap;
//! use yc_api_runtime::{Access, Role};
//!
//! let access = Access::roles(HashMap::from([("b1gteam".to_owned(), Role::Viewer)]));
//! assert!(access.allows("b1gteam", Role::Viewer));
//! assert!(!access.allows("b1gteam", Role::Editor));
//! assert!(!access.allows("b1gother", Role::Viewer));
//! assert!(Access::unrestricted().allows("b1gother", Role::Editor));
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use yc_proto_types::google::rpc::Status;

/// A role in a folder or on a resource, as an access binding grants it; an editor may do what
/// a viewer may, an admin what an editor may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: Get, List, GetLatestByFamily, ListOperations, and the operations it may see.
    Viewer,
    /// Reads and changes: also Create, Update, Delete, and Cancel.
    Editor,
    /// All an editor may, and also changing who may do what (`SetAccessBindings`,
    /// `UpdateAccessBindings`).
    Admin,
}

impl Role {
    /// The role's name in an IAM file: `viewer`, `editor`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

/// What a caller may do: anything, or what its roles in folders allow. There is no default:
/// anything is said with [`Access::unrestricted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Folder id → the strongest role held there; `None` for anything.
    roles: Option<Arc<HashMap<String, Role>>>,
}

impl Access {
    /// Anything, in every folder.
    pub fn unrestricted() -> Self {
        Self { roles: None }
    }

    /// What `roles` (folder id → role) allow, and nothing else.
    pub fn roles(roles: HashMap<String, Role>) -> Self {
        Self {
            roles: Some(Arc::new(roles)),
        }
    }

    /// Whether `role` (or a stronger one) is held in `folder`.
    pub fn allows(&self, folder: &str, role: Role) -> bool {
        match &self.roles {
            None => true,
            Some(roles) => roles.get(folder).is_some_and(|held| *held >= role),
        }
    }

    /// The folders where `role` (or a stronger one) is held, sorted; `None` for
    /// [`Access::unrestricted`], which holds it everywhere.
    pub fn folders(&self, role: Role) -> Option<Vec<&str>> {
        let roles = self.roles.as_ref()?;
        let mut folders: Vec<&str> = roles
            .iter()
            .filter(|(_, held)| **held >= role)
            .map(|(folder, _)| folder.as_str())
            .collect();
        folders.sort_unstable();
        Some(folders)
    }

    /// Whether this is [`Access::unrestricted`].
    pub fn is_unrestricted(&self) -> bool {
        self.roles.is_none()
    }
}

/// The subject a call was authenticated as and what it may do, which the server puts in the
/// request's extensions. There is no default: a call without one is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The subject id, recorded as `created_by` of the operations it starts.
    pub subject: String,
    /// Its roles.
    pub access: Access,
}

/// The subject of the server's own work.
pub const SYSTEM_SUBJECT: &str = "yc-images";

impl Principal {
    /// `subject` with `access`.
    pub fn new(subject: impl Into<String>, access: Access) -> Self {
        Self {
            subject: subject.into(),
            access,
        }
    }

    /// The server itself, doing its own work: anything.
    pub fn system() -> Self {
        Self::new(SYSTEM_SUBJECT, Access::unrestricted())
    }

    /// The caller of a server without IAM, which the server puts on every call: no subject,
    /// and anything, as the server's operator chose by running it so.
    pub fn anonymous() -> Self {
        Self::new("", Access::unrestricted())
    }
}

/// A tower layer that puts `principal` on every request: for a server without IAM
/// ([`Principal::anonymous`]), or one whose callers are authenticated elsewhere. A request
/// that reaches a service without passing such a layer carries no principal and is refused.
#[derive(Debug, Clone)]
pub struct PrincipalLayer {
    principal: Principal,
}

impl PrincipalLayer {
    /// Puts `principal` on every request.
    pub fn new(principal: Principal) -> Self {
        Self { principal }
    }
}

impl<S> tower_layer::Layer<S> for PrincipalLayer {
    type Service = WithPrincipal<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithPrincipal {
            inner,
            principal: self.principal.clone(),
        }
    }
}

/// A service whose requests carry a principal; see [`PrincipalLayer`].
#[derive(Debug, Clone)]
pub struct WithPrincipal<S> {
    inner: S,
    principal: Principal,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for WithPrincipal<S>
where
    S: tower_service::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.principal.clone());
        self.inner.call(request)
    }
}

/// `PERMISSION_DENIED`, the answer to a call on a folder the caller holds no role for that
/// allows it. Like the real API it does not hide whether the resource exists: a missing one is
/// `NOT_FOUND` whoever asks.
pub fn permission_denied() -> Status {
    Status::new(tonic::Code::PermissionDenied, "Permission denied")
}
