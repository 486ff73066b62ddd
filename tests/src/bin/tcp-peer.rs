//! A tiny TCP witness for the end-to-end tests, run inside a network namespace with `ip netns
//! exec`:
//!
//! - `tcp-peer serve ADDR:PORT LABEL`: listens, prints `listening` once ready, and answers every
//!   connection with `LABEL PEER-ADDRESS` — so the client learns which pod it reached and the
//!   server's view of the source address (after any NAT). Exits by itself after 10 minutes.
//! - `tcp-peer connect ADDR:PORT [TIMEOUT_MS]`: connects, prints what the server sent; exit
//!   status 1 (reason on stderr) when the connection fails or times out.
//! - `tcp-peer http ADDR:PORT FILE`: a stand-in Kubernetes API server for the CNI plugin in
//!   cluster mode: answers every HTTP request with 200 and FILE (a Pod as JSON), printing the
//!   request line on stderr; prints `listening` once ready.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr, label] => serve(addr, label),
        ["connect", addr] => connect(addr, 2000),
        ["http", addr, file] => http(addr, file),
        ["connect", addr, ms] => connect(addr, ms.parse().unwrap_or(2000)),
        _ => Err(
            "usage: tcp-peer serve ADDR:PORT LABEL | connect ADDR:PORT [TIMEOUT_MS] | http ADDR:PORT FILE"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str, label: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    println!("listening");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let end = Instant::now() + LIFETIME;
    while Instant::now() < end {
        match listener.accept() {
            Ok((mut s, peer)) => {
                let _ = s.set_nonblocking(false);
                let _ = writeln!(s, "{label} {}", peer.ip());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
    Ok(())
}

fn connect(addr: &str, timeout_ms: u64) -> Result<(), String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let timeout = Duration::from_millis(timeout_ms);
    let mut s =
        TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    print!("{text}");
    Ok(())
}

fn http(addr: &str, file: &str) -> Result<(), String> {
    let body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    println!("listening");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    for conn in listener.incoming() {
        let mut s = conn.map_err(|e| format!("accept: {e}"))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&req)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        eprintln!("tcp-peer http: {line}");
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s
            .write_all(head.as_bytes())
            .and_then(|()| s.write_all(&body));
    }
    Ok(())
}
