//! Remotes as OVS and OVN write them: `tcp:HOST:PORT`, `ssl:HOST:PORT`, `unix:PATH`, and
//! comma-separated lists of them (`tcp:a:6641,tcp:b:6641,tcp:c:6641` for a RAFT cluster).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// The port OVSDB listens on when a remote does not say (IANA-assigned, 6640).
pub const DEFAULT_PORT: u16 = 6640;

/// One place an ovsdb-server can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    /// `tcp:HOST:PORT` (IPv6 hosts in brackets: `tcp:[::1]:6641`).
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// `ssl:HOST:PORT`: TLS over TCP.
    Ssl {
        /// Host name or address (also the name the certificate is checked against).
        host: String,
        /// Port.
        port: u16,
    },
    /// `unix:PATH`.
    Unix(PathBuf),
}

impl Remote {
    /// Parses a list such as `tcp:a:6641,tcp:b:6641`; blanks around commas are ignored.
    pub fn parse_list(s: &str) -> Result<Vec<Remote>, Error> {
        let list: Vec<Remote> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(Error::InvalidRemote {
                remote: s.to_string(),
                message: "no remote given".into(),
            });
        }
        Ok(list)
    }
}

fn host_port(remote: &str, rest: &str) -> Result<(String, u16), Error> {
    let bad = |message: &str| Error::InvalidRemote {
        remote: remote.to_string(),
        message: message.to_string(),
    };
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (host, tail) = after
            .split_once(']')
            .ok_or_else(|| bad("unterminated [ in IPv6 address"))?;
        match tail {
            "" => (host.to_string(), None),
            t => (
                host.to_string(),
                Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| bad("expected :PORT after ]"))?,
                ),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            // A bare IPv6 address without brackets cannot carry a port.
            Some((h, _)) if h.contains(':') => (rest.to_string(), None),
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse().map_err(|_| bad("port is not a number 0-65535"))?,
    };
    Ok((host, port))
}

impl FromStr for Remote {
    type Err = Error;

    fn from_str(s: &str) -> Result<Remote, Error> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| Error::InvalidRemote {
            remote: s.to_string(),
            message: "expected tcp:HOST:PORT, ssl:HOST:PORT or unix:PATH".into(),
        })?;
        match kind {
            "tcp" => host_port(s, rest).map(|(host, port)| Remote::Tcp { host, port }),
            "ssl" => host_port(s, rest).map(|(host, port)| Remote::Ssl { host, port }),
            "unix" if !rest.is_empty() => Ok(Remote::Unix(PathBuf::from(rest))),
            "unix" => Err(Error::InvalidRemote {
                remote: s.to_string(),
                message: "missing socket path".into(),
            }),
            "ptcp" | "pssl" | "punix" => Err(Error::InvalidRemote {
                remote: s.to_string(),
                message:
                    "passive remotes are for servers; a client connects with tcp:, ssl: or unix:"
                        .into(),
            }),
            other => Err(Error::InvalidRemote {
                remote: s.to_string(),
                message: format!("unknown transport {other:?} (expected tcp, ssl or unix)"),
            }),
        }
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hp = |f: &mut fmt::Formatter<'_>, kind: &str, host: &str, port: u16| {
            if host.contains(':') {
                write!(f, "{kind}:[{host}]:{port}")
            } else {
                write!(f, "{kind}:{host}:{port}")
            }
        };
        match self {
            Remote::Tcp { host, port } => hp(f, "tcp", host, *port),
            Remote::Ssl { host, port } => hp(f, "ssl", host, *port),
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_parse_as_ovn_writes_them() {
        assert_eq!(
            "tcp:127.0.0.1:6641".parse::<Remote>().unwrap(),
            Remote::Tcp {
                host: "127.0.0.1".into(),
                port: 6641
            }
        );
        assert_eq!(
            "ssl:[::1]:6642".parse::<Remote>().unwrap(),
            Remote::Ssl {
                host: "::1".into(),
                port: 6642
            }
        );
        assert_eq!(
            "tcp:ovn-nb".parse::<Remote>().unwrap(),
            Remote::Tcp {
                host: "ovn-nb".into(),
                port: DEFAULT_PORT
            }
        );
        assert_eq!(
            "unix:/run/ovn/ovnnb_db.sock".parse::<Remote>().unwrap(),
            Remote::Unix("/run/ovn/ovnnb_db.sock".into())
        );
        let list = Remote::parse_list("tcp:a:1, tcp:b:2,tcp:c:3").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[2].to_string(), "tcp:c:3");
        assert_eq!(
            "ssl:[::1]:6642".parse::<Remote>().unwrap().to_string(),
            "ssl:[::1]:6642"
        );
    }

    #[test]
    fn bad_remotes_say_why() {
        for bad in [
            "",
            "tcp",
            "tcp:",
            "tcp::1",
            "tcp:h:99999",
            "tcp:h:x",
            "udp:h:1",
            "ptcp:6641",
            "unix:",
            "tcp:[::1",
            "tcp:[::1]x",
        ] {
            let e = Remote::parse_list(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidRemote { .. }), "{bad}: {e}");
        }
    }
}
