//! TLS: the certificate of `--tls-cert`/`--tls-key`, or with `--tls` one made for this
//! machine, as the acceptor that `conn` runs each connection's handshake through.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The files `--tls` makes in the data directory, kept across restarts so that clients that
/// trust the CA go on trusting the server.
pub(crate) struct LocalCertificate {
    /// The CA certificate clients are given (`root_certificates`, `--ca`).
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// `--tls`: a CA of its own and a certificate it signed for `localhost`, `127.0.0.1` and
/// `::1`, made in `dir` unless they are there already.
pub(crate) fn local_certificate(dir: &Path) -> Result<LocalCertificate> {
    let files = LocalCertificate {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
    };
    if files.ca.exists() && files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "yc-images local CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "yc-images");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    write_private(&files.key, key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, cert.pem())
        .with_context(|| format!("writing {}", files.cert.display()))?;
    std::fs::write(&files.ca, ca_cert.pem())
        .with_context(|| format!("writing {}", files.ca.display()))?;
    Ok(files)
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// The TLS configuration of a certificate chain and its key (PEM files), offering HTTP/2 (for
/// gRPC) and HTTP/1.1 (for REST) by ALPN.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificates in {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and the key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--tls` makes a CA and a certificate for this machine once, and a server configuration
    /// accepts them.
    #[test]
    fn the_local_certificate_is_made_once_and_serves() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let made = local_certificate(dir.path()).expect("made");
        let ca = std::fs::read(&made.ca).expect("CA written");
        let again = local_certificate(dir.path()).expect("found");
        assert_eq!(std::fs::read(&again.ca).expect("CA kept"), ca);
        acceptor(&made.cert, &made.key).expect("the certificate and key serve");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&made.key)
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is its owner's only");
        }
        let error = acceptor(&made.ca, &made.ca).err().map(|e| format!("{e:#}"));
        assert!(
            error.is_some_and(|e| e.contains("private key")),
            "a file without a key is refused"
        );
    }
}
