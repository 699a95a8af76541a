//! `--iam FILE`: who the callers are and what they may do, and the layer that authenticates
//! every call.
//!
//! The file is JSON (`docs/iam.example.json` is one):
//!
//! ```json
//! {
//!   "subjects": [
//!     { "id": "ajealice000000000000", "tokens": ["alice-secret-token"],
//!       "oauthTokens": ["y0_alice-oauth-token"] },
//!     { "id": "ajebob00000000000000", "tokens": ["bob-secret-token"] },
//!     { "id": "ajebuilder0000000000",
//!       "keys": [{ "id": "ajekey00000000000000", "publicKey": "-----BEGIN PUBLIC KEY-----…" },
//!                { "keyFile": "builder-key.json" }] }
//!   ],
//!   "accessBindings": [
//!     { "folderId": "b1gteam", "subjectId": "ajealice000000000000", "roleId": "editor" },
//!     { "folderId": "b1gteam", "subjectId": "ajebob00000000000000", "roleId": "viewer" }
//!   ]
//! }
//! ```
//!
//! A binding's `roleId` is `viewer` (reads), `editor` (also changes) or `admin` (also changes
//! who may do what: the access bindings of the folder's images).
//!
//! A call carries `authorization: Bearer <token>` (registry clients may send the token as the
//! password of `Basic` credentials, as `docker login --username iam` does); the layer finds the token's subject and puts
//! its [`Principal`] into the request, where the services read it (see
//! `yc_api_runtime::access`). Endpoint discovery, health, reflection, `/healthz` and
//! exchanging credentials for a token (`IamTokenService.Create`) need no token.
//!
//! Besides the file's fixed tokens, a caller may use an IAM token this server issued
//! ([`tokens`]): for a JWT signed with one of a service account's `keys` (the public key in
//! PEM, or the authorized-key file `yc iam key create` or `yc-images iam key create` wrote,
//! relative to the IAM file), or for one of a user's `oauthTokens`. Such a token acts as its
//! subject, with the subject's roles from this file. Keys added to the file (as `yc-images iam
//! key create --iam` does) are found without a restart: the file is read again when a JWT
//! names a key it does not know.

pub(crate) mod jwt;
pub(crate) mod keys;
pub(crate) mod tokens;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use yc_api_runtime::rest::ApiError;
use yc_api_runtime::{Access, Principal, Role};
use yc_proto_types::google::rpc::Status;

use tokens::IssuedTokens;

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
    /// OAuth tokens a user exchanges for IAM tokens.
    #[serde(default)]
    oauth_tokens: Vec<String>,
    /// A service account's authorized keys, for the JWTs it exchanges for IAM tokens.
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

/// An authorized key: its id and public key, or the key file that has both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyEntry {
    id: Option<String>,
    public_key: Option<String>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Binding {
    folder_id: String,
    subject_id: String,
    role_id: Role,
}

/// What an IAM file says: the subjects by fixed token, OAuth token and key, and their roles.
#[derive(Debug, Default)]
pub(crate) struct Config {
    by_token: HashMap<String, Principal>,
    by_oauth_token: HashMap<String, String>,
    keys: HashMap<String, jwt::PublicKey>,
    access: HashMap<String, Access>,
}

