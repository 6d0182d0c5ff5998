//! Connections, plain TCP or TLS, as boxed read and write halves.
//!
//! As a client (the proxy toward name servers and brokers, `upstream_tls`) through
//! `tls::Tls`. As a server the proxy can terminate TLS toward its clients (`tls_cert_file`,
//! `tls_key_file`): `enforcing` accepts TLS only, `permissive` tells a TLS handshake from plain
//! remoting by its first byte and serves both, as RocketMQ's own servers do.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::tls::{load_certs, Tls};

/// The read half of a connection, plain TCP or TLS.
pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection, plain TCP or TLS.
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A TLS record's first byte: the handshake content type.
const TLS_HANDSHAKE: u8 = 0x16;

fn plain(tcp: TcpStream) -> (BoxRead, BoxWrite) {
    let (r, w) = tcp.into_split();
    (Box::new(r), Box::new(w))
}

fn halves<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(s: S) -> (BoxRead, BoxWrite) {
    let (r, w) = tokio::io::split(s);
    (Box::new(r), Box::new(w))
}

/// Connects to `addr` (TCP_NODELAY), then runs the TLS handshake when `tls` is given; the
/// whole of it within `timeout`. Errors say what failed, for remarks and logs.
pub(crate) async fn connect_split(
    addr: &str,
    timeout: Duration,
    tls: Option<&Tls>,
) -> Result<(BoxRead, BoxWrite), String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            None => Ok(plain(tcp)),
            Some(t) => t
                .connect(addr, tcp)
                .await
                .map(halves)
                .map_err(|e| format!("TLS handshake with {addr}: {e}")),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "connect to {addr} timed out after {} ms",
            timeout.as_millis()
        )),
    }
}

/// TLS toward clients: the server certificate and whether plain clients are served too.
#[derive(Clone)]
pub(crate) struct ServerTls {
    acceptor: TlsAcceptor,
    permissive: bool,
}

impl ServerTls {
    /// Loads the certificate chain and key (PEM); errors name the option at fault.
    pub fn new(cert_file: &str, key_file: &str, permissive: bool) -> Result<ServerTls, String> {
        let certs = load_certs(cert_file, "tls_cert_file")?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| format!("tls_key_file: {key_file:?}: no PEM private key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("tls_key_file: {key_file:?} does not fit the certificate: {e}"))?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            permissive,
        })
    }

    /// Serves an accepted client: the TLS handshake (or, in permissive mode, plain remoting
    /// when the first byte is not a handshake), within `timeout`.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<(BoxRead, BoxWrite), String> {
        let attempt = async {
            if self.permissive {
                let mut first = [0u8; 1];
                let n = tcp
                    .peek(&mut first)
                    .await
                    .map_err(|e| format!("reading the first byte: {e}"))?;
                if n == 1 && first[0] != TLS_HANDSHAKE {
                    return Ok(plain(tcp));
                }
            }
            self.acceptor
                .accept(tcp)
                .await
                .map(halves)
                .map_err(|e| format!("TLS handshake: {e}"))
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| format!("TLS handshake timed out after {} ms", timeout.as_millis()))?
    }
}

/// The halves of an accepted client connection: through `tls` when configured.
pub(crate) async fn accept_split(
    tcp: TcpStream,
    tls: Option<&ServerTls>,
    timeout: Duration,
) -> Result<(BoxRead, BoxWrite), String> {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(plain(tcp)),
        Some(t) => t.accept(tcp, timeout).await,
    }
}
