//! IAM tokens this server issues (`yandex.cloud.iam.v1.IamTokenService`): for a service
//! account's JWT or a user's OAuth token, a random token that acts as that subject until it
//! expires. Tokens are kept in the store, as a SHA-256 of the token and never the token itself,
//! so that they survive a restart and hold on every replica of a shared database; each server
//! remembers the ones it has seen for a few seconds, so that a call costs no query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tonic::{Request, Response, Status};
use yc_proto_types::google::protobuf::Timestamp;
use yc_proto_types::yandex::cloud::iam::v1::create_iam_token_request::Identity;
use yc_proto_types::yandex::cloud::iam::v1::iam_token_service_server::{
    IamTokenService, IamTokenServiceServer,
};
use yc_proto_types::yandex::cloud::iam::v1::{
    CreateIamTokenForServiceAccountRequest, CreateIamTokenRequest, CreateIamTokenResponse,
    RevokeIamTokenRequest, RevokeIamTokenResponse,
};
use yc_sql::{Db, DbError, query};

use super::Iam;
use crate::endpoints::ReachedAt;

const COMPONENT: &str = "iam";
const SCHEMA_VERSION: i64 = 1;

/// How long an issued token is valid by default: 12 hours, as the real service's.
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// How long a server trusts what it read of a token before it reads it again (a token
/// revoked through another replica stops working here within this time).
const RECHECK: Duration = Duration::from_secs(10);

/// The most tokens a server remembers; past it, it starts over.
const MOST_REMEMBERED: usize = 100_000;

/// How often expired tokens are removed from the store, at most.
const PURGE_EVERY_SECS: i64 = 600;

fn schema(db: &Db) -> Vec<String> {
    let yc_sql::ColumnTypes { text, int, .. } = db.dialect().types();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS iam_tokens (
        token_hash {text} PRIMARY KEY,
        subject_id {text} NOT NULL,
        expires_at {int} NOT NULL
    )"
        ),
        "CREATE INDEX IF NOT EXISTS iam_tokens_by_expiry ON iam_tokens (expires_at)".into(),
    ]
}

#[derive(Debug, Clone)]
struct Remembered {
    subject: Arc<str>,
    /// Unix seconds.
    expires_at: i64,
    read_at: Instant,
}

/// The issued tokens, in the store and remembered.
#[derive(Debug, Clone)]
pub(crate) struct IssuedTokens {
    db: Db,
    lifetime: Duration,
    remembered: Arc<Mutex<HashMap<[u8; 32], Remembered>>>,
    purged_at: Arc<AtomicI64>,
}

