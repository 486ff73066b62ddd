//! TLS for `ssl:` remotes: rustls (ring provider) with mutual authentication, set up from the
//! PEM files OVN is configured with (`--private-key`, `--certificate`, `--ca-cert`).
//!
//! The server is trusted when its certificate chains to the configured CA certificate(s) only —
//! never to the system's roots — and, by default, when it names the host that was dialed (a DNS
//! name, or an IP address SAN for `ssl:127.0.0.1:6641`). OVS/OVN themselves check only the chain
//! and `ovs-pki` issues certificates whose only SAN is `DNS:<name>`, so
//! [`TlsSettings::verify_hostname`] can turn the name check off (and only the name check).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::transport::BoxTransport;
use crate::Error;

/// The private key, certificate and CA certificate a TLS connection uses, as OVN configures
/// them (`--private-key`, `--certificate`, `--ca-cert`), and how the server is verified.
///
/// The client always presents its certificate (ovsdb-server started with `--ca-cert` requires
/// one) and trusts a server only when its certificate chains to one of the CA certificates.
///
/// ```no_run
/// # async fn example() -> Result<(), ovsdb::Error> {
/// use ovsdb::{ConnectOptions, TlsSettings};
///
/// let tls = TlsSettings::from_files(
///     "/etc/ovn/ovnnb-privkey.pem",
///     "/etc/ovn/ovnnb-cert.pem",
///     "/etc/ovn/cacert.pem",
/// )?
/// // Certificates from ovs-pki name no IP address: check the chain only, as OVN does.
/// .verify_hostname(false);
/// let opts = ConnectOptions { tls: Some(tls), ..ConnectOptions::default() };
/// let (client, connection) = ovsdb::connect_with("ssl:10.0.0.5:6641", &opts).await?;
/// tokio::spawn(connection);
/// println!("{:?}", client.list_dbs().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsSettings {
    /// Checks the chain and the server's name.
    strict: Arc<ClientConfig>,
    /// Checks the chain only.
    chain_only: Arc<ClientConfig>,
    verify_hostname: bool,
    /// Where the material came from, for `Debug` and error messages (never the key itself).
    origin: Arc<str>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("origin", &self.origin)
            .field("verify_hostname", &self.verify_hostname)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Reads the client's private key, its certificate (chain: the client's certificate first)
    /// and the CA certificate(s) that sign the server's certificate, all PEM — the files given to
    /// OVN daemons as `--private-key`, `--certificate` and `--ca-cert` (`ovn-nbctl -p -c -C`).
    ///
    /// Errors are [`Error::Tls`] naming the file and what is wrong with it: unreadable, no
    /// private key / certificate in it, a certificate that does not parse, a key that does not
    /// match the certificate.
    pub fn from_files(
        private_key: impl AsRef<Path>,
        certificate: impl AsRef<Path>,
        ca_cert: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let (key_path, cert_path, ca_path) =
            (private_key.as_ref(), certificate.as_ref(), ca_cert.as_ref());
        let read = |what: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| Error::Tls(format!("{what} {}: cannot read: {e}", path.display())))
        };
        let key = read("private key", key_path)?;
        let cert = read("certificate", cert_path)?;
        let ca = read("CA certificate", ca_path)?;
        Self::build(
            &Input {
                what: format!("private key {}", key_path.display()),
                pem: &key,
            },
            &Input {
                what: format!("certificate {}", cert_path.display()),
                pem: &cert,
            },
            &Input {
                what: format!("CA certificate {}", ca_path.display()),
                pem: &ca,
            },
        )
    }

    /// Like [`TlsSettings::from_files`], from PEM text in memory (e.g. a Kubernetes Secret).
    pub fn from_pem(private_key: &[u8], certificate: &[u8], ca_cert: &[u8]) -> Result<Self, Error> {
        Self::build(
            &Input {
                what: "private key (PEM)".into(),
                pem: private_key,
            },
            &Input {
                what: "certificate (PEM)".into(),
                pem: certificate,
            },
            &Input {
                what: "CA certificate (PEM)".into(),
                pem: ca_cert,
            },
        )
    }

    /// Whether the server's certificate must name the host of the remote (a `DNS:` SAN for a
    /// host name, an `IP:` SAN for an address). On by default.
    ///
    /// `false` matches what OVS and OVN themselves do: they verify only that the server's
    /// certificate chains to the CA, and `ovs-pki` issues certificates whose only SAN is
    /// `DNS:<common name>`, which no `ssl:IP:PORT` remote matches. With `false` the chain, the
    /// validity dates and the handshake signatures are still verified; only a name mismatch is
    /// forgiven. Prefer certificates with the right SANs and the default where you can.
    pub fn verify_hostname(mut self, verify: bool) -> Self {
        self.verify_hostname = verify;
        self
    }

    /// Whether the server's name is checked (see [`TlsSettings::verify_hostname`]).
    pub fn verifies_hostname(&self) -> bool {
        self.verify_hostname
    }

    fn build(key: &Input<'_>, cert: &Input<'_>, ca: &Input<'_>) -> Result<Self, Error> {
        let key_der = PrivateKeyDer::from_pem_slice(key.pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => key.error(
                "no private key found (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \
                 \"EC PRIVATE KEY\" section)",
            ),
            other => key.error(format!("bad PEM: {other}")),
        })?;
        let chain = certificates(cert)?;
        // Parse the client's own certificate now so that a broken one is reported against its
        // file rather than as a handshake failure later.
        ParsedCertificate::try_from(&chain[0])
            .map_err(|e| cert.error(format!("not a valid X.509 certificate: {e}")))?;

        let mut roots = RootCertStore::empty();
        for (i, der) in certificates(ca)?.into_iter().enumerate() {
            roots
                .add(der)
                .map_err(|e| ca.error(format!("certificate #{} is not a usable CA: {e}", i + 1)))?;
        }
        let roots = Arc::new(roots);

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| ca.error(e.to_string()))?;
        let chain_only = Arc::new(ChainOnlyVerifier {
            webpki: webpki.clone(),
            roots,
            provider: provider.clone(),
        });

        let client_config = |verifier: Option<Arc<dyn ServerCertVerifier>>| {
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Tls(format!("TLS protocol versions: {e}")))?;
            let builder = match verifier {
                None => builder.with_webpki_verifier(webpki.clone()),
                Some(v) => builder.dangerous().with_custom_certificate_verifier(v),
            };
            builder
                .with_client_auth_cert(chain.clone(), key_der.clone_key())
                .map(Arc::new)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => Error::Tls(format!(
                        "{} does not belong to {}: {e}",
                        key.what, cert.what
                    )),
                    other => key.error(format!("unusable: {other}")),
                })
        };
        Ok(TlsSettings {
            strict: client_config(None)?,
            chain_only: client_config(Some(chain_only))?,
            verify_hostname: true,
            origin: format!("{}, {}, {}", key.what, cert.what, ca.what).into(),
        })
    }

    /// Runs the TLS handshake over `tcp` to `host` (the host of the `ssl:` remote).
    pub(crate) async fn wrap(&self, host: &str, tcp: TcpStream) -> Result<BoxTransport, Error> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            Error::Tls(format!(
                "{host:?} is neither an IP address nor a valid DNS name: {e}"
            ))
        })?;
        let config = if self.verify_hostname {
            &self.strict
        } else {
            &self.chain_only
        };
        let stream = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| handshake_error(host, e))?;
        let (_, session) = stream.get_ref();
        tracing::debug!(
            host,
            version = ?session.protocol_version(),
            cipher_suite = ?session.negotiated_cipher_suite().map(|s| s.suite()),
            "TLS handshake done"
        );
        Ok(Box::new(stream))
    }
}

