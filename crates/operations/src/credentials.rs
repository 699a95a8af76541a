//! Where a client's calls get their IAM token, as the official SDKs do:
//!
//! - [`IamToken`]: a token you already have;
//! - [`ServiceAccountKey`]: a service account's authorized key file (what `yc iam key create`
//!   writes): a JWT signed with it (PS256) is exchanged through `IamTokenService.Create`;
//! - [`OAuthToken`]: a user's OAuth token, exchanged the same way;
//! - [`MetadataService`]: inside a VM, the token of the VM's service account from the metadata
//!   service (its address configurable);
//! - [`from_env`]: the first of these the environment names, like the CLI and SDKs.
//!
//! Exchanged tokens are kept and refreshed [`REFRESH_BEFORE`] their expiry (or when they are
//! an hour old); callers at the same moment share one refresh.
//!
//! ```no_run
//! use yc_operations::ApiClient;
//! use yc_operations::credentials::ServiceAccountKey;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let api = ApiClient::connect_grpc("http://127.0.0.1:50051").await?;
//! let key = ServiceAccountKey::from_file("key.json")?.exchanging_at(api.clone());
//! let api = api.with_credentials(key);
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey as _;
use serde::Deserialize;
use tokio::time::Instant;
use yc_proto_types::google::rpc::Status;
use yc_proto_types::yandex::cloud::iam::v1::create_iam_token_request::Identity;
use yc_proto_types::yandex::cloud::iam::v1::{CreateIamTokenRequest, iam_token_service_rpc};

use crate::ApiClient;

/// An exchanged token is replaced when it has less than this left.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// An exchanged token is replaced when it is this old, whatever its expiry.
pub const MOST_AGE: Duration = Duration::from_secs(3600);

/// The audience of JWTs for the real cloud.
pub const CLOUD_AUDIENCE: &str = "https://iam.api.cloud.yandex.net/iam/v1/tokens";

/// The audience the SDKs give JWTs exchanged at `endpoint` (`host:port`):
/// `https://iam.<endpoint>/iam/v1/tokens`, without the port when it is 443 (so the cloud's
/// `api.cloud.yandex.net:443` gives [`CLOUD_AUDIENCE`]).
pub fn audience(endpoint: &str) -> String {
    let endpoint = endpoint.strip_suffix(":443").unwrap_or(endpoint);
    format!("https://iam.{endpoint}/iam/v1/tokens")
}

/// The metadata service of a Yandex Cloud VM.
pub const METADATA_ADDRESS: &str = "169.254.169.254";

/// A source of IAM tokens for a client's calls.
#[async_trait]
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// The token to send with a call now.
    async fn iam_token(&self) -> Result<String, Status>;
}

fn unauthenticated(message: impl Into<String>) -> Status {
    Status::new(tonic::Code::Unauthenticated, message)
}

/// A token you already have (`YC_IAM_TOKEN`, `yc iam create-token`).
#[derive(Clone)]
pub struct IamToken(String);

impl IamToken {
    /// `token`, sent as it is.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for IamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IamToken(…)")
    }
}

#[async_trait]
impl Credentials for IamToken {
    async fn iam_token(&self) -> Result<String, Status> {
        Ok(self.0.clone())
    }
}

/// A token and when it must be replaced.
#[derive(Debug, Clone)]
struct Held {
    token: String,
    replace_at: Instant,
}

/// The last exchanged token; one refresh at a time, which every caller waiting shares.
#[derive(Debug, Default)]
struct TokenCache(tokio::sync::Mutex<Option<Held>>);

impl TokenCache {
    async fn get<F, Fut>(&self, fetch: F) -> Result<String, Status>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, SystemTime), Status>>,
    {
        let mut held = self.0.lock().await;
        if let Some(held) = held.as_ref()
            && Instant::now() < held.replace_at
        {
            return Ok(held.token.clone());
        }
        let (token, expires_at) = fetch().await?;
        let left = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let keep = left.saturating_sub(REFRESH_BEFORE).min(MOST_AGE);
        *held = Some(Held {
            token: token.clone(),
            replace_at: Instant::now() + keep,
        });
        Ok(token)
    }
}

/// Where credentials are exchanged: `IamTokenService.Create` through a client (over gRPC or
/// REST), which sends no token of its own.
#[derive(Debug, Clone)]
struct Exchange(Option<ApiClient>);

