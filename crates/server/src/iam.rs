//! `--iam FILE`: who the callers are and what they may do, and the layer that authenticates
//! every call.
//!
//! The file is JSON (`docs/iam.example.json` is one):
//!
//! ```json
//! {
//!   "subjects": [
//!     { "id": "ajealice000000000000", "tokens": ["alice-secret-token"] },
//!     { "id": "ajebob00000000000000", "tokens": ["bob-secret-token"] }
//!   ],
//!   "accessBindings": [
//!     { "folderId": "b1gteam", "subjectId": "ajealice000000000000", "roleId": "editor" },
//!     { "folderId": "b1gteam", "subjectId": "ajebob00000000000000", "roleId": "viewer" }
//!   ]
//! }
//! ```
//!
//! A call carries `authorization: Bearer <token>` (registry clients may send the token as the
//! password of `Basic` credentials, as `docker login --username iam` does); the layer finds the token's subject and puts
//! its [`Principal`] into the request, where the services read it (see
//! `yc_api_runtime::access`). Endpoint discovery, health, reflection and `/healthz` need no
//! token.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use yc_api_runtime::rest::ApiError;
use yc_api_runtime::{Access, Principal, Role};
use yc_proto_types::google::rpc::Status;

/// The IAM file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IamFile {
    subjects: Vec<SubjectEntry>,
    #[serde(default)]
    access_bindings: Vec<Binding>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubjectEntry {
    id: String,
    #[serde(default)]
    tokens: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Binding {
    folder_id: String,
    subject_id: String,
    role_id: Role,
}

/// The subjects of an IAM file by token.
#[derive(Debug, Clone)]
pub(crate) struct Iam {
    by_token: Arc<HashMap<String, Principal>>,
}

impl Iam {
    /// Reads and checks an IAM file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the IAM file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the IAM file {}", path.display()))
    }

    fn parse(text: &str) -> Result<Self> {
        let file: IamFile = serde_json::from_str(text)?;
        let mut roles: HashMap<&str, HashMap<String, Role>> = HashMap::new();
        for subject in &file.subjects {
            if subject.id.is_empty() {
                bail!("a subject has an empty id");
            }
            if roles.insert(&subject.id, HashMap::new()).is_some() {
                bail!("subject {:?} is listed twice", subject.id);
            }
        }
        for binding in &file.access_bindings {
            let Some(held) = roles.get_mut(binding.subject_id.as_str()) else {
                bail!(
                    "an access binding names subject {:?}, which is not among the subjects",
                    binding.subject_id
                );
            };
            if binding.folder_id.is_empty() {
                bail!(
                    "an access binding of subject {:?} has an empty folderId",
                    binding.subject_id
                );
            }
            let role = held
                .entry(binding.folder_id.clone())
                .or_insert(binding.role_id);
            *role = (*role).max(binding.role_id);
        }
        let mut by_token = HashMap::new();
        let mut seen = HashSet::new();
        for subject in &file.subjects {
            let access = Access::roles(roles.remove(subject.id.as_str()).unwrap_or_default());
            for token in &subject.tokens {
                if token.trim().is_empty() || token.trim() != token {
                    bail!(
                        "subject {:?} has an empty token or one with spaces around it",
                        subject.id
                    );
                }
                if !seen.insert(token) {
                    bail!("a token of subject {:?} is used more than once", subject.id);
                }
                by_token.insert(
                    token.clone(),
                    Principal {
                        subject: subject.id.clone(),
                        access: access.clone(),
                    },
                );
            }
        }
        Ok(Self {
            by_token: Arc::new(by_token),
        })
    }

    /// The principal of a call with this `authorization` header value: `Bearer <token>`, or
    /// `Basic` with the token as the password (any user name, `iam` by convention), which is
    /// how `docker login` and skopeo send credentials to a registry.
    fn principal(&self, authorization: Option<&str>) -> Result<&Principal, Status> {
        let Some(value) = authorization else {
            return Err(unauthenticated(
                "Authentication required: send an IAM token as `authorization: Bearer <token>`",
            ));
        };
        let malformed = || {
            unauthenticated(
                "The authorization header must be `Bearer <IAM token>` (or, for the registry's \
                 /v2/ API, `Basic` with user `iam` and the IAM token as the password)",
            )
        };
        let (scheme, credentials) = value.split_once(' ').ok_or_else(malformed)?;
        let token = if scheme.eq_ignore_ascii_case("bearer") {
            credentials.trim().to_owned()
        } else if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credentials.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(malformed)?;
            let (_user, password) = decoded.split_once(':').ok_or_else(malformed)?;
            password.to_owned()
        } else {
            return Err(malformed());
        };
        self.by_token
            .get(&token)
            .ok_or_else(|| unauthenticated("The IAM token is invalid"))
    }
}

