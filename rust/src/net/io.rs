//! Connections, plain TCP or TLS, as boxed read and write halves.
//!
//! As a client (the proxy toward name servers and brokers, `upstream_tls`) through
//! `tls::Tls`. As a server the proxy can terminate TLS toward its clients (`tls_cert_file`,
//! `tls_key_file`): `enforcing` accepts TLS only, `permissive` tells a TLS handshake from plain
//! remoting by its first byte and serves both, as RocketMQ's own servers do. With
//! `tls_client_auth` it asks TLS clients for a certificate, verified against
//! `tls_client_ca_file`, and hands the subject on for the request policy.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::tls::{certificate_subject, load_certs, Tls};

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

/// Client certificates the proxy asks its TLS clients for (mutual TLS).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientCerts<'a> {
    /// PEM file of the CA certificates a client certificate must chain to.
    pub ca_file: &'a str,
    /// Refuse clients without one (else they are served, with no subject).
    pub required: bool,
}

/// An accepted client connection: its halves and, over mutual TLS, the RFC 4514 subject of
/// the certificate it presented (verified against the client CA).
pub(crate) struct Accepted {
    pub halves: (BoxRead, BoxWrite),
    pub subject: Option<Arc<str>>,
}

/// TLS toward clients: the server certificate, whether plain clients are served too, and
/// whether clients must show a certificate.
#[derive(Clone)]
pub(crate) struct ServerTls {
    acceptor: TlsAcceptor,
    permissive: bool,
}

impl ServerTls {
    /// Loads the certificate chain and key (PEM) and, with `client_certs`, the CA
    /// certificates client certificates are verified against; errors name the option at fault.
    pub fn new(
        cert_file: &str,
        key_file: &str,
        permissive: bool,
        client_certs: Option<ClientCerts<'_>>,
    ) -> Result<ServerTls, String> {
        let certs = load_certs(cert_file, "tls_cert_file")?;
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| format!("tls_key_file: {key_file:?}: no PEM private key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let builder = match client_certs {
            None => builder.with_no_client_auth(),
            Some(ClientCerts { ca_file, required }) => {
                let mut roots = RootCertStore::empty();
                for c in load_certs(ca_file, "tls_client_ca_file")? {
                    roots
                        .add(c)
                        .map_err(|e| format!("tls_client_ca_file: {ca_file:?}: {e}"))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if required {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("tls_client_ca_file: {ca_file:?}: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("tls_key_file: {key_file:?} does not fit the certificate: {e}"))?;
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            permissive,
        })
    }

    /// Serves an accepted client: the TLS handshake (or, in permissive mode, plain remoting
    /// when the first byte is not a handshake), within `timeout`.
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> Result<Accepted, String> {
        let attempt = async {
            if self.permissive {
                let mut first = [0u8; 1];
                let n = tcp
                    .peek(&mut first)
                    .await
                    .map_err(|e| format!("reading the first byte: {e}"))?;
                if n == 1 && first[0] != TLS_HANDSHAKE {
                    return Ok(Accepted {
                        halves: plain(tcp),
                        subject: None,
                    });
                }
            }
            let tls = self
                .acceptor
                .accept(tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            // Only a certificate the verifier accepted is here. One whose subject cannot be
            // read is refused rather than served as anonymous: a deny rule by subject must
            // not be escapable.
            let subject = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => Some(Arc::from(certificate_subject(cert)?)),
                None => None,
            };
            Ok(Accepted {
                halves: halves(tls),
                subject,
            })
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| format!("TLS handshake timed out after {} ms", timeout.as_millis()))?
    }
}

/// An accepted client connection: through `tls` when configured.
pub(crate) async fn accept_split(
    tcp: TcpStream,
    tls: Option<&ServerTls>,
    timeout: Duration,
) -> Result<Accepted, String> {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Accepted {
            halves: plain(tcp),
            subject: None,
        }),
        Some(t) => t.accept(tcp, timeout).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::ClientConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

    fn server(required: bool) -> ServerTls {
        let client_ca = format!("{DIR}/net/testdata/client-ca.pem");
        ServerTls::new(
            &format!("{DIR}/producer/testdata/server.pem"),
            &format!("{DIR}/producer/testdata/server.key"),
            false,
            Some(ClientCerts {
                ca_file: &client_ca,
                required,
            }),
        )
        .unwrap()
    }

    /// A TLS client trusting the server's test CA, showing the test client certificate when
    /// `with_cert`.
    fn client(with_cert: bool) -> tokio_rustls::TlsConnector {
        let mut roots = RootCertStore::empty();
        for c in load_certs(&format!("{DIR}/producer/testdata/ca.pem"), "t").unwrap() {
            roots.add(c).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if with_cert {
            let chain: Vec<CertificateDer<'static>> =
                load_certs(&format!("{DIR}/net/testdata/client.pem"), "t").unwrap();
            let key =
                PrivateKeyDer::from_pem_file(format!("{DIR}/net/testdata/client.key")).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        } else {
            b.with_no_client_auth()
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// One connection: the client says "ping" and reads "pong"; the server's view of it.
    async fn handshake(tls: ServerTls, with_cert: bool) -> Result<Option<Arc<str>>, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let Ok(mut s) = client(with_cert).connect(name, tcp).await else {
                return;
            };
            // TLS 1.3: a refused certificate shows up on the first read, not the handshake.
            if s.write_all(b"ping").await.is_ok() {
                let mut buf = [0u8; 4];
                let _ = s.read_exact(&mut buf).await;
            }
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let r = accept_split(tcp, Some(&tls), Duration::from_secs(10)).await;
        let out = match r {
            Ok(Accepted {
                halves: (mut rd, mut wr),
                subject,
            }) => {
                let mut buf = [0u8; 4];
                rd.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                wr.write_all(b"pong").await.map_err(|e| e.to_string())?;
                wr.flush().await.map_err(|e| e.to_string())?;
                Ok(subject)
            }
            Err(e) => Err(e),
        };
        client.await.unwrap();
        out
    }

    #[tokio::test]
    async fn mutual_tls_hands_the_verified_subject_on() {
        let subject = handshake(server(true), true).await.unwrap();
        assert_eq!(
            subject.as_deref(),
            Some("OU=orders+CN=app #1,O=Acme\\, Inc.,C=DE")
        );
        // Required: a client without a certificate never gets a connection.
        let e = handshake(server(true), false).await.unwrap_err();
        assert!(e.contains("TLS handshake"), "{e}");
        // Optional: it is served, with no subject; one with a certificate still has its own.
        assert_eq!(handshake(server(false), false).await.unwrap(), None);
        assert!(handshake(server(false), true).await.unwrap().is_some());
    }

    #[test]
    fn a_client_ca_that_is_no_ca_file_names_the_option() {
        let e = ServerTls::new(
            &format!("{DIR}/producer/testdata/server.pem"),
            &format!("{DIR}/producer/testdata/server.key"),
            false,
            Some(ClientCerts {
                ca_file: &format!("{DIR}/producer/testdata/server.key"),
                required: true,
            }),
        )
        .err()
        .unwrap();
        assert!(e.starts_with("tls_client_ca_file:"), "{e}");
    }
}