impl Config {
    /// Reads and checks an IAM file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the IAM file {}", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("in the IAM file {}", path.display()))
    }

    /// An IAM file's text; key files are found relative to `dir`.
    pub(crate) fn parse(text: &str, dir: &Path) -> Result<Self> {
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
        let mut config = Config::default();
        let mut seen = HashSet::new();
        for subject in &file.subjects {
            let access = Access::roles(roles.remove(subject.id.as_str()).unwrap_or_default());
            config.access.insert(subject.id.clone(), access.clone());
            for token in subject.tokens.iter().chain(&subject.oauth_tokens) {
                if token.trim().is_empty() || token.trim() != token {
                    bail!(
                        "subject {:?} has an empty token or one with spaces around it",
                        subject.id
                    );
                }
                if !seen.insert(token) {
                    bail!("a token of subject {:?} is used more than once", subject.id);
                }
            }
            for token in &subject.tokens {
                config.by_token.insert(
                    token.clone(),
                    Principal {
                        subject: subject.id.clone(),
                        access: access.clone(),
                    },
                );
            }
            for token in &subject.oauth_tokens {
                config
                    .by_oauth_token
                    .insert(token.clone(), subject.id.clone());
            }
            for key in &subject.keys {
                let (id, key) = Self::key(&subject.id, key, dir)?;
                if config.keys.insert(id.clone(), key).is_some() {
                    bail!("the key {id:?} is listed twice");
                }
            }
        }
        Ok(config)
    }

    /// A subject's key entry: its id and public key.
    fn key(subject: &str, entry: &KeyEntry, dir: &Path) -> Result<(String, jwt::PublicKey)> {
        let (id, pem) = match (&entry.id, &entry.public_key, &entry.key_file) {
            (Some(id), Some(pem), None) => (id.clone(), pem.clone()),
            (None, None, Some(file)) => {
                let path = dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the key file {}", path.display()))?;
                let key: keys::KeyFile = serde_json::from_str(&text).with_context(|| {
                    format!("the key file {} is not an authorized key", path.display())
                })?;
                if key.service_account_id != subject {
                    bail!(
                        "the key file {} is of service account {:?}, not of subject {subject:?}",
                        path.display(),
                        key.service_account_id
                    );
                }
                (key.id, key.public_key)
            }
            _ => bail!(
                "a key of subject {subject:?} must have either an id and a publicKey, or a keyFile"
            ),
        };
        if id.is_empty() {
            bail!("a key of subject {subject:?} has an empty id");
        }
        let key = jwt::PublicKey::from_pem(subject, &pem)
            .map_err(|e| anyhow::anyhow!("key {id:?} of subject {subject:?}: {e}"))?;
        Ok((id, key))
    }

    /// The authorized keys by id.
    pub(crate) fn keys(&self) -> &HashMap<String, jwt::PublicKey> {
        &self.keys
    }

    /// The subject of an OAuth token.
    pub(crate) fn oauth_subject(&self, token: &str) -> Option<&str> {
        self.by_oauth_token.get(token).map(String::as_str)
    }

    /// A subject's roles; none for a subject the file does not list.
    fn access_of(&self, subject: &str) -> Access {
        self.access
            .get(subject)
            .cloned()
            .unwrap_or_else(|| Access::roles(HashMap::new()))
    }
}

/// The IAM of a server: its file, read again when it changes, and the tokens it issued.
#[derive(Debug, Clone)]
pub(crate) struct Iam {
    inner: Arc<IamInner>,
}

#[derive(Debug)]
struct IamInner {
    /// The IAM file, if the server has one.
    path: Option<PathBuf>,
    config: RwLock<Arc<Config>>,
    /// When the file was changed as last read.
    modified: Mutex<Option<SystemTime>>,
    issued: IssuedTokens,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Iam {
    /// The IAM of the file at `path` (already read into `config`), or of none: then no
    /// credential is known and only the issued tokens' store is used.
    pub(crate) fn new(path: Option<&Path>, config: Config, issued: IssuedTokens) -> Self {
        Self {
            inner: Arc::new(IamInner {
                modified: Mutex::new(path.and_then(modified)),
                path: path.map(Path::to_path_buf),
                config: RwLock::new(Arc::new(config)),
                issued,
            }),
        }
    }

    /// What the IAM file says now.
    pub(crate) fn config(&self) -> Arc<Config> {
        match self.inner.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn issued(&self) -> &IssuedTokens {
        &self.inner.issued
    }

    /// Reads the IAM file again if it changed since it was read; whether it did and read
    /// well. A file that no longer reads is logged and the one before kept.
    pub(crate) fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.inner.path else {
            return false;
        };
        let Ok(mut seen) = self.inner.modified.lock() else {
            return false;
        };
        let now = modified(path);
        if now.is_none() || now == *seen {
            return false;
        }
        *seen = now;
        match Config::load(path) {
            Ok(config) => {
                if let Ok(mut current) = self.inner.config.write() {
                    *current = Arc::new(config);
                }
                tracing::info!(path = %path.display(), "read the changed IAM file");
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the changed IAM file does not read; keeping the one before"
                );
                false
            }
        }
    }

