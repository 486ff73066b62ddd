//! TLS for `ssl:` remotes (placeholder until the rustls transport lands).

use crate::transport::BoxTransport;
use crate::Error;

/// The private key, certificate and CA certificate a TLS connection uses, as OVN configures
/// them (`--private-key`, `--certificate`, `--ca-cert`).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    _private: (),
}

impl TlsSettings {
    pub(crate) async fn wrap(
        &self,
        _host: &str,
        _tcp: tokio::net::TcpStream,
    ) -> Result<BoxTransport, Error> {
        Err(Error::Tls("TLS is not implemented yet".into()))
    }
}