fn unix_now() -> i64 {
    Timestamp::now().seconds
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl IssuedTokens {
    /// The tokens in `db`, its table created if need be; new tokens live for `lifetime`.
    pub(crate) async fn open(db: Db, lifetime: Duration) -> Result<Self, String> {
        db.migrate(COMPONENT, SCHEMA_VERSION, &schema(&db))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            db,
            lifetime,
            remembered: Arc::default(),
            purged_at: Arc::new(AtomicI64::new(0)),
        })
    }

    /// A new token for `subject` and when it expires (Unix seconds).
    pub(crate) async fn issue(&self, subject: &str) -> Result<(String, i64), String> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| format!("no random bytes for a token: {e}"))?;
        // `t1.` as the cloud's own tokens begin.
        let token = format!(
            "t1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let now = unix_now();
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let expires_at = now.saturating_add(lifetime);
        let hash = token_hash(&token);
        self.db
            .execute(
                &query(
                    "INSERT INTO iam_tokens (token_hash, subject_id, expires_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(hex(&hash))
                .bind(subject)
                .bind(expires_at),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.remember(hash, subject.into(), expires_at);
        if now - self.purged_at.load(Ordering::Relaxed) >= PURGE_EVERY_SECS {
            self.purged_at.store(now, Ordering::Relaxed);
            // Expired tokens are refused whether or not they are still stored.
            if let Err(e) = self
                .db
                .execute(&query("DELETE FROM iam_tokens WHERE expires_at < $1").bind(now))
                .await
            {
                tracing::warn!(error = %e, "removing expired IAM tokens failed");
            }
        }
        Ok((token, expires_at))
    }

    fn remember(&self, hash: [u8; 32], subject: Arc<str>, expires_at: i64) {
        if let Ok(mut remembered) = self.remembered.lock() {
            if remembered.len() >= MOST_REMEMBERED {
                remembered.clear();
            }
            remembered.insert(
                hash,
                Remembered {
                    subject,
                    expires_at,
                    read_at: Instant::now(),
                },
            );
        }
    }

    /// The subject of `token` if this server issued it and it has not expired or been revoked.
    pub(crate) async fn subject(&self, token: &str) -> Result<Option<Arc<str>>, DbError> {
        if !token.starts_with("t1.") {
            return Ok(None);
        }
        let hash = token_hash(token);
        let now = unix_now();
        let known = self
            .remembered
            .lock()
            .ok()
            .and_then(|remembered| remembered.get(&hash).cloned());
        if let Some(known) = known
            && known.read_at.elapsed() < RECHECK
        {
            return Ok((known.expires_at > now).then_some(known.subject));
        }
        let row = self
            .db
            .fetch_optional(
                &query("SELECT subject_id, expires_at FROM iam_tokens WHERE token_hash = $1")
                    .bind(hex(&hash)),
            )
            .await?;
        let Some(row) = row else {
            if let Ok(mut remembered) = self.remembered.lock() {
                remembered.remove(&hash);
            }
            return Ok(None);
        };
        let subject: String = row.get(0)?;
        let expires_at: i64 = row.get(1)?;
        let subject: Arc<str> = subject.into();
        self.remember(hash, subject.clone(), expires_at);
        Ok((expires_at > now).then_some(subject))
    }

    /// Revokes `token`; its subject, if it was a live token.
    pub(crate) async fn revoke(&self, token: &str) -> Result<Option<String>, DbError> {
        let hash = token_hash(token);
        if let Ok(mut remembered) = self.remembered.lock() {
            remembered.remove(&hash);
        }
        let row = self
            .db
            .fetch_optional(
                &query(
                    "DELETE FROM iam_tokens WHERE token_hash = $1 \
                     RETURNING subject_id, expires_at",
                )
                .bind(hex(&hash)),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let subject: String = row.get(0)?;
        let expires_at: i64 = row.get(1)?;
        Ok((expires_at > unix_now()).then_some(subject))
    }
}

/// `IamTokenService` over gRPC and REST.
#[derive(Clone)]
pub(crate) struct IamTokens {
    iam: Iam,
    /// The address the server listens on, for the JWT audience of calls that name none.
    listen: String,
}

impl IamTokens {
    pub(crate) fn new(iam: Iam, listen: String) -> Self {
        Self { iam, listen }
    }

    pub(crate) fn server(self) -> IamTokenServiceServer<Self> {
        IamTokenServiceServer::new(self)
    }

    pub(crate) fn rest(self) -> yc_proto_types::rpc::RestService {
        yc_proto_types::yandex::cloud::iam::v1::iam_token_service_rpc::rest(Arc::new(self))
    }

    async fn issue(&self, subject: &str) -> Result<Response<CreateIamTokenResponse>, Status> {
        let (token, expires_at) = self.iam.issued().issue(subject).await.map_err(|e| {
            tracing::error!(error = %e, "storing an IAM token failed");
            Status::unavailable("The IAM token could not be stored; try again")
        })?;
        Ok(Response::new(CreateIamTokenResponse {
            iam_token: token,
            expires_at: Some(Timestamp {
                seconds: expires_at,
                nanos: 0,
            }),
        }))
    }
}

/// The request checked against the rules its proto states.
fn validate<M: prost::Message + prost::Name + 'static>(request: &M) -> Result<(), Status> {
    yc_proto_types::validate(request).map_err(Status::from)
}

fn unauthenticated(message: impl std::fmt::Display) -> Status {
    Status::unauthenticated(format!("Unable to create the IAM token: {message}"))
}

#[tonic::async_trait]
impl IamTokenService for IamTokens {
    async fn create(
        &self,
        request: Request<CreateIamTokenRequest>,
    ) -> Result<Response<CreateIamTokenResponse>, Status> {
        validate(request.get_ref())?;
        let reached = request
            .extensions()
            .get::<ReachedAt>()
            .map(|r| r.as_str().to_owned());
        let config = self.iam.config();
        let subject = match request.into_inner().identity {
            Some(Identity::YandexPassportOauthToken(token)) => config
                .oauth_subject(&token)
                .map(str::to_owned)
                .ok_or_else(|| unauthenticated("the OAuth token is not valid"))?,
            Some(Identity::Jwt(jwt)) => {
                let audiences = super::jwt::audiences(
                    reached.as_deref().into_iter().chain([self.listen.as_str()]),
                );
                let now = unix_now();
                let verified = super::jwt::verify(&jwt, config.keys(), &audiences, now);
                match verified {
                    Ok(subject) => subject,
                    // A key added to the IAM file since it was read: read it again.
                    Err(_) if self.iam.reload_if_changed() => {
                        super::jwt::verify(&jwt, self.iam.config().keys(), &audiences, now)
                            .map_err(unauthenticated)?
                    }
                    Err(message) => return Err(unauthenticated(message)),
                }
            }
            // Validation requires exactly one.
            None => return Err(Status::internal("a validated request has no identity")),
        };
        self.issue(&subject).await
    }

    async fn create_for_service_account(
        &self,
        request: Request<CreateIamTokenForServiceAccountRequest>,
    ) -> Result<Response<CreateIamTokenResponse>, Status> {
        validate(request.get_ref())?;
        let Some(caller) = request.extensions().get::<yc_api_runtime::Principal>() else {
            return Err(Status::unauthenticated(
                "The call carries no authenticated principal",
            ));
        };
        let service_account = &request.get_ref().service_account_id;
        if caller.subject != *service_account {
            return Err(Status::permission_denied(format!(
                "Permission denied: {} may not create tokens for the service account {}",
                caller.subject, service_account
            )));
        }
        self.issue(service_account).await
    }

    async fn revoke(
        &self,
        request: Request<RevokeIamTokenRequest>,
    ) -> Result<Response<RevokeIamTokenResponse>, Status> {
        validate(request.get_ref())?;
        let token = &request.get_ref().iam_token;
        let revoked = self.iam.issued().revoke(token).await.map_err(|e| {
            tracing::error!(error = %e, "revoking an IAM token failed");
            Status::unavailable("The IAM token could not be revoked; try again")
        })?;
        match revoked {
            Some(subject_id) => Ok(Response::new(RevokeIamTokenResponse { subject_id })),
            None => Err(Status::unauthenticated(
                "The IAM token is not valid: unknown, expired or revoked",
            )),
        }
    }
}
