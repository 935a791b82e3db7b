//! `https`: the `http` example over TLS (rustls), on `$ADDR` (default `127.0.0.1:8443`):
//! HTTP/1.1 and HTTP/2 (by ALPN) on the same port, drained without losing a request.
//!
//! - `GET /` answers `pid <PID>`;
//! - `GET /slow?ms=N` answers the same after N milliseconds.
//!
//! The certificate chain and the key are PEM files named by `$TLS_CERT` and `$TLS_KEY`,
//! read at start-up: to pick up a renewed certificate, replace the files and upgrade
//! (`kill -HUP <pid>`). A missing or unreadable file is one error line and exit 1, and the
//! old process, if any, keeps serving with the certificate it has.
//!
//! ```text
//! TLS_CERT=cert.pem TLS_KEY=key.pem cargo run --example https
//! curl -k https://127.0.0.1:8443/ ; curl -k --http2 https://127.0.0.1:8443/
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use tableflip::http::Server;
use tableflip::http::rustls::ServerConfig;
use tableflip::http::rustls::pki_types::pem::PemObject;
use tableflip::http::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tableflip::{Handle, ShutdownReason};
use tokio::net::TcpListener;

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

#[tableflip::main(drain_timeout = "30s", on_shutdown = announce)]
async fn main(
    #[listener("tcp", env = "ADDR", default = "127.0.0.1:8443", name = "https")]
    listener: TcpListener,
    tf: Handle,
) -> Result<(), Box<dyn std::error::Error>> {
    let tls = tls_config()?;
    let pid = std::process::id();
    let app = Router::new()
        .route("/", get(move || async move { format!("pid {pid}\n") }))
        .route(
            "/slow",
            get(move |Query(q): Query<Slow>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms)).await;
                format!("pid {pid}\n")
            }),
        );
    Server::new().tls(tls).serve(listener, app, &tf).await?;
    Ok(())
}

/// The certificate and key from `$TLS_CERT` and `$TLS_KEY`; HTTP/2 and HTTP/1.1 by ALPN.
fn tls_config() -> Result<Arc<ServerConfig>, Box<dyn std::error::Error>> {
    let path = |var: &str| std::env::var(var).map_err(|_| format!("{var} is not set"));
    let (cert, key) = (path("TLS_CERT")?, path("TLS_KEY")?);
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS_CERT={cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("TLS_KEY={key}: {e}"))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn announce(reason: ShutdownReason) {
    tracing::info!(?reason, "on_shutdown: https is draining");
}