    /// The principal of a call with this `authorization` header value: `Bearer <token>`, or
    /// `Basic` with the token as the password (any user name, `iam` by convention), which is
    /// how `docker login` and skopeo send credentials to a registry. The token is one of the
    /// file's or one this server issued.
    async fn principal(&self, authorization: Option<&str>) -> Result<Principal, Status> {
        let token = bearer_token(authorization)?;
        let config = self.config();
        if let Some(principal) = config.by_token.get(&token) {
            return Ok(principal.clone());
        }
        match self.inner.issued.subject(&token).await {
            Ok(Some(subject)) => Ok(Principal {
                access: config.access_of(&subject),
                subject: subject.to_string(),
            }),
            Ok(None) => Err(unauthenticated("The IAM token is invalid")),
            Err(e) => {
                tracing::error!(error = %e, "reading an IAM token failed");
                Err(Status::new(
                    tonic::Code::Unavailable,
                    "The IAM token could not be checked; try again",
                ))
            }
        }
    }
}

/// The token of an `authorization` header value (see [`Iam::principal`]).
fn bearer_token(authorization: Option<&str>) -> Result<String, Status> {
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
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(credentials.trim().to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(malformed)?;
        let (_user, password) = decoded.split_once(':').ok_or_else(malformed)?;
        Ok(password.to_owned())
    } else {
        Err(malformed())
    }
}

fn unauthenticated(message: &str) -> Status {
    Status::new(tonic::Code::Unauthenticated, message)
}

/// Calls that need no token: endpoint discovery (SDKs ask before they have one), exchanging
/// credentials for a token, health checks and reflection (the schema is public).
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
        || [
            "/healthz",
            "/metrics",
            "/yandex.cloud.iam.v1.IamTokenService/Create",
            "/yandex.cloud.iam.v1.IamTokenService/Revoke",
            "/iam/v1/tokens",
            "/iam/v1/tokens:revoke",
        ]
        .contains(&path)
}

