//! Serving over TLS: the server's certificate and key from PEM files, and a
//! listener that hands `axum::serve` only connections whose handshake is
//! done, so gRPC and the UI keep one code path and one shutdown.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// How long a client may take to finish its handshake. Handshakes run on
/// their own tasks, so a slow one holds up no one else; this only bounds
/// what an idle socket costs.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections through their handshake that `axum::serve` has not taken yet.
const HANDSHAKEN_WAITING: usize = 64;

/// The TLS settings of `keyhole server --tls-cert --tls-key`: the certificate
/// chain and its key, and ALPN `h2` (gRPC needs it) and `http/1.1` (browsers
/// may use either).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = read_pem(&files.cert, "certificate", "CERTIFICATE")?;
    let key = read_pem::<PrivateKeyDer<'static>>(&files.key, "private key", "PRIVATE KEY")?.remove(0);
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "cannot serve TLS with the certificate in {} and the key in {}: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every `T` (a certificate, a key) in the PEM file at `path`: at least one,
/// or an error naming the file.
fn read_pem<T: PemObject>(path: &Path, what: &str, label: &str) -> Result<Vec<T>, String> {
    let contents =
        std::fs::read(path).map_err(|e| format!("cannot read the TLS {what} {}: {e}", path.display()))?;
    let items = T::pem_slice_iter(&contents)
        .collect::<Result<Vec<T>, pem::Error>>()
        .map_err(|e| format!("the TLS {what} file {} is not valid PEM: {e}", path.display()))?;
    if items.is_empty() {
        return Err(format!(
            "the TLS {what} file {} holds no PEM {what} (-----BEGIN {label}-----)",
            path.display()
        ));
    }
    Ok(items)
}

/// A TCP listener whose connections come out of [`axum::serve::Listener::accept`]
/// already through the TLS handshake. Handshakes run on tasks of their own;
/// those that fail are logged at debug level (port scanners, plain-HTTP
/// clients) and dropped.
pub struct TlsListener {
    local_addr: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (sender, handshaken) = mpsc::channel(HANDSHAKEN_WAITING);
        let accepting = tokio::spawn(accept_and_handshake(listener, acceptor, sender));
        Ok(TlsListener {
            local_addr,
            handshaken,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    /// Closes the port when `axum::serve` stops accepting (at shutdown).
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accepting task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

async fn accept_and_handshake(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshaken: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (mut stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                wait_after_accept_error(e).await;
                continue;
            }
        };
        crate::server::no_delay(&mut stream);
        let acceptor = acceptor.clone();
        let handshaken = handshaken.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(connection)) => {
                    let _ = handshaken.send((connection, remote)).await;
                }
                Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

/// As `axum::serve` does for plain TCP: a client that gave up before being
/// accepted is no news; anything else (out of file descriptors) is, and
/// retrying at once would spin.
async fn wait_after_accept_error(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
