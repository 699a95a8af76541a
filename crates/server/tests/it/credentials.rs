//! Credentials exchanged for IAM tokens (`IamTokenService`): service-account keys made by
//! `yc-images iam key create` and registered while the server runs, OAuth tokens, and the
//! tokens the server issues, which act as their subject, survive a restart and are refused
//! once revoked; every bad credential is UNAUTHENTICATED with the check that failed.

use std::path::Path;

use crate::support::Server;

const FOLDER: &str = "b1gteam";
const BUILDER: &str = "ajebuilder0000000000";
const USER: &str = "ajeuser0000000000000";
const OAUTH: &str = "y0_user-oauth-token";

fn write_iam(path: &Path) {
    let file = serde_json::json!({
        "subjects": [
            {"id": BUILDER},
            {"id": USER, "oauthTokens": [OAUTH]},
        ],
        "accessBindings": [
            {"folderId": FOLDER, "subjectId": BUILDER, "roleId": "editor"},
            {"folderId": FOLDER, "subjectId": USER, "roleId": "viewer"},
        ],
    });
    std::fs::write(path, file.to_string()).unwrap();
}

fn key_create(iam: &Path, output: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_yc-images"))
        .args(["iam", "key", "create", "--service-account-id", BUILDER])
        .arg("--output")
        .arg(output)
        .arg("--iam")
        .arg(iam)
        .output()
        .unwrap()
}

/// A directory holding the IAM file (and, when asked, a key of [`BUILDER`] made by
/// `yc-images iam key create`), and the servers started on it.
struct Setup {
    dir: tempfile::TempDir,
    iam: std::path::PathBuf,
    key_file: std::path::PathBuf,
}

impl Setup {
    fn new(with_key: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let iam = dir.path().join("iam.json");
        write_iam(&iam);
        let key_file = dir.path().join("key.json");
        if with_key {
            assert!(key_create(&iam, &key_file).status.success());
        }
        Self { dir, iam, key_file }
    }

    /// A server with this IAM file, its data in `data`, and `extra` arguments.
    fn serve(&self, data: &str, extra: &[&str]) -> Server {
        let iam = self.iam.to_string_lossy();
        let mut args = vec!["--iam", &iam];
        args.extend_from_slice(extra);
        Server::start_with(&self.dir.path().join(data), &args)
    }
}

