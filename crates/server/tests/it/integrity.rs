//! Nothing acknowledged is lost or left half-done, tried against the real binary: for a few
//! seconds many clients create, update (different fields), cancel and delete compute images
//! and push and delete registry images without waiting, on the embedded store, on PostgreSQL
//! and on two replicas sharing PostgreSQL, with `kill -9` of a server (or of one replica) at a
//! random moment. Then every operation is awaited and every resource is checked against a
//! model of what each successful call did: nothing missing, nothing stuck.
//!
//! The clients' choices come from a seed, printed at the start (`YC_INTEGRITY_SEED=<n>`
//! repeats them; the timing of a real server is not repeatable).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Server, seed_compute_image, seed_registry, sha256};
use tonic::transport::Channel;
use yc_proto_types::google::protobuf::{FieldMask, Timestamp};
use yc_proto_types::yandex::cloud::compute::v1 as compute;
use yc_proto_types::yandex::cloud::compute::v1::create_image_request::Source;
use yc_proto_types::yandex::cloud::containerregistry::v1 as registry;
use yc_proto_types::yandex::cloud::operation::operation_service_client::OperationServiceClient;
use yc_proto_types::yandex::cloud::operation::{
    CancelOperationRequest, GetOperationRequest, Operation, operation,
};

const FOLDER: &str = "b1gintegrity";
const REGISTRY: &str = "crpintegrity00000000";
const BASE_IMAGE: &str = "fd8integritybase0000";
/// How long the clients run.
const LOAD: Duration = Duration::from_secs(3);
const CLIENTS: u64 = 8;
/// The runner lease of the servers, so that a killed server's operations are taken over soon.
const LEASE: &str = "2";

/// xorshift64*: the clients' choices, from the seed.
struct Choices(u64);

impl Choices {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len() as u64) as usize)
        }
    }
}