/// Whether `path` is a call of IamTokenService, whose JWT audience is the address the call
/// reached.
pub(crate) fn is_token_exchange(path: &str) -> bool {
    path.starts_with("/yandex.cloud.iam.v1.IamTokenService/") || path.starts_with("/iam/v1/tokens")
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
    match admit(&iam, &mut request).await {
        Ok(()) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// What [`authenticate`] does before the call goes on: the principal of the call's token put
/// on it (nothing for a public path), or the answer that refuses it.
pub(crate) async fn admit(iam: &Iam, request: &mut Request) -> Result<(), Response> {
    if is_public(request.uri().path()) {
        return Ok(());
    }
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    match iam.principal(authorization).await {
        Ok(principal) => {
            tracing::Span::current().record("caller", principal.subject.as_str());
            request.extensions_mut().insert(principal);
            Ok(())
        }
        Err(status) if yc_registry_image::distribution::is_registry_path(request.uri().path()) => {
            Err(yc_registry_image::distribution::unauthorized(status.message).into_response())
        }
        Err(status) => Err(if yc_api_runtime::rest::is_grpc(request.headers()) {
            tonic::Status::from(status).into_http()
        } else {
            ApiError(status).into_response()
        }),
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

    async fn iam(text: &str) -> Iam {
        let config = Config::parse(text, Path::new(".")).expect("parses");
        let db = yc_sql::Db::sqlite_memory().await.unwrap();
        let issued = IssuedTokens::open(db, tokens::DEFAULT_LIFETIME)
            .await
            .unwrap();
        Iam::new(None, config, issued)
    }

    #[tokio::test]
    async fn tokens_find_their_subject_and_its_strongest_role() {
        let iam = iam(FILE).await;
        let alice = iam.principal(Some("Bearer alice-2")).await.expect("known");
        assert_eq!(alice.subject, "ajealice");
        assert!(alice.access.allows("b1gteam", Role::Editor));
        assert!(!alice.access.allows("b1gother", Role::Viewer));
        let bob = iam.principal(Some("bearer bob")).await.expect("known");
        // `iam:bob`, as `docker login --username iam --password bob` sends it.
        let basic = iam
            .principal(Some("Basic aWFtOmJvYg=="))
            .await
            .expect("known");
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
            let error = iam.principal(header).await.expect_err("refused");
            assert_eq!(error.grpc_code(), tonic::Code::Unauthenticated);
            assert!(error.message.contains(message), "{header:?}: {error}");
        }
    }

    #[test]
    fn the_example_file_reads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/iam.example.json");
        let config = Config::load(&example).unwrap();
        assert_eq!(
            config.oauth_subject("y0_bob-oauth-change-me"),
            Some("ajebob00000000000000")
        );
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
                "unknown variant `owner`, expected one of `viewer`, `editor`, `admin`",
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
            let error = format!("{:#}", Config::parse(text, Path::new(".")).expect_err(text));
            assert!(error.contains(wrong), "{text}: {error}");
        }
    }

    /// An issued token acts as its subject with the file's roles for it, on every server of
    /// the database, until it is revoked or expires; a token of another form is not looked up.
    #[tokio::test]
    async fn issued_tokens_act_as_their_subject_until_revoked() {
        let config = || Config::parse(FILE, Path::new(".")).unwrap();
        let db = yc_sql::Db::sqlite_memory().await.unwrap();
        let one = Iam::new(
            None,
            config(),
            IssuedTokens::open(db.clone(), tokens::DEFAULT_LIFETIME)
                .await
                .unwrap(),
        );
        let other = Iam::new(
            None,
            config(),
            IssuedTokens::open(db.clone(), tokens::DEFAULT_LIFETIME)
                .await
                .unwrap(),
        );
        let (token, expires_at) = one.issued().issue("ajebob").await.unwrap();
        assert!(token.starts_with("t1.") && token.len() > 40, "{token}");
        let now = yc_proto_types::google::protobuf::Timestamp::now().seconds;
        assert!((expires_at - now - 12 * 3600).abs() < 5);
        for iam in [&one, &other] {
            let bob = iam
                .principal(Some(&format!("Bearer {token}")))
                .await
                .unwrap();
            assert_eq!(bob.subject, "ajebob");
            assert!(bob.access.allows("b1gteam", Role::Viewer));
            assert!(!bob.access.allows("b1gteam", Role::Editor));
        }
        // Nothing but the hash is stored.
        let stored: String = db
            .fetch_scalar(&yc_sql::query("SELECT token_hash FROM iam_tokens"))
            .await
            .unwrap()
            .unwrap();
        assert!(!stored.contains(&token[3..]));

        assert_eq!(
            other.issued().revoke(&token).await.unwrap().as_deref(),
            Some("ajebob")
        );
        let refused = other
            .principal(Some(&format!("Bearer {token}")))
            .await
            .expect_err("revoked");
        assert_eq!(refused.grpc_code(), tonic::Code::Unauthenticated);
        assert_eq!(other.issued().revoke(&token).await.unwrap(), None);

        // Expired: issued with no lifetime.
        let short = IssuedTokens::open(db.clone(), std::time::Duration::ZERO)
            .await
            .unwrap();
        let (expired, _) = short.issue("ajebob").await.unwrap();
        assert_eq!(short.subject(&expired).await.unwrap(), None);
        assert_eq!(one.issued().subject(&expired).await.unwrap(), None);
    }
}
