//! The built-in federation TLS listener, and the self-signed certificate it uses when none is
//! configured.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::Router;
use hyper_util::{rt::TokioExecutor, rt::TokioIo, server::conn::auto, service::TowerToHyperService};
use myelin_core::config::Config;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate and key files of the federation listener: the configured ones, or a
/// self-signed pair in the data directory (`federation.crt`, `federation.key`), generated on
/// first use for the server name's host, `localhost`, 127.0.0.1 and ::1, and reused after.
pub fn ensure_certificate(config: &Config) -> Result<(PathBuf, PathBuf), String> {
    if let (Some(cert), Some(key)) = (&config.federation.tls_cert, &config.federation.tls_key) {
        return Ok((cert.clone(), key.clone()));
    }
    let cert_path = config.data_dir.join("federation.crt");
    let key_path = config.data_dir.join("federation.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let host = myelin_core::types::ServerName::parse(&config.server_name)
        .map_err(|e| format!("server_name: {e}"))?
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let mut names = vec![host, "localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    names.dedup();
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot generate a certificate: {e}"))?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, generated.cert.pem()).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed federation certificate");
    Ok((cert_path, key_path))
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents).map_err(|e| format!("{}: {e}", path.display()))
}

/// The TLS configuration of a PEM certificate chain and key.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `router` over TLS on `listener` until `shutdown` completes (connections still open
/// then are dropped with the runtime).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    cert_path: &Path,
    key_path: &Path,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cert_path, key_path)?));
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %err, "federation listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // No Nagle: streamed answers (media) go out in pieces.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "federation TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "federation TLS handshake timed out");
                    return;
                }
            };
            if let Err(err) =
                auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await
            {
                tracing::debug!(%peer, error = %err, "federation connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use myelin_core::config::Config;

    #[test]
    fn a_self_signed_certificate_is_generated_once_and_loads() {
        let dir = std::env::temp_dir().join(format!("myelin-fed-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = Config { data_dir: dir.clone(), server_name: "example.org:8448".into(), ..Config::default() };
        let (cert, key) = super::ensure_certificate(&config).expect("generate");
        let first = std::fs::read(&cert).expect("cert");
        assert!(super::server_config(&cert, &key).is_ok(), "the pair loads");
        let (again, _) = super::ensure_certificate(&config).expect("reuse");
        assert_eq!(std::fs::read(again).expect("cert"), first, "reused on restart");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