/// A TLS failure (rustls' error inside the `io::Error`) becomes [`Error::Tls`]; anything
/// else (reset, EOF) stays an I/O error.
fn handshake_error(host: &str, e: std::io::Error) -> Error {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return Error::Io(e);
    };
    let hint = match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            " (the server's certificate does not name this host; ovs-pki's never name an IP \
             address: see TlsSettings::verify_hostname)"
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the server's certificate is not signed by the configured CA certificate)"
        }
        rustls::Error::AlertReceived(_) => {
            " (the server refused the handshake; does its --ca-cert sign our certificate?)"
        }
        _ => "",
    };
    Error::Tls(format!("handshake with {host} failed: {tls}{hint}"))
}

/// One of the three PEM inputs and how to name it in errors.
struct Input<'a> {
    what: String,
    pem: &'a [u8],
}

impl Input<'_> {
    fn error(&self, message: impl fmt::Display) -> Error {
        Error::Tls(format!("{}: {message}", self.what))
    }
}

/// Every certificate in `input`, in order; at least one.
fn certificates(input: &Input<'_>) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(input.pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| input.error(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(input.error("no certificate found (expected a PEM \"CERTIFICATE\" section)"));
    }
    Ok(certs)
}

/// Verifies the server's certificate chain against the CA like [`WebPkiServerVerifier`], but
/// forgives a certificate that does not name the dialed host (see
/// [`TlsSettings::verify_hostname`]). Nothing else is forgiven.
#[derive(Debug)]
struct ChainOnlyVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {
                // rustls checks the chain before the name, so the chain is good here; check it
                // again rather than depend on that order.
                let cert = ParsedCertificate::try_from(end_entity)?;
                verify_server_cert_signed_by_trust_anchor(
                    &cert,
                    &self.roots,
                    intermediates,
                    now,
                    self.provider.signature_verification_algorithms.all,
                )?;
                tracing::debug!(
                    ?server_name,
                    "server certificate does not name the host; accepted (verify_hostname off)"
                );
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.webpki.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_message(r: Result<TlsSettings, Error>) -> String {
        match r {
            Err(Error::Tls(m)) => m,
            other => panic!("expected Error::Tls, got {other:?}"),
        }
    }

