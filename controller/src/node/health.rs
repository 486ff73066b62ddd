//! `/healthz` and `/readyz` of the node shim over plain HTTP/1.x (kubelet's probes, `curl`):
//! a blocking listener on its own thread, one request per connection. Liveness is "the refresh
//! loop has beaten recently" (a loop stuck behind the xtables lock is not alive); readiness is
//! read from iptables and ipset on every request ([`super::Refresh::problems`]).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// What a probe endpoint answers: `Ok(())` is 200, `Err(reasons)` is 503 with the reasons.
pub type Probe = Box<dyn Fn() -> Result<(), Vec<String>> + Send + Sync>;

/// Binds `addr` and serves `/healthz` (`live`) and `/readyz` (`ready`) on a background thread;
/// the returned address is the bound one (port 0 picks a free port).
pub fn serve(addr: SocketAddr, live: Probe, ready: Probe) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("health".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => {
                        if let Err(e) = answer(s, &live, &ready) {
                            tracing::debug!(error = %e, "health probe connection");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "health listener accept"),
                }
            }
        })?;
    Ok(bound)
}

fn answer(stream: TcpStream, live: &Probe, ready: &Probe) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers so the client does not see a reset before it reads the answer.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let (status, body) = match path {
        "/healthz" => verdict(live()),
        "/readyz" => verdict(ready()),
        _ => (
            "404 Not Found",
            "not found: try /healthz or /readyz\n".to_string(),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

fn verdict(r: Result<(), Vec<String>>) -> (&'static str, String) {
    match r {
        Ok(()) => ("200 OK", "ok\n".to_string()),
        Err(reasons) => (
            "503 Service Unavailable",
            reasons.iter().map(|r| format!("{r}\n")).collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn probes_answer_200_or_503_with_reasons() {
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Box::new(|| Ok(())),
            Box::new(|| Err(vec!["ipv4 nat: missing".into()])),
        )
        .unwrap();
        let h = get(addr, "/healthz");
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\n") && h.ends_with("\r\n\r\nok\n"),
            "{h}"
        );
        let r = get(addr, "/readyz?verbose");
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.ends_with("ipv4 nat: missing\n"), "{r}");
        assert!(get(addr, "/").starts_with("HTTP/1.1 404 "));
    }
}