/// POST /iam/v1/tokens with `body`: the status and the JSON answer.
async fn exchange(server: &Server, body: serde_json::Value) -> (u16, serde_json::Value) {
    let answer = reqwest::Client::new()
        .post(format!("{}/iam/v1/tokens", server.url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (
        status,
        serde_json::from_str(&answer.text().await.unwrap()).unwrap(),
    )
}

async fn list_registries(server: &Server, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "{}/container-registry/v1/registries?folderId={FOLDER}",
            server.url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn oauth_tokens_become_iam_tokens_that_outlive_a_restart_until_revoked() {
    let setup = Setup::new(false);
    let server = setup.serve("data", &[]);

    let (status, answer) = exchange(
        &server,
        serde_json::json!({"yandexPassportOauthToken": OAUTH}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["iamToken"].as_str().unwrap().to_owned();
    assert!(token.starts_with("t1."), "{answer}");
    assert!(
        answer["expiresAt"].as_str().unwrap().ends_with('Z'),
        "{answer}"
    );
    assert_eq!(list_registries(&server, &token).await, 200);

    // Bad credentials: UNAUTHENTICATED (401), saying what failed; none is half-taken.
    for (body, says) in [
        (
            serde_json::json!({"yandexPassportOauthToken": "y0_unknown"}),
            "OAuth token is not valid",
        ),
        (serde_json::json!({"jwt": "a.b.c"}), "not base64url"),
        (
            serde_json::json!({"jwt": "only-one-part"}),
            "three base64url parts",
        ),
    ] {
        let (status, answer) = exchange(&server, body.clone()).await;
        assert_eq!(status, 401, "{body}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    // Neither or both of the oneof: a validation error naming it.
    let (status, answer) = exchange(&server, serde_json::json!({})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("identity"),
        "{answer}"
    );
    assert_eq!(list_registries(&server, "t1.not-issued").await, 401);

    // The token is in the store: a server started after `kill -9` takes it.
    server.kill();
    let server = setup.serve("data", &[]);
    assert_eq!(list_registries(&server, &token).await, 200);

    let revoked = reqwest::Client::new()
        .post(format!("{}/iam/v1/tokens:revoke", server.url()))
        .header("content-type", "application/json")
        .body(serde_json::json!({"iamToken": token}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    let revoked: serde_json::Value = serde_json::from_str(&revoked.text().await.unwrap()).unwrap();
    assert_eq!(revoked["subjectId"], USER);
    assert_eq!(list_registries(&server, &token).await, 401);
}

/// `yc-images iam key create` against the IAM file of a running server: the key file is in
/// the real format, and the official Python SDK signs in with it (JWT → IamTokenService.Create
/// through discovery, over TLS) and with an OAuth token. Needs the SDK's Python environment,
/// which `cargo xtask ci` provides.
#[tokio::test]
async fn the_official_python_sdk_signs_in_with_a_key_file_and_an_oauth_token() {
    let Some(python) = crate::support::sdk_python("the Python SDK credentials test") else {
        return;
    };
    let setup = Setup::new(false);
    let server = setup.serve("data", &["--tls"]);
    let (dir, key_file) = (&setup.dir, &setup.key_file);

    // Registered while the server runs.
    let made = key_create(&setup.iam, key_file);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(key_file).unwrap()).unwrap();
    assert_eq!(key["service_account_id"], BUILDER);
    assert_eq!(key["key_algorithm"], "RSA_2048");
    assert!(key["id"].as_str().unwrap().starts_with("aje"));
    let private_key = key["private_key"].as_str().unwrap();
    assert!(private_key.starts_with("PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <"));
    assert!(private_key.contains("-----BEGIN PRIVATE KEY-----"));
    assert!(
        key["public_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(key_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the key file is its owner's only: {mode:o}"
        );
    }

    let ca = dir.path().join("data/tls/ca.pem");
    let args = [
        server.address.as_ref(),
        ca.as_os_str(),
        key_file.as_os_str(),
        BUILDER.as_ref(),
        OAUTH.as_ref(),
        USER.as_ref(),
        FOLDER.as_ref(),
    ];
    crate::support::run_sdk_script(
        python,
        "sdk_credentials.py",
        &args,
        "the official Python SDK signed in with a key file and with an OAuth token",
    )
    .await;
}

/// A key file for a service account the IAM file's subject does not match, or an IAM file
/// that is not one, is refused by the command without writing anything.
#[test]
fn key_create_refuses_what_it_cannot_register() {
    let dir = tempfile::tempdir().unwrap();
    let iam = dir.path().join("iam.json");
    std::fs::write(&iam, "not json").unwrap();
    let key_file = dir.path().join("key.json");
    let refused = key_create(&iam, &key_file);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not JSON"));
    assert!(!key_file.exists());
    assert_eq!(std::fs::read_to_string(&iam).unwrap(), "not json");
}

/// The Rust clients with each kind of credentials, over gRPC and REST, against the server: a
/// key file made by `yc-images iam key create`, an OAuth token, a fixed IAM token, and the
/// metadata service (a loopback stand-in answering as a VM's does). Bad credentials fail the
/// call with UNAUTHENTICATED and the reason.
#[tokio::test]
async fn the_rust_clients_sign_in_with_every_kind_of_credentials() {
    use yc_operations::ApiClient;
    use yc_operations::credentials::{IamToken, MetadataService, OAuthToken, ServiceAccountKey};
    use yc_proto_types::yandex::cloud::containerregistry::v1::{
        ListRegistriesRequest, registry_service_rpc,
    };

    let setup = Setup::new(true);
    let key_file = &setup.key_file;
    let server = setup.serve("data", &[]);

    // A VM's metadata service, answering with a token the server issued for the user.
    let (status, answer) = exchange(
        &server,
        serde_json::json!({"yandexPassportOauthToken": OAUTH}),
    )
    .await;
    assert_eq!(status, 200);
    let vm_token = answer["iamToken"].as_str().unwrap().to_owned();
    let stub = axum::Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/default/token",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let token = vm_token.clone();
            async move {
                if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                    return (axum::http::StatusCode::FORBIDDEN, String::new());
                }
                let body = serde_json::json!({
                    "access_token": token, "expires_in": 3600, "token_type": "Bearer"
                });
                (axum::http::StatusCode::OK, body.to_string())
            }
        }),
    );
    let metadata = crate::support::serve_router(stub).await;
    let metadata = metadata.trim_start_matches("http://").to_owned();

    let request = || ListRegistriesRequest {
        folder_id: FOLDER.into(),
        ..Default::default()
    };
    let grpc = ApiClient::connect_grpc(&server.url()).await.unwrap();
    let rest = ApiClient::rest(&server.url()).unwrap();
    for (transport, api) in [("gRPC", grpc), ("REST", rest)] {
        let with_key = api.clone().with_credentials(
            ServiceAccountKey::from_file(key_file)
                .unwrap()
                .exchanging_at(api.clone()),
        );
        let with_oauth = api
            .clone()
            .with_credentials(OAuthToken::new(OAUTH).exchanging_at(api.clone()));
        let with_metadata = api
            .clone()
            .with_credentials(MetadataService::new(&metadata));
        for (who, client) in [
            ("key", &with_key),
            ("OAuth", &with_oauth),
            ("metadata", &with_metadata),
        ] {
            client
                .call(registry_service_rpc::LIST, request())
                .await
                .unwrap_or_else(|e| panic!("{transport}, {who}: {}", e.message));
        }
        // Later calls reuse the exchanged token and keep working.
        for _ in 0..3 {
            with_key
                .call(registry_service_rpc::LIST, request())
                .await
                .unwrap();
        }

        for (who, client, says) in [
            (
                "unknown OAuth token",
                api.clone()
                    .with_credentials(OAuthToken::new("y0_unknown").exchanging_at(api.clone())),
                "OAuth token is not valid",
            ),
            (
                "key for another audience",
                api.clone().with_credentials(
                    ServiceAccountKey::from_file(key_file)
                        .unwrap()
                        .with_audience("https://iam.api.cloud.yandex.net/iam/v1/tokens")
                        .exchanging_at(api.clone()),
                ),
                "aud",
            ),
            (
                "forged token",
                api.clone().with_credentials(IamToken::new("t1.forged")),
                "invalid",
            ),
            (
                "no metadata service",
                api.clone()
                    .with_credentials(MetadataService::new("127.0.0.1:9")),
                "not reachable",
            ),
        ] {
            let error = client
                .call(registry_service_rpc::LIST, request())
                .await
                .expect_err(who);
            assert!(
                error.message.contains(says),
                "{transport}, {who}: {}",
                error.message
            );
        }
    }
}

/// The CLI signs in with a key file or an OAuth token (exchanged at the server) and takes
/// `--endpoint host:port` as `yc` does; a bad key file fails with the reason.
#[tokio::test]
async fn the_cli_signs_in_with_a_key_file_or_an_oauth_token() {
    let setup = Setup::new(true);
    let (dir, key_file) = (&setup.dir, &setup.key_file);
    let server = setup.serve("data", &[]);
    let cli = |credentials: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_yc-images"))
            .args(["registry", "create", "--folder-id", FOLDER, "--name"])
            .arg(format!(
                "cli-{}",
                credentials.len() + credentials.concat().len() % 97
            ))
            .args(["--endpoint", &server.address])
            .args(credentials)
            .env_remove("YC_IMAGES_TOKEN")
            .env_remove("YC_IAM_TOKEN")
            .env_remove("YC_TOKEN")
            .env_remove("YC_SERVICE_ACCOUNT_KEY_FILE")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let key = key_file.to_string_lossy().into_owned();
    let (ok, said) = cli(&["--sa-key", &key]);
    assert!(ok, "{said}");
    // The user is a viewer: signed in, and refused.
    let (ok, said) = cli(&["--oauth-token", OAUTH]);
    assert!(!ok && said.contains("PERMISSION_DENIED"), "{said}");
    let (ok, said) = cli(&["--oauth-token", "y0_unknown"]);
    assert!(
        !ok && said.contains("UNAUTHENTICATED") && said.contains("OAuth"),
        "{said}"
    );
    let bad_key = dir.path().join("bad.json");
    std::fs::write(&bad_key, "{}").unwrap();
    let (ok, said) = cli(&["--sa-key", &bad_key.to_string_lossy()]);
    assert!(!ok && said.contains("not an authorized key"), "{said}");
    // Nothing listens there: the error says how the endpoint was taken.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_yc-images"))
        .args([
            "registry",
            "list",
            "--folder-id",
            FOLDER,
            "--endpoint",
            "127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(said.contains("taken as http://127.0.0.1:9"), "{said}");
}

/// The Rust clients found as the SDKs find them: `Cloud::at` the server's address with its CA
/// (the same code as `Cloud::new()` for the real cloud), a key file exchanged at the `iam`
/// endpoint discovery gave, a registry created and waited for through the `operation`
/// endpoint, over TLS.
#[tokio::test]
async fn the_rust_clients_find_every_api_by_discovery_over_tls() {
    use yc_operations::cloud::Cloud;
    use yc_operations::credentials::ServiceAccountKey;
    use yc_proto_types::yandex::cloud::containerregistry::v1::{
        CreateRegistryRequest, ListRegistriesRequest,
    };
    use yc_registry_image::client::RegistryClient;

    let setup = Setup::new(true);
    let (dir, key_file) = (&setup.dir, &setup.key_file);
    let server = setup.serve("data", &["--tls"]);
    let ca = std::fs::read(dir.path().join("data/tls/ca.pem")).unwrap();

    let cloud = Cloud::at(&server.address)
        .with_ca_pem(ca.clone())
        .with_service_account_key(ServiceAccountKey::from_file(key_file).unwrap());
    let registries = RegistryClient::new(cloud.client("container-registry").await.unwrap());
    let made = registries
        .create_and_wait(CreateRegistryRequest {
            folder_id: FOLDER.into(),
            name: "found-by-discovery".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(made.name, "found-by-discovery");
    let listed = registries
        .list(&ListRegistriesRequest {
            folder_id: FOLDER.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.registries.len(), 1);
    assert!(cloud.client("no-such-api").await.is_err());

    // Without the CA, the server's certificate is not trusted: a clear UNAVAILABLE.
    let untrusted = Cloud::at(&server.address)
        .client("container-registry")
        .await
        .unwrap_err();
    assert_eq!(untrusted.grpc_code(), tonic::Code::Unavailable);
    assert!(
        untrusted.message.contains("cannot reach https://"),
        "{}",
        untrusted.message
    );

    // The same with an OAuth token; the user is a viewer.
    let as_user = Cloud::at(&server.address)
        .with_ca_pem(ca)
        .with_oauth_token(OAUTH);
    let registries = RegistryClient::new(as_user.client("container-registry").await.unwrap());
    let refused = registries
        .create_and_wait(CreateRegistryRequest {
            folder_id: FOLDER.into(),
            name: "viewer-may-not".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.status().grpc_code(), tonic::Code::PermissionDenied);
}

/// The official Node SDK with an IAM token this server issued (for an OAuth token), the
/// server's CA and its address given to each client, lists and gets images over TLS (see
/// `node_sdk.js`). Needs the SDK, which `cargo xtask ci` installs from npm.
#[tokio::test]
async fn the_official_node_sdk_lists_and_gets_images_with_an_issued_token() {
    let Some(modules) = crate::support::node_sdk("the Node SDK test") else {
        return;
    };
    const IMAGE: &str = "fd8nodeimage00000000";
    let setup = Setup::new(false);
    let dir = &setup.dir;
    let seed = dir.path().join("seed");
    crate::support::seed_compute_image(&seed, IMAGE, FOLDER, "node-base");
    let server = setup.serve("data", &["--seed", &seed.to_string_lossy(), "--tls"]);
    // The token, from the server's own exchange (over TLS, trusting its CA).
    let ca = dir.path().join("data/tls/ca.pem");
    let cloud =
        yc_operations::cloud::Cloud::at(&server.address).with_ca_pem(std::fs::read(&ca).unwrap());
    let iam_api = cloud.client("iam").await.unwrap();
    use yc_proto_types::yandex::cloud::iam::v1::{
        CreateIamTokenRequest, create_iam_token_request::Identity, iam_token_service_rpc,
    };
    let token = iam_api
        .call(
            iam_token_service_rpc::CREATE,
            CreateIamTokenRequest {
                identity: Some(Identity::YandexPassportOauthToken(OAUTH.into())),
            },
        )
        .await
        .unwrap()
        .iam_token;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node_sdk.js");
    let output = tokio::process::Command::new("node")
        .arg(script)
        .args([
            server.address.as_str(),
            &ca.to_string_lossy(),
            &token,
            FOLDER,
            IMAGE,
        ])
        .env("NODE_PATH", modules)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Node SDK failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("the official Node SDK listed and got images"),
        "{stdout}"
    );
}

/// Two servers on one PostgreSQL database: a token issued by one (for a key file's JWT, over
/// gRPC) acts at the other, and revoked through the other stops working at the first within
/// the time a server trusts what it read (10 s).
#[tokio::test]
async fn issued_tokens_hold_on_every_replica() {
    use yc_operations::ApiClient;
    use yc_operations::credentials::{Credentials as _, ServiceAccountKey};

    let Some(pg) = yc_sql::TestPostgres::fresh().await else {
        return;
    };
    let setup = Setup::new(true);
    let key_file = &setup.key_file;
    let shared = ["--database-url", pg.url.as_str()];
    let one = setup.serve("one", &shared);
    let two = setup.serve("two", &shared);

    let at_one = ApiClient::connect_grpc(&one.url()).await.unwrap();
    let key = ServiceAccountKey::from_file(key_file)
        .unwrap()
        .exchanging_at(at_one);
    let token = key.iam_token().await.unwrap();
    assert_eq!(list_registries(&one, &token).await, 200);
    assert_eq!(list_registries(&two, &token).await, 200);

    let revoked = reqwest::Client::new()
        .post(format!("{}/iam/v1/tokens:revoke", two.url()))
        .header("content-type", "application/json")
        .body(serde_json::json!({"iamToken": token}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    assert_eq!(list_registries(&two, &token).await, 401);
    // The first server read the token less than 10 s ago; within 10 s more it reads again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while list_registries(&one, &token).await != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted after 15 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
