//! TLS as a client (the producer's connections, the proxy's upstream connections): rustls on
//! the ring provider, verifying server certificates against Mozilla's roots (webpki-roots) or
//! a given CA file, or, only when asked for, not at all. The PEM loader here also serves the
//! server side (`io::ServerTls`).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How to set up TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the built-in roots.
    pub ca_file: Option<String>,
    /// Accept any server certificate (the handshake signatures are still checked).
    pub insecure_skip_verify: bool,
    /// Name to send as SNI and verify the certificate against, for every address.
    pub server_name: Option<String>,
}

/// A ready TLS client.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    insecure: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// Accepts every certificate; only built when `insecure_skip_verify` is set.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads every certificate of a PEM file.
pub fn load_ca_file(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    load_certs(path, "tls_ca_file")
}

/// Reads every certificate of a PEM file; errors start with `option` (the setting at fault).
pub fn load_certs(path: &str, option: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if !Path::new(path).is_file() {
        return Err(format!("{option}: {path:?} is not a readable file"));
    }
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{option}: cannot read {path:?}: {e}"))?
        .collect();
    let certs = certs.map_err(|e| format!("{option}: {path:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{option}: {path:?} holds no PEM certificate (BEGIN CERTIFICATE)"
        ));
    }
    Ok(certs)
}

impl Tls {
    /// Builds the client configuration; errors name the option at fault.
    pub fn new(opts: &TlsOptions) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?;
        let config = if opts.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            match &opts.ca_file {
                Some(path) => {
                    for cert in load_ca_file(path)? {
                        roots
                            .add(cert)
                            .map_err(|e| format!("tls_ca_file: {path:?}: {e}"))?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let server_name = match &opts.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| format!("tls_server_name: {n:?} is not a DNS name or IP: {e}"))?,
            ),
            None => None,
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            insecure: opts.insecure_skip_verify,
        })
    }

    /// Whether certificate verification is off.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// The name to verify for `addr` ("host:port"): the configured one, else the host part.
    pub fn server_name_for(&self, addr: &str) -> Result<ServerName<'static>, String> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        let host = host_of(addr);
        ServerName::try_from(host.to_owned()).map_err(|e| {
            format!("TLS: {host:?} (from address {addr}) is not a DNS name or IP: {e}; set tls_server_name")
        })
    }

    /// Runs the handshake over a connected socket.
    pub async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, std::io::Error> {
        let name = self
            .server_name_for(addr)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, tcp).await
    }
}

pub use super::addr::host_of;

/// Whether an I/O error from a handshake is the peer's certificate being refused (a
/// configuration problem that retrying will not fix).
pub fn is_certificate_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:10911"), "127.0.0.1");
        assert_eq!(host_of("broker.example:10911"), "broker.example");
        assert_eq!(host_of("[::1]:10911"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn server_names() {
        let tls = Tls::new(&TlsOptions::default()).unwrap();
        assert!(matches!(
            tls.server_name_for("127.0.0.1:1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            tls.server_name_for("[::1]:1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            tls.server_name_for("mq.example.com:1").unwrap(),
            ServerName::DnsName(_)
        ));
        let tls = Tls::new(&TlsOptions {
            server_name: Some("rocketmq.internal".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            tls.server_name_for("127.0.0.1:1").unwrap(),
            ServerName::try_from("rocketmq.internal").unwrap()
        );
        assert!(Tls::new(&TlsOptions {
            server_name: Some("bad name!".into()),
            ..Default::default()
        })
        .unwrap_err()
        .contains("tls_server_name"));
    }

    #[test]
    fn ca_file_errors_name_the_option() {
        let e = Tls::new(&TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.starts_with("tls_ca_file:"), "{e}");
        let dir = std::env::temp_dir().join(format!("rmqfast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = Tls::new(&TlsOptions {
            ca_file: Some(f.to_string_lossy().into_owned()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
