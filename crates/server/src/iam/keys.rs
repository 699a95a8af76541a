//! Authorized keys of service accounts: `yc-images iam key create` makes one, writes the
//! key file the SDKs read (the format `yc iam key create` writes) and registers its public key
//! in the IAM file, where a running server finds it the first time a JWT names it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use serde::{Deserialize, Serialize};
use yc_proto_types::google::protobuf::Timestamp;

/// The key size `yc iam key create` uses by default (`RSA_2048`).
const BITS: usize = 2048;

/// A new RSA key of [`BITS`] bits from the system's random source.
pub(crate) fn generate_private_key() -> Result<rsa::PrivateKey> {
    rsa::PrivateKey::new(&mut getrandom::SysRng, BITS).context("generating an RSA key")
}

/// An authorized key file, as `yc iam key create` writes it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyFile {
    pub(crate) id: String,
    pub(crate) service_account_id: String,
    pub(crate) created_at: String,
    pub(crate) key_algorithm: String,
    pub(crate) public_key: String,
    pub(crate) private_key: String,
}

/// A new authorized key of `service_account_id`.
pub(crate) fn new_key_file(service_account_id: &str) -> Result<KeyFile> {
    // `aje` and the cloud's id alphabet, as real key ids.
    let id = yc_api_runtime::ids::new_id("aje");
    let private = generate_private_key()?;
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the private key")?;
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    Ok(KeyFile {
        service_account_id: service_account_id.to_owned(),
        created_at: Timestamp::now()
            .to_rfc3339()
            .context("formatting the time")?,
        key_algorithm: "RSA_2048".into(),
        public_key: public_pem,
        // The real files begin with this line; the SDKs sign past it.
        private_key: format!(
            "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID <{id}>\n{}",
            private_pem.as_str()
        ),
        id,
    })
}

/// Writes `key` to `output` (readable by its owner only) and adds its public key to the
/// subject `key.service_account_id` of the IAM file `iam` (the subject is added if the file
/// lacks it). The file is rewritten whole, through a temporary file, so that a server reading
/// it never sees half of it.
pub(crate) fn register(key: &KeyFile, output: &Path, iam: &Path) -> Result<()> {
    let text = std::fs::read_to_string(iam)
        .with_context(|| format!("reading the IAM file {}", iam.display()))?;
    let mut file: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the IAM file {} is not JSON", iam.display()))?;
    let Some(subjects) = file
        .get_mut("subjects")
        .and_then(serde_json::Value::as_array_mut)
    else {
        bail!("the IAM file {} has no subjects list", iam.display());
    };
    let position = subjects
        .iter()
        .position(|s| s.get("id").and_then(|id| id.as_str()) == Some(&key.service_account_id));
    let subject = match position {
        Some(position) => &mut subjects[position],
        None => {
            subjects.push(serde_json::json!({ "id": key.service_account_id }));
            let last = subjects.len() - 1;
            &mut subjects[last]
        }
    };
    let Some(subject) = subject.as_object_mut() else {
        bail!(
            "a subject of the IAM file {} is not an object",
            iam.display()
        );
    };
    let keys = subject
        .entry("keys")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    let Some(keys) = keys.as_array_mut() else {
        bail!(
            "the keys of subject {:?} are not a list",
            key.service_account_id
        );
    };
    keys.push(serde_json::json!({ "id": key.id, "publicKey": key.public_key }));
    // The new file must load before it replaces the old one.
    let updated = serde_json::to_string_pretty(&file)?;
    super::Config::parse(&updated, iam.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("the IAM file {} with the new key", iam.display()))?;

    write_private(output, &serde_json::to_string_pretty(key)?)
        .with_context(|| format!("writing the key file {}", output.display()))?;
    let staging = iam.with_extension("json.new");
    std::fs::write(&staging, updated + "\n")
        .with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, iam).with_context(|| format!("replacing {}", iam.display()))?;
    Ok(())
}

/// Writes a file only its owner may read: it holds a private key.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
