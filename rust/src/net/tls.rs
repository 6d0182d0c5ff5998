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

/// Short names of the attribute types RFC 4514 names (section 3); others print as dotted OIDs.
const SHORT_NAMES: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// The subject of a DER certificate as an RFC 4514 string, the form Java's
/// `X500Principal.getName()` and `openssl x509 -nameopt RFC2253` print: the most specific RDN
/// first (`CN=app,O=Acme\, Inc.,C=DE`), attributes of one RDN joined by `+`, special
/// characters escaped, so no value can pass for another attribute. Values that are not
/// strings print as `#` and their DER bytes in hex.
pub fn certificate_subject(der: &[u8]) -> Result<String, String> {
    use std::fmt::Write as _;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("client certificate: cannot parse it: {e}"))?;
    let mut out = String::new();
    for (i, rdn) in cert
        .subject()
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        let attrs: Vec<_> = rdn.iter().collect();
        for (j, attr) in attrs.into_iter().rev().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            match SHORT_NAMES.iter().find(|(o, _)| *o == oid) {
                Some((_, name)) => out.push_str(name),
                None => out.push_str(&oid),
            }
            out.push('=');
            match attr.attr_value().as_any_str() {
                Ok(v) => escape_rfc4514(&v, &mut out),
                Err(_) => {
                    out.push('#');
                    let v = attr.attr_value();
                    let mut raw = Vec::new();
                    raw.push(v.tag().0 as u8);
                    raw.extend_from_slice(&encode_der_length(v.data.len()));
                    raw.extend_from_slice(v.data);
                    for b in raw {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A DER length: short form below 128, else the count of big-endian bytes that follow.
fn encode_der_length(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// Escapes an attribute value per RFC 4514 section 2.4.
fn escape_rfc4514(v: &str, out: &mut String) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if c == '\0' {
            out.push_str("\\00");
        } else {
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_print_as_rfc_4514() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/net/testdata");
        let certs = load_certs(&format!("{dir}/client.pem"), "t").unwrap();
        // Made with -subj '/C=DE/O=Acme, Inc./OU=orders+CN=app #1' -multivalue-rdn; openssl
        // -nameopt RFC2253 prints the same.
        assert_eq!(
            certificate_subject(&certs[0]).unwrap(),
            "OU=orders+CN=app #1,O=Acme\\, Inc.,C=DE"
        );
        let ca = load_certs(&format!("{dir}/client-ca.pem"), "t").unwrap();
        assert_eq!(
            certificate_subject(&ca[0]).unwrap(),
            "CN=rmqfast test client CA"
        );
        assert!(certificate_subject(b"not DER")
            .unwrap_err()
            .contains("cannot parse"));
        let mut s = String::new();
        escape_rfc4514(" #a+b,c;d<e>f\"g\\h ", &mut s);
        assert_eq!(s, "\\ #a\\+b\\,c\\;d\\<e\\>f\\\"g\\\\h\\ ");
        s.clear();
        escape_rfc4514("#1", &mut s);
        assert_eq!(s, "\\#1");
        assert_eq!(encode_der_length(5), [5]);
        assert_eq!(encode_der_length(300), [0x82, 1, 44]);
    }

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