fn seed() -> u64 {
    let seed = std::env::var("YC_INTEGRITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("integrity seed: {seed} (YC_INTEGRITY_SEED={seed} repeats the clients' choices)");
    seed
}

/// A call the server answered with an operation, or one whose answer was lost (the server
/// died): then it may or may not have been applied.
#[derive(Debug, Clone)]
enum Call {
    Op(String),
    Maybe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Description,
    Labels,
}

/// What was asked of one compute image.
#[derive(Debug, Default)]
struct ImageLog {
    create: Option<String>,
    updates: Vec<(Field, String, Call)>,
    deletes: Vec<Call>,
}

/// A push the registry answered 201 for.
#[derive(Debug, Clone)]
struct Pushed {
    image_id: String,
    repository: String,
    digest: String,
    manifest: Vec<u8>,
    layer_digest: String,
    layer: Vec<u8>,
}

#[derive(Debug, Default)]
struct Model {
    images: BTreeMap<String, ImageLog>,
    /// Creates whose answer was lost, by name.
    maybe_created: Vec<String>,
    pushes: Vec<Pushed>,
    registry_deletes: HashMap<String, Vec<Call>>,
    cancels: usize,
    refused: usize,
}

impl Model {
    /// What a call that starts an operation did: `None` when the server refused it (nothing
    /// was done).
    fn call(&mut self, answer: Result<tonic::Response<Operation>, tonic::Status>) -> Option<Call> {
        match answer {
            Ok(op) => Some(Call::Op(op.into_inner().id)),
            Err(e) if answered(&e) => {
                self.refused += 1;
                None
            }
            Err(_) => Some(Call::Maybe),
        }
    }
}

/// The servers the clients talk to, as they come and go.
#[derive(Clone, Default)]
struct Servers {
    urls: Arc<Mutex<Vec<String>>>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Servers {
    fn set(&self, urls: Vec<String>) {
        if let Ok(mut now) = self.urls.lock() {
            *now = urls;
        }
    }

    /// One of the servers, chosen by `choices`, with a channel to it.
    fn any(&self, choices: &mut Choices) -> (String, Channel) {
        let urls = self.urls.lock().map(|u| u.clone()).unwrap_or_default();
        let url = choices
            .pick(&urls)
            .cloned()
            .unwrap_or_else(|| panic!("no server"));
        let channel = self
            .channels
            .lock()
            .map(|mut channels| {
                channels
                    .entry(url.clone())
                    .or_insert_with(|| {
                        Channel::from_shared(url.clone())
                            .unwrap()
                            .timeout(Duration::from_secs(20))
                            .connect_lazy()
                    })
                    .clone()
            })
            .unwrap();
        (url, channel)
    }
}

/// Whether a refusal is the server's answer (nothing was done) rather than a lost answer.
fn answered(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::FailedPrecondition
            | tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::AlreadyExists
    )
}

fn mask(field: Field) -> FieldMask {
    FieldMask {
        paths: vec![match field {
            Field::Description => "description".into(),
            Field::Labels => "labels".into(),
        }],
    }
}

/// A qcow2 header of a 1 GiB disk.
fn qcow2() -> Vec<u8> {
    let mut header = vec![0u8; 512];
    header[..4].copy_from_slice(b"QFI\xfb");
    header[4..8].copy_from_slice(&3u32.to_be_bytes());
    header[20..24].copy_from_slice(&16u32.to_be_bytes());
    header[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    header
}

/// Image sources that answer after `/disk/<ms>` milliseconds.
async fn file_server() -> String {
    let router = axum::Router::new().route(
        "/disk/{ms}",
        axum::routing::get(
            |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                qcow2()
            },
        ),
    );
    crate::support::serve_router(router).await
}

/// Layers the pushes share, one of them over a piece of the blob store.
fn layers() -> Vec<Vec<u8>> {
    vec![
        b"a small shared layer".to_vec(),
        (0..(1 << 20) + 777).map(|i| (i % 241) as u8).collect(),
        (0..70_000).map(|i| (i % 13) as u8).collect(),
    ]
}

/// Pushes a blob whole; `None` when the answer was lost.
async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, blob: &[u8]) -> Option<()> {
    let digest = sha256(blob);
    let answer = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(blob.to_vec())
        .send()
        .await
        .ok()?;
    let status = answer.status().as_u16();
    assert!(
        status == 201 || status >= 500,
        "pushing {digest}: {status} {:?}",
        answer.text().await
    );
    (status == 201).then_some(())
}

/// Pushes an image of a fresh config and one of the shared layers; what was acknowledged.
async fn push_image(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    unique: &str,
    layer: &[u8],
) -> Option<Pushed> {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"u":"{unique}"}}}}}}"#
    );
    push_blob(http, base, repo, config.as_bytes()).await?;
    push_blob(http, base, repo, layer).await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let answer = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .ok()?;
    let status = answer.status().as_u16();
    if status >= 500 {
        return None;
    }
    assert_eq!(status, 201, "{:?}", answer.text().await);
    let image_id = answer.headers()["yc-image-id"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    Some(Pushed {
        image_id,
        repository: repo.to_owned(),
        digest: sha256(&manifest),
        manifest,
        layer_digest: sha256(layer),
        layer: layer.to_vec(),
    })
}