    /// A PEM section whose body is valid base64 but not the DER it claims to be.
    const JUNK_CERT: &[u8] = b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
    const JUNK_KEY: &[u8] = b"-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n";

    #[test]
    fn a_missing_file_is_named() {
        let dir = std::env::temp_dir().join("ovsdb-tls-test-does-not-exist");
        let m = tls_message(TlsSettings::from_files(
            dir.join("key.pem"),
            dir.join("cert.pem"),
            dir.join("ca.pem"),
        ));
        assert!(m.starts_with("private key "), "{m}");
        assert!(m.contains("key.pem: cannot read"), "{m}");
    }

    #[test]
    fn a_file_without_a_key_or_certificate_says_so() {
        let m = tls_message(TlsSettings::from_pem(b"hello", JUNK_CERT, JUNK_CERT));
        assert!(m.contains("private key (PEM): no private key found"), "{m}");

        // A certificate section where the key should be is not a key either.
        let m = tls_message(TlsSettings::from_pem(JUNK_CERT, JUNK_CERT, JUNK_CERT));
        assert!(m.contains("no private key found"), "{m}");

        let m = tls_message(TlsSettings::from_pem(JUNK_KEY, b"", JUNK_CERT));
        assert!(m.contains("certificate (PEM): no certificate found"), "{m}");

        let m = tls_message(TlsSettings::from_pem(
            JUNK_KEY,
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
            JUNK_CERT,
        ));
        assert!(m.contains("certificate (PEM): bad PEM"), "{m}");
    }

    #[test]
    fn a_certificate_that_does_not_parse_is_reported_against_its_input() {
        let m = tls_message(TlsSettings::from_pem(JUNK_KEY, JUNK_CERT, JUNK_CERT));
        assert!(
            m.starts_with("certificate (PEM): not a valid X.509 certificate"),
            "{m}"
        );
    }
}