impl Exchange {
    async fn create(&self, identity: Identity) -> Result<(String, SystemTime), Status> {
        let Some(api) = &self.0 else {
            return Err(unauthenticated(
                "no IAM endpoint to exchange the credentials at: call exchanging_at",
            ));
        };
        let answer = api
            .call(
                iam_token_service_rpc::CREATE,
                CreateIamTokenRequest {
                    identity: Some(identity),
                },
            )
            .await?;
        let expires_at = answer
            .expires_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .unwrap_or_else(|| SystemTime::now() + MOST_AGE);
        Ok((answer.iam_token, expires_at))
    }
}

/// An authorized key file, as `yc iam key create` writes it (the fields the SDKs read).
#[derive(Deserialize)]
struct KeyFile {
    id: String,
    service_account_id: String,
    private_key: String,
}

/// A service account's authorized key: a JWT signed with it, exchanged for IAM tokens.
pub struct ServiceAccountKey {
    key_id: String,
    service_account_id: String,
    key: rsa::PrivateKey,
    audience: Option<String>,
    exchange: Exchange,
    cache: TokenCache,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("key_id", &self.key_id)
            .field("service_account_id", &self.service_account_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// The key file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Status> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            unauthenticated(format!("reading the key file {}: {e}", path.display()))
        })?;
        Self::from_json(&text)
            .map_err(|e| unauthenticated(format!("the key file {}: {}", path.display(), e.message)))
    }

    /// A key file's JSON: `id`, `service_account_id` and `private_key` (PKCS#8 PEM, after the
    /// line real key files begin with).
    pub fn from_json(json: &str) -> Result<Self, Status> {
        let file: KeyFile = serde_json::from_str(json).map_err(|e| {
            unauthenticated(format!(
                "not an authorized key (id, service_account_id, private_key): {e}"
            ))
        })?;
        let pem = file
            .private_key
            .find("-----BEGIN PRIVATE KEY-----")
            .map(|start| &file.private_key[start..])
            .ok_or_else(|| {
                unauthenticated("its private_key has no -----BEGIN PRIVATE KEY----- (PKCS#8)")
            })?;
        let key = rsa::PrivateKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| unauthenticated(format!("its private_key is not an RSA key: {e}")))?;
        Ok(Self {
            key_id: file.id,
            service_account_id: file.service_account_id,
            key,
            audience: None,
            exchange: Exchange(None),
            cache: TokenCache::default(),
        })
    }

    /// Exchanges its JWTs through `api` (which needs no credentials of its own), with the
    /// audience the SDKs give for `api`'s endpoint (`https://iam.<host:port>/iam/v1/tokens`;
    /// [`CLOUD_AUDIENCE`] for the cloud's).
    pub fn exchanging_at(mut self, api: ApiClient) -> Self {
        if self.audience.is_none() {
            self.audience = Some(api.iam_audience());
        }
        self.exchange = Exchange(Some(api));
        self
    }

    /// JWTs for this audience instead.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The service account the key signs for.
    pub fn service_account_id(&self) -> &str {
        &self.service_account_id
    }

    /// A JWT as the SDKs sign it: PS256, `kid`, `iss`, `aud`, `iat` now, `exp` an hour later.
    pub fn jwt(&self, now: SystemTime) -> Result<String, Status> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = serde_json::json!({"alg": "PS256", "kid": self.key_id, "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": self.service_account_id,
            "aud": self.audience.as_deref().unwrap_or(CLOUD_AUDIENCE),
            "iat": iat,
            "exp": iat + 3600,
        });
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .pss_sign::<rsa::sha2::Sha256>(signed.as_bytes())
            .map_err(|e| unauthenticated(format!("signing the JWT failed: {e}")))?;
        Ok(format!("{signed}.{}", b64(&signature)))
    }
}

#[async_trait]
impl Credentials for ServiceAccountKey {
    async fn iam_token(&self) -> Result<String, Status> {
        self.cache
            .get(|| async {
                let jwt = self.jwt(SystemTime::now())?;
                self.exchange.create(Identity::Jwt(jwt)).await
            })
            .await
    }
}

/// A user's OAuth token, exchanged for IAM tokens.
pub struct OAuthToken {
    token: String,
    exchange: Exchange,
    cache: TokenCache,
}

impl std::fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OAuthToken(…)")
    }
}

