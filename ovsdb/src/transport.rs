//! Byte streams to a [`Remote`]: TCP, unix sockets and TLS.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::remote::Remote;
use crate::tls::TlsSettings;
use crate::Error;

/// Any bidirectional byte stream the connection can run over.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A boxed [`Transport`].
pub type BoxTransport = Box<dyn Transport>;

/// Opens a stream to `remote`, within `timeout`.
pub(crate) async fn open(
    remote: &Remote,
    tls: Option<&TlsSettings>,
    timeout: Duration,
) -> Result<BoxTransport, Error> {
    let fut = async {
        match remote {
            Remote::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                // Requests are small and latency-bound; do not let Nagle hold them back.
                s.set_nodelay(true)?;
                Ok::<BoxTransport, Error>(Box::new(s))
            }
            Remote::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?) as BoxTransport),
            Remote::Ssl { host, port } => {
                let tls = tls.ok_or_else(|| {
                    Error::Tls(format!(
                        "{remote} needs TLS settings (private key, certificate, CA certificate)"
                    ))
                })?;
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                tls.wrap(host, s).await
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(format!(
            "connecting to {remote} took over {timeout:?}"
        ))),
    }
}

/// Why a remote could not be opened, as one line for a list of remotes tried: the OS error
/// itself (`Connection refused (os error 111)`), without the variant's prefix.
pub(crate) fn cause(e: &Error) -> String {
    match e {
        Error::Io(io) => io.to_string(),
        Error::Timeout(t) => format!("timed out: {t}"),
        other => other.to_string(),
    }
}
