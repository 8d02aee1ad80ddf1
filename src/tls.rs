//! TLS configuration with rustls (one crypto provider: ring): PEM loading, server configs with
//! ALPN `h2` and `http/1.1`, TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS set-up problem, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The crypto provider every TLS config of this crate uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (at least one certificate).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_error(path, format!("no usable PEM private key: {e}")))
}

/// A server config for `cert`/`key`, offering `h2` and `http/1.1`. With `client_ca`, clients
/// must present a certificate signed by one of its roots.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| file_error(ca, e))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| file_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| file_error(cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A server certificate that can be replaced while serving: new handshakes get the new one,
/// open connections keep theirs. Reloaded on SIGHUP and when the files change on disk.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
    stamp: std::sync::Mutex<Option<(std::time::SystemTime, std::time::SystemTime)>>,
}

impl ReloadingCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ReloadingCert>, TlsError> {
        let loaded = certified_key(cert, key)?;
        Ok(Arc::new(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: std::sync::RwLock::new(Arc::new(loaded)),
            stamp: std::sync::Mutex::new(mtimes(cert, key)),
        }))
    }

    /// Loads the files again; on failure the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = certified_key(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = mtimes(&self.cert, &self.key);
        Ok(())
    }

    /// Reloads if either file's modification time changed since the last load.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = mtimes(&self.cert, &self.key);
        let changed = *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }

    /// A server config that takes its certificate from here.
    pub fn server_config(
        self: &Arc<Self>,
        client_ca: Option<&Path>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(client_verifier(ca)?),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn mtimes(cert: &Path, key: &Path) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

fn certified_key(cert: &Path, key: &Path) -> Result<rustls::sign::CertifiedKey, TlsError> {
    let certs = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signing = provider().key_provider.load_private_key(key_der).map_err(|e| file_error(key, e))?;
    let ck = rustls::sign::CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| file_error(key, format!("does not match the certificate: {e}")))?;
    Ok(ck)
}

/// Client-certificate verification against the roots in `ca`.
pub fn client_verifier(ca: &Path) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| file_error(ca, e))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| file_error(ca, e))
}