/// One client: random calls until `until`, recorded in the model.
async fn client(
    n: u64,
    seed: u64,
    until: Instant,
    servers: Servers,
    files: String,
    model: Arc<Mutex<Model>>,
) {
    let mut choices = Choices::new(seed ^ (n.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let layers = layers();
    let mut count = 0u64;
    while Instant::now() < until {
        count += 1;
        let (url, channel) = servers.any(&mut choices);
        let mut images = compute::image_service_client::ImageServiceClient::new(channel.clone());
        let known: Vec<String> = model
            .lock()
            .map(|m| m.images.keys().cloned().collect())
            .unwrap_or_default();
        match choices.below(100) {
            0..=24 => {
                let name = format!("c{n}-{count}");
                let source = if choices.below(2) == 0 {
                    Source::ImageId(BASE_IMAGE.into())
                } else {
                    Source::Uri(format!("{files}/disk/{}", 50 + choices.below(400)))
                };
                let request = compute::CreateImageRequest {
                    folder_id: FOLDER.into(),
                    name: name.clone(),
                    source: Some(source),
                    ..Default::default()
                };
                let answer = images.create(request).await;
                let mut model = model.lock().unwrap();
                match answer {
                    Ok(op) => {
                        let op = op.into_inner();
                        let id = op
                            .metadata
                            .as_ref()
                            .and_then(|m| m.to_msg::<compute::CreateImageMetadata>().ok())
                            .map(|m| m.image_id)
                            .unwrap_or_default();
                        model.images.entry(id).or_default().create = Some(op.id);
                    }
                    Err(e) if answered(&e) => panic!("create {name}: {e:?}"),
                    Err(_) => model.maybe_created.push(name),
                }
            }
            25..=69 => {
                let Some(id) = choices.pick(&known).cloned() else {
                    continue;
                };
                let field = if choices.below(2) == 0 {
                    Field::Description
                } else {
                    Field::Labels
                };
                let value = format!("v{n}-{count}");
                let request = compute::UpdateImageRequest {
                    image_id: id.clone(),
                    update_mask: Some(mask(field)),
                    description: value.clone(),
                    labels: BTreeMap::from([("v".to_owned(), value.clone())]),
                    ..Default::default()
                };
                let answer = images.update(request).await;
                let mut model = model.lock().unwrap();
                let Some(call) = model.call(answer) else {
                    continue;
                };
                if let Some(log) = model.images.get_mut(&id) {
                    log.updates.push((field, value, call));
                }
            }
            70..=79 => {
                let Some(id) = choices.pick(&known).cloned() else {
                    continue;
                };
                let answer = images
                    .delete(compute::DeleteImageRequest {
                        image_id: id.clone(),
                    })
                    .await;
                let mut model = model.lock().unwrap();
                let Some(call) = model.call(answer) else {
                    continue;
                };
                if let Some(log) = model.images.get_mut(&id) {
                    log.deletes.push(call);
                }
            }
            80..=83 => {
                // Cancel a Create: a running one stops, its image ERROR.
                let op = {
                    let model = model.lock().unwrap();
                    choices
                        .pick(&known)
                        .and_then(|id| model.images.get(id))
                        .and_then(|log| log.create.clone())
                };
                if let Some(op) = op {
                    let _ = OperationServiceClient::new(channel.clone())
                        .cancel(CancelOperationRequest { operation_id: op })
                        .await;
                    if let Ok(mut model) = model.lock() {
                        model.cancels += 1;
                    }
                }
            }
            84..=93 => {
                let repo = format!("{REGISTRY}/app{}", choices.below(3));
                let tag = format!("t{}", choices.below(4));
                let layer = choices.pick(&layers).cloned().unwrap_or_default();
                let unique = format!("{seed}-{n}-{count}");
                let pushed = push_image(&http, &url, &repo, &tag, &unique, &layer).await;
                if let (Some(pushed), Ok(mut model)) = (pushed, model.lock()) {
                    model.pushes.push(pushed);
                }
            }
            _ => {
                let pushed: Vec<String> = model
                    .lock()
                    .map(|m| m.pushes.iter().map(|p| p.image_id.clone()).collect())
                    .unwrap_or_default();
                let Some(id) = choices.pick(&pushed).cloned() else {
                    continue;
                };
                let answer = registry::image_service_client::ImageServiceClient::new(channel)
                    .delete(registry::DeleteImageRequest {
                        image_id: id.clone(),
                    })
                    .await;
                let mut model = model.lock().unwrap();
                let Some(call) = model.call(answer) else {
                    continue;
                };
                model.registry_deletes.entry(id).or_default().push(call);
            }
        }
        tokio::time::sleep(Duration::from_millis(choices.below(15))).await;
    }
}

/// Every operation of the model, finished, by id; fails if one is still running after the
/// servers had time to take over what a killed one left.
async fn finished_operations(model: &Model, channel: Channel) -> HashMap<String, Operation> {
    let mut ids: Vec<String> = Vec::new();
    for log in model.images.values() {
        ids.extend(log.create.iter().cloned());
        for call in log.updates.iter().map(|(_, _, c)| c).chain(&log.deletes) {
            if let Call::Op(id) = call {
                ids.push(id.clone());
            }
        }
    }
    for calls in model.registry_deletes.values() {
        for call in calls {
            if let Call::Op(id) = call {
                ids.push(id.clone());
            }
        }
    }
    let mut operations = OperationServiceClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finished = HashMap::new();
    for id in ids {
        loop {
            let op = operations
                .get(GetOperationRequest {
                    operation_id: id.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("operation {id}: {e:?}"))
                .into_inner();
            if op.done {
                finished.insert(id, op);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "operation {id} is still running: {op:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    finished
}

fn succeeded(ops: &HashMap<String, Operation>, call: &Call) -> bool {
    matches!(call, Call::Op(id) if matches!(ops.get(id).and_then(|o| o.result.as_ref()), Some(operation::Result::Response(_))))
}

fn nanos(t: Option<Timestamp>) -> i128 {
    t.map(|t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
        .unwrap_or_default()
}

/// The values `field` may hold: that of any successful update no other successful update
/// began after, or of any update whose answer was lost; the initial one if none succeeded.
fn allowed_values(log: &ImageLog, field: Field, ops: &HashMap<String, Operation>) -> Vec<String> {
    let mut done = Vec::new();
    let mut allowed = Vec::new();
    for (f, value, call) in &log.updates {
        if *f != field {
            continue;
        }
        match call {
            Call::Maybe => allowed.push(value.clone()),
            Call::Op(id) if succeeded(ops, call) => {
                let op = &ops[id];
                done.push((value.clone(), nanos(op.created_at), nanos(op.modified_at)));
            }
            Call::Op(_) => {}
        }
    }
    for (value, _, finished) in &done {
        let superseded = done.iter().any(|(_, started, _)| started > finished);
        if !superseded {
            allowed.push(value.clone());
        }
    }
    if done.is_empty() {
        allowed.push(String::new());
    }
    allowed
}

/// Waits until no image of the folder is in a transitional status (CREATING, DELETING),
/// listing it again and again; fails with the images still in one after a minute.
async fn settled(images: &mut compute::image_service_client::ImageServiceClient<Channel>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut moving = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = images
                .list(compute::ListImagesRequest {
                    folder_id: FOLDER.into(),
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{e:?}"))
                .into_inner();
            moving.extend(page.images.into_iter().filter(|image| {
                ![
                    compute::image::Status::Ready as i32,
                    compute::image::Status::Error as i32,
                ]
                .contains(&image.status)
            }));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        if moving.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left in a transitional status: {moving:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks every resource against the model, through `server`.
async fn check(model: &Model, server: &str) {
    let channel = Channel::from_shared(server.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ops = finished_operations(model, channel.clone()).await;
    let mut images = compute::image_service_client::ImageServiceClient::new(channel.clone());
    // Nothing in the folder is left in a transitional status, whatever call made it: a
    // Create or Delete whose answer the kill lost is known to no client, and its operation is
    // taken over only once the killed runner's lease has run out.
    settled(&mut images).await;
    let mut checked = (0, 0, 0);
    // The images Get answered and the model allowed, to hold List's answers to.
    let mut held = HashMap::new();
    for (id, log) in &model.images {
        let deleted = log.deletes.iter().any(|c| succeeded(&ops, c));
        let maybe_deleted = log.deletes.iter().any(|c| matches!(c, Call::Maybe));
        let got = images
            .get(compute::GetImageRequest {
                image_id: id.clone(),
            })
            .await;
        let image = match got {
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::NotFound, "{id}: {e:?}");
                assert!(
                    deleted || maybe_deleted,
                    "{id} is gone, but no Delete of it succeeded: {log:?}"
                );
                checked.0 += 1;
                continue;
            }
            Ok(image) => image.into_inner(),
        };
        assert!(
            !deleted,
            "{id} was deleted by a successful operation, yet is there: {log:?}"
        );
        let create = log.create.as_ref().map(|op| &ops[op]);
        let expected = match create.and_then(|op| op.result.as_ref()) {
            Some(operation::Result::Response(_)) => compute::image::Status::Ready,
            _ => compute::image::Status::Error,
        };
        assert_eq!(
            compute::image::Status::try_from(image.status).ok(),
            Some(expected),
            "{id}: {image:?}\n{create:?}"
        );
        for field in [Field::Description, Field::Labels] {
            let held = match field {
                Field::Description => image.description.clone(),
                Field::Labels => image.labels.get("v").cloned().unwrap_or_default(),
            };
            let allowed = allowed_values(log, field, &ops);
            assert!(
                allowed.contains(&held),
                "{id}: {field:?} is {held:?}; a successful update was lost (allowed: {allowed:?})\n{log:?}"
            );
        }
        held.insert(id.clone(), image);
        checked.1 += 1;
    }
    // List (written from the stored bytes, not from the image Get read) answers each image
    // as Get did, and over REST (from the stored JSON) the same pages as over gRPC.
    let http = reqwest::Client::new();
    let mut page_token = String::new();
    let mut listed = 0;
    loop {
        let page = images
            .list(compute::ListImagesRequest {
                folder_id: FOLDER.into(),
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_inner();
        for image in &page.images {
            if let Some(got) = held.get(&image.id) {
                assert_eq!(image, got, "List and Get answer {} differently", image.id);
                listed += 1;
            }
        }
        let rest = http
            // Page tokens are URL-safe base64: nothing to escape.
            .get(format!(
                "{server}/compute/v1/images?folderId={FOLDER}&pageSize=1000&pageToken={page_token}"
            ))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let rest: compute::ListImagesResponse = serde_json::from_slice(&rest).unwrap();
        assert_eq!(rest, page, "REST and gRPC List pages differ");
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(listed, held.len(), "List left out images Get answers");

    // Every acknowledged push pulls back byte for byte, unless a Delete of it succeeded.
    let mut registry_images = registry::image_service_client::ImageServiceClient::new(channel);
    for pushed in &model.pushes {
        let deletes = model.registry_deletes.get(&pushed.image_id);
        let deleted = deletes.is_some_and(|d| d.iter().any(|c| succeeded(&ops, c)));
        let maybe = deletes.is_some_and(|d| d.iter().any(|c| matches!(c, Call::Maybe)));
        let got = registry_images
            .get(registry::GetImageRequest {
                image_id: pushed.image_id.clone(),
            })
            .await;
        let manifest = http
            .get(format!(
                "{server}/v2/{}/manifests/{}",
                pushed.repository, pushed.digest
            ))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        if deleted {
            assert_eq!(got.err().map(|e| e.code()), Some(tonic::Code::NotFound));
            assert_eq!(manifest.status(), 404, "{}", pushed.image_id);
            continue;
        }
        if maybe && got.is_err() {
            continue;
        }
        let image = got
            .unwrap_or_else(|e| panic!("pushed image {} is lost: {e:?}", pushed.image_id))
            .into_inner();
        assert_eq!(image.digest, pushed.digest);
        assert_eq!(manifest.status(), 200, "{}", pushed.image_id);
        let bytes = manifest.bytes().await.unwrap();
        assert!(bytes[..] == pushed.manifest[..], "{}", pushed.image_id);
        let layer = http
            .get(format!(
                "{server}/v2/{}/blobs/{}",
                pushed.repository, pushed.layer_digest
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(layer.status(), 200);
        let bytes = layer.bytes().await.unwrap();
        assert!(
            bytes[..] == pushed.layer[..],
            "layer of {}",
            pushed.image_id
        );
        checked.2 += 1;
    }
    eprintln!(
        "checked: {} compute images gone, {} there, {} registry images pulled; {} operations, \
         {} calls refused, {} cancels, {} creates and the answer lost",
        checked.0,
        checked.1,
        checked.2,
        ops.len(),
        model.refused,
        model.cancels,
        model.maybe_created.len()
    );
    assert!(checked.1 > 0 && checked.2 > 0, "the load did too little");
}

/// How a scenario's servers run.
enum Setup {
    /// One server on the embedded store in `dir`.
    Embedded,
    /// One server on PostgreSQL.
    Postgres(String),
    /// Two servers on one PostgreSQL database.
    Replicas(String),
}

/// Seeds a registry and the base image every server starts with.
fn seed_dir(dir: &std::path::Path) -> String {
    let seed = dir.join("seed");
    seed_registry(&seed, REGISTRY, FOLDER, "integrity");
    seed_compute_image(&seed, BASE_IMAGE, FOLDER, "base");
    seed.to_string_lossy().into_owned()
}

fn start(dir: &std::path::Path, setup: &Setup, seed: &str) -> Server {
    let mut args = vec!["--operation-lease", LEASE, "--seed", seed];
    match setup {
        Setup::Embedded => {}
        Setup::Postgres(url) | Setup::Replicas(url) => args.extend(["--database-url", url]),
    }
    Server::start_with(&dir.join("data"), &args)
}

/// Runs the load against `setup`; with `kill`, one server is killed with SIGKILL at a random
/// moment (and, but for a replica whose twin carries on, started again).
async fn scenario(setup: Setup, kill: bool) {
    let seed = seed();
    let mut choices = Choices::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let seeds = seed_dir(dir.path());
    let mut running = vec![start(dir.path(), &setup, &seeds)];
    if matches!(setup, Setup::Replicas(_)) {
        running.push(start(dir.path(), &setup, &seeds));
    }
    let servers = Servers::default();
    servers.set(running.iter().map(Server::url).collect());
    let files = file_server().await;
    let model = Arc::new(Mutex::new(Model::default()));
    let until = Instant::now() + LOAD;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client(
                n,
                seed,
                until,
                servers.clone(),
                files.clone(),
                model.clone(),
            ))
        })
        .collect();
    if kill {
        let at = Duration::from_millis(500 + choices.below(2000));
        tokio::time::sleep(at).await;
        let victim = running.remove(0);
        eprintln!("kill -9 after {at:?}");
        victim.kill();
        if matches!(setup, Setup::Replicas(_)) {
            servers.set(running.iter().map(Server::url).collect());
        } else {
            running.push(start(dir.path(), &setup, &seeds));
            servers.set(running.iter().map(Server::url).collect());
        }
    }
    for client in clients {
        client
            .await
            .unwrap_or_else(|e| panic!("a client failed: {e}"));
    }
    let model = std::mem::take(&mut *model.lock().unwrap());
    check(&model, &running[0].url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_under_concurrent_load() {
    scenario(Setup::Embedded, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_killed_and_restarted_under_load() {
    scenario(Setup::Embedded, true).await;
}

/// [`scenario`] on a fresh PostgreSQL schema, one server or two.
async fn on_postgres(replicas: bool, kill: bool) {
    let Some(pg) = yc_sql::TestPostgres::fresh().await else {
        return;
    };
    let url = pg.url.clone();
    let setup = if replicas {
        Setup::Replicas(url)
    } else {
        Setup::Postgres(url)
    };
    scenario(setup, kill).await;
    pg.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_killed_and_restarted_under_load() {
    on_postgres(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_under_load() {
    on_postgres(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_two_replicas_killed_under_load() {
    on_postgres(true, true).await;
}

/// The rule of `allowed_values`, on its own.
#[test]
fn a_value_superseded_by_a_later_update_is_not_allowed() {
    let op = |id: &str, start: i64, end: i64| Operation {
        id: id.into(),
        created_at: Some(Timestamp {
            seconds: start,
            nanos: 0,
        }),
        modified_at: Some(Timestamp {
            seconds: end,
            nanos: 0,
        }),
        done: true,
        result: Some(operation::Result::Response(Default::default())),
        ..Default::default()
    };
    let ops: HashMap<String, Operation> = [op("a", 1, 2), op("b", 3, 4), op("c", 3, 5)]
        .into_iter()
        .map(|o| (o.id.clone(), o))
        .collect();
    let log = ImageLog {
        create: None,
        updates: vec![
            (Field::Description, "a".into(), Call::Op("a".into())),
            (Field::Description, "b".into(), Call::Op("b".into())),
            (Field::Description, "c".into(), Call::Op("c".into())),
            (Field::Labels, "m".into(), Call::Maybe),
        ],
        deletes: vec![],
    };
    assert_eq!(
        allowed_values(&log, Field::Description, &ops),
        vec!["b".to_owned(), "c".to_owned()]
    );
    assert_eq!(
        allowed_values(&log, Field::Labels, &ops),
        vec!["m".to_owned(), String::new()]
    );
}
