//! [`Caller`]: who is calling, as a service needs to know.

use yc_proto_types::google::rpc::Status;

use crate::{Access, Principal, Role, permission_denied};

/// The header (and gRPC metadata key) that carries an idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The key in an `idempotency-key` value: trimmed, none when empty.
pub fn idempotency_key(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Who is calling, as far as a service needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The subject, recorded as an operation's `created_by`.
    pub subject: String,
    /// The request's `idempotency-key`, if any.
    pub idempotency_key: Option<String>,
    /// What the subject may do.
    pub access: Access,
}

/// The principal the server's authentication put in a request's extensions, or
/// `UNAUTHENTICATED`.
fn principal(extensions: &axum::http::Extensions) -> Result<Principal, Status> {
    extensions.get::<Principal>().cloned().ok_or_else(|| {
        Status::new(
            tonic::Code::Unauthenticated,
            "The call carries no authenticated principal",
        )
    })
}

impl Caller {
    /// The server itself, doing its own work (resuming operations, seeding): anything.
    pub fn system() -> Self {
        Self::of(Principal::system(), None)
    }

    /// `principal`, with an idempotency key.
    pub fn of(principal: Principal, idempotency_key: Option<String>) -> Self {
        Self {
            subject: principal.subject,
            idempotency_key,
            access: principal.access,
        }
    }

    /// The caller of a request with these headers and extensions: the [`Principal`] the
    /// server's authentication put there and the `idempotency-key` header.
    /// `UNAUTHENTICATED` when there is no principal.
    pub fn from_parts(
        headers: &axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> Result<Self, Status> {
        let key = headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok());
        Ok(Self::of(principal(extensions)?, idempotency_key(key)))
    }

    /// The caller of a gRPC request (or of a REST one, which the transcoder makes one), as
    /// [`Caller::from_parts`].
    pub fn from_grpc<T>(request: &tonic::Request<T>) -> Result<Self, Status> {
        let key = request.metadata().get(IDEMPOTENCY_KEY);
        Ok(Self::of(
            principal(request.extensions())?,
            idempotency_key(key.and_then(|v| v.to_str().ok())),
        ))
    }

    /// Nothing unless the caller holds `role` (or a stronger one) in `folder`; else
    /// `PERMISSION_DENIED`.
    pub fn require(&self, folder: &str, role: Role) -> Result<(), Status> {
        if self.access.allows(folder, role) {
            Ok(())
        } else {
            Err(permission_denied())
        }
    }

    /// Whether the caller may read or cancel an operation started by `created_by`: its own, or
    /// any when it may do anything.
    pub fn may_see_operation(&self, created_by: &str) -> bool {
        self.access.is_unrestricted() || (!self.subject.is_empty() && self.subject == created_by)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = crate::rest::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Caller::from_parts(&parts.headers, &parts.extensions).map_err(crate::rest::ApiError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_without_a_principal_is_unauthenticated() {
        let request = tonic::Request::new(());
        let refused = Caller::from_grpc(&request).unwrap_err();
        assert_eq!(refused.grpc_code(), tonic::Code::Unauthenticated);

        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(Principal::anonymous());
        request
            .metadata_mut()
            .insert(IDEMPOTENCY_KEY, " k1 ".parse().unwrap());
        let caller = Caller::from_grpc(&request).unwrap();
        assert_eq!(caller.idempotency_key.as_deref(), Some("k1"));
        assert!(caller.access.is_unrestricted());

        // From HTTP headers, as REST and the registry API read it: a blank key is none.
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "Idempotency-Key",
            axum::http::HeaderValue::from_static("  "),
        );
        let mut extensions = axum::http::Extensions::new();
        assert!(Caller::from_parts(&headers, &extensions).is_err());
        extensions.insert(Principal::anonymous());
        let caller = Caller::from_parts(&headers, &extensions).unwrap();
        assert_eq!(caller.idempotency_key, None);
    }

    #[test]
    fn roles_decide_what_a_caller_may_do() {
        let access = Access::roles([("b1g".to_owned(), Role::Viewer)].into());
        let caller = Caller::of(Principal::new("alice", access), None);
        assert!(caller.require("b1g", Role::Viewer).is_ok());
        assert_eq!(
            caller.require("b1g", Role::Editor).unwrap_err().grpc_code(),
            tonic::Code::PermissionDenied
        );
        assert!(caller.require("b1gother", Role::Viewer).is_err());
        assert!(caller.may_see_operation("alice"));
        assert!(!caller.may_see_operation("bob"));
        assert!(Caller::system().may_see_operation("bob"));
    }
}