impl OAuthToken {
    /// `token` (`y0_…`), to be exchanged through [`exchanging_at`](Self::exchanging_at).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            exchange: Exchange(None),
            cache: TokenCache::default(),
        }
    }

    /// Exchanges it through `api`.
    pub fn exchanging_at(mut self, api: ApiClient) -> Self {
        self.exchange = Exchange(Some(api));
        self
    }
}

#[async_trait]
impl Credentials for OAuthToken {
    async fn iam_token(&self) -> Result<String, Status> {
        self.cache
            .get(|| {
                self.exchange
                    .create(Identity::YandexPassportOauthToken(self.token.clone()))
            })
            .await
    }
}

/// The token of a VM's service account, from the metadata service.
#[derive(Debug)]
pub struct MetadataService {
    url: String,
    http: reqwest::Client,
    cache: TokenCache,
}

#[derive(Deserialize)]
struct MetadataToken {
    access_token: String,
    expires_in: u64,
}

impl MetadataService {
    /// The metadata service at `address` (`host[:port]`; [`METADATA_ADDRESS`] in a VM).
    pub fn new(address: &str) -> Self {
        Self {
            url: format!(
                "http://{address}/computeMetadata/v1/instance/service-accounts/default/token"
            ),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            cache: TokenCache::default(),
        }
    }

    async fn fetch(&self) -> Result<(String, SystemTime), Status> {
        let answer = self
            .http
            .get(&self.url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| {
                Status::new(
                    tonic::Code::Unavailable,
                    format!("the metadata service at {} is not reachable: {e}", self.url),
                )
            })?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(|e| {
            Status::new(
                tonic::Code::Unavailable,
                format!("reading {}: {e}", self.url),
            )
        })?;
        if !status.is_success() {
            return Err(unauthenticated(format!(
                "the metadata service answered {status}: is a service account attached to the VM?"
            )));
        }
        let token: MetadataToken = serde_json::from_slice(&body).map_err(|e| {
            unauthenticated(format!("the metadata service's answer is not a token: {e}"))
        })?;
        Ok((
            token.access_token,
            SystemTime::now() + Duration::from_secs(token.expires_in),
        ))
    }
}

#[async_trait]
impl Credentials for MetadataService {
    async fn iam_token(&self) -> Result<String, Status> {
        self.cache.get(|| self.fetch()).await
    }
}

/// The credentials the environment names, as the CLI and SDKs read it, the first of:
/// `YC_IAM_TOKEN` (a token), `YC_SERVICE_ACCOUNT_KEY_FILE` (a key file's path), `YC_TOKEN`
/// (an OAuth token); else, when `YC_METADATA_ADDR` is set or `use_metadata` says so, the
/// metadata service (at `YC_METADATA_ADDR`, else [`METADATA_ADDRESS`]). Exchanges go through
/// `iam`. `None` when the environment names nothing.
pub fn from_env(
    iam: &ApiClient,
    use_metadata: bool,
) -> Result<Option<Arc<dyn Credentials>>, Status> {
    from_vars(|name| std::env::var(name).ok(), iam, use_metadata)
}