fn unauthenticated(message: &str) -> Status {
    Status::new(tonic::Code::Unauthenticated, message)
}

/// Calls that need no token: endpoint discovery (SDKs ask before they have one), health
/// checks and reflection (the schema is public).
fn is_public(path: &str) -> bool {
    [
        "/yandex.cloud.endpoint.ApiEndpointService/",
        "/grpc.health.v1.Health/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
        "/endpoints",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix))
        || path == "/healthz"
        || path == "/metrics"
}

/// The layer of a server with an IAM configuration: a call either carries a known token, whose
/// principal it goes on with, or is answered `UNAUTHENTICATED` (HTTP 401 for REST) without
/// reaching any service. (Without IAM the request-id layer puts the anonymous principal on
/// every call.)
pub(crate) async fn authenticate(
    State(iam): State<Iam>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    match iam.principal(authorization) {
        Ok(principal) => {
            let principal = principal.clone();
            tracing::Span::current().record("caller", principal.subject.as_str());
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(status) if yc_registry_image::distribution::is_registry_path(request.uri().path()) => {
            yc_registry_image::distribution::unauthorized(status.message).into_response()
        }
        Err(status) => {
            if yc_api_runtime::rest::is_grpc(request.headers()) {
                tonic::Status::from(status).into_http()
            } else {
                ApiError(status).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
        "subjects": [
            {"id": "ajealice", "tokens": ["alice-1", "alice-2"]},
            {"id": "ajebob", "tokens": ["bob"]},
            {"id": "ajenobody"}
        ],
        "accessBindings": [
            {"folderId": "b1gteam", "subjectId": "ajealice", "roleId": "viewer"},
            {"folderId": "b1gteam", "subjectId": "ajealice", "roleId": "editor"},
            {"folderId": "b1gteam", "subjectId": "ajebob", "roleId": "viewer"}
        ]
    }"#;

    #[test]
    fn tokens_find_their_subject_and_its_strongest_role() {
        let iam = Iam::parse(FILE).expect("parses");
        let alice = iam.principal(Some("Bearer alice-2")).expect("known");
        assert_eq!(alice.subject, "ajealice");
        assert!(alice.access.allows("b1gteam", Role::Editor));
        assert!(!alice.access.allows("b1gother", Role::Viewer));
        let bob = iam.principal(Some("bearer bob")).expect("known");
        // `iam:bob`, as `docker login --username iam --password bob` sends it.
        let basic = iam.principal(Some("Basic aWFtOmJvYg==")).expect("known");
        assert_eq!(basic.subject, "ajebob");
        assert!(bob.access.allows("b1gteam", Role::Viewer));
        assert!(!bob.access.allows("b1gteam", Role::Editor));
        for (header, message) in [
            (None, "Authentication required"),
            (Some("Bearer nobody"), "The IAM token is invalid"),
            (Some("Basic YWxpY2U="), "must be `Bearer <IAM token>`"),
            (Some("Basic aWFtOm5vYm9keQ=="), "The IAM token is invalid"),
            (Some("Basic !!"), "must be `Bearer <IAM token>`"),
            (Some("alice-1"), "must be `Bearer <IAM token>`"),
        ] {
            let error = iam.principal(header).expect_err("refused");
            assert_eq!(error.grpc_code(), tonic::Code::Unauthenticated);
            assert!(error.message.contains(message), "{header:?}: {error}");
        }
    }

    #[test]
    fn files_that_cannot_be_meant_are_refused_with_what_is_wrong() {
        for (text, wrong) in [
            (
                r#"{"subjects": [{"id": "a"}], "accessBindings": [{"folderId": "f", "subjectId": "b", "roleId": "viewer"}]}"#,
                "subject \"b\", which is not among the subjects",
            ),
            (
                r#"{"subjects": [{"id": "a"}], "accessBindings": [{"folderId": "f", "subjectId": "a", "roleId": "owner"}]}"#,
                "unknown variant `owner`, expected `viewer` or `editor`",
            ),
            (
                r#"{"subjects": [{"id": "a", "tokens": ["t"]}, {"id": "b", "tokens": ["t"]}]}"#,
                "a token of subject \"b\" is used more than once",
            ),
            (
                r#"{"subjects": [{"id": "a"}, {"id": "a"}]}"#,
                "subject \"a\" is listed twice",
            ),
            (
                r#"{"subjects": [{"id": "a", "tokens": [" t"]}]}"#,
                "empty token or one with spaces",
            ),
            (
                r#"{"subjects": [], "bindings": []}"#,
                "unknown field `bindings`",
            ),
        ] {
            let error = format!("{:#}", Iam::parse(text).expect_err(text));
            assert!(error.contains(wrong), "{text}: {error}");
        }
    }
}