/// [`from_env`] with the variables `var` gives.
fn from_vars(
    var: impl Fn(&str) -> Option<String>,
    iam: &ApiClient,
    use_metadata: bool,
) -> Result<Option<Arc<dyn Credentials>>, Status> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let Some(token) = var("YC_IAM_TOKEN") {
        return Ok(Some(Arc::new(IamToken::new(token.trim()))));
    }
    if let Some(path) = var("YC_SERVICE_ACCOUNT_KEY_FILE") {
        let key = ServiceAccountKey::from_file(path.trim())?.exchanging_at(iam.clone());
        return Ok(Some(Arc::new(key)));
    }
    if let Some(token) = var("YC_TOKEN") {
        return Ok(Some(Arc::new(
            OAuthToken::new(token.trim()).exchanging_at(iam.clone()),
        )));
    }
    match var("YC_METADATA_ADDR") {
        Some(address) => Ok(Some(Arc::new(MetadataService::new(address.trim())))),
        None if use_metadata => Ok(Some(Arc::new(MetadataService::new(METADATA_ADDRESS)))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts fetches; each answers a new token valid for `lifetime`.
    async fn fetch(
        count: &AtomicUsize,
        lifetime: Duration,
    ) -> Result<(String, SystemTime), Status> {
        let n = count.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok((format!("t1.token-{n}"), SystemTime::now() + lifetime))
    }

    #[tokio::test(start_paused = true)]
    async fn many_callers_share_one_refresh_and_tokens_are_replaced_before_they_expire() {
        let cache = Arc::new(TokenCache::default());
        let count = Arc::new(AtomicUsize::new(0));
        let lifetime = Duration::from_secs(12 * 3600);
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let (cache, count) = (cache.clone(), count.clone());
                tokio::spawn(async move { cache.get(|| fetch(&count, lifetime)).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap(), "t1.token-0");
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "one refresh for twenty callers"
        );

        // Kept for up to an hour, then replaced.
        tokio::time::advance(MOST_AGE - Duration::from_secs(1)).await;
        assert_eq!(
            cache.get(|| fetch(&count, lifetime)).await.unwrap(),
            "t1.token-0"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache.get(|| fetch(&count, lifetime)).await.unwrap(),
            "t1.token-1"
        );

        // A short-lived token is replaced REFRESH_BEFORE its expiry.
        let short = TokenCache::default();
        let ten_minutes = Duration::from_secs(600);
        assert_eq!(
            short.get(|| fetch(&count, ten_minutes)).await.unwrap(),
            "t1.token-2"
        );
        tokio::time::advance(ten_minutes - REFRESH_BEFORE - Duration::from_secs(5)).await;
        assert_eq!(
            short.get(|| fetch(&count, ten_minutes)).await.unwrap(),
            "t1.token-2"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            short.get(|| fetch(&count, ten_minutes)).await.unwrap(),
            "t1.token-3"
        );

        // A failed refresh is the caller's error, and the next call tries again.
        let failing = TokenCache::default();
        let refused = failing
            .get(|| async { Err(unauthenticated("no")) })
            .await
            .unwrap_err();
        assert_eq!(refused.code, i32::from(tonic::Code::Unauthenticated));
        assert_eq!(
            failing.get(|| fetch(&count, lifetime)).await.unwrap(),
            "t1.token-4"
        );
    }

    #[tokio::test]
    async fn the_environment_chooses_as_the_cli_and_sdks_do() {
        let iam = ApiClient::rest("http://127.0.0.1:9").unwrap();
        let chosen = |vars: &[(&str, &str)], metadata: bool| {
            let vars: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            from_vars(|name| vars.get(name).cloned(), &iam, metadata)
                .map(|c| c.map(|c| format!("{c:?}")))
        };
        let all = [
            ("YC_IAM_TOKEN", "t1.fixed"),
            ("YC_TOKEN", "y0_oauth"),
            ("YC_METADATA_ADDR", "127.0.0.1:1"),
        ];
        assert_eq!(chosen(&all, false).unwrap().unwrap(), "IamToken(…)");
        assert_eq!(chosen(&all[1..], false).unwrap().unwrap(), "OAuthToken(…)");
        assert!(
            chosen(&all[2..], false)
                .unwrap()
                .unwrap()
                .contains("127.0.0.1:1")
        );
        assert!(chosen(&[], false).unwrap().is_none());
        assert!(
            chosen(&[], true)
                .unwrap()
                .unwrap()
                .contains(METADATA_ADDRESS)
        );
        // Blank values count as unset; a key file that is not there is an error, not a skip.
        assert!(chosen(&[("YC_IAM_TOKEN", "  ")], false).unwrap().is_none());
        let missing = chosen(
            &[("YC_SERVICE_ACCOUNT_KEY_FILE", "/no/such/key.json")],
            false,
        );
        assert!(missing.unwrap_err().message.contains("/no/such/key.json"));
    }

    #[test]
    fn audiences_are_the_sdks_for_an_endpoint() {
        assert_eq!(audience("api.cloud.yandex.net:443"), CLOUD_AUDIENCE);
        assert_eq!(
            audience("localhost:8443"),
            "https://iam.localhost:8443/iam/v1/tokens"
        );
    }

    #[test]
    fn key_files_that_cannot_sign_say_why() {
        for (json, says) in [
            ("{}", "not an authorized key"),
            (
                r#"{"id": "k", "service_account_id": "s", "private_key": "no pem"}"#,
                "BEGIN PRIVATE KEY",
            ),
            (
                r#"{"id": "k", "service_account_id": "s", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}"#,
                "not an RSA key",
            ),
        ] {
            let error = ServiceAccountKey::from_json(json).unwrap_err();
            assert!(error.message.contains(says), "{json}: {}", error.message);
        }
    }
}
