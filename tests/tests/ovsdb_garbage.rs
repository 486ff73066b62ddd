//! A scripted fake server on 127.0.0.1 feeding the client what a real ovsdb-server never would:
//! truncated JSON, wrong types, oversized messages, silence. Every case ends in an error the
//! caller sees, never a panic or a hang.

use std::time::Duration;

use ovn_vpc_tests::with_fake_server;
use ovsdb::{Client, ConnectOptions, Error, FramingError, Operation};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(10);

/// Reads one request from the client and returns its id.
async fn read_request(sock: &mut TcpStream) -> Value {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed");
        buf.extend_from_slice(&chunk[..n]);
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
        if let Some(Ok(v)) = it.next() {
            return v;
        }
    }
}

/// A server that runs `script` on the first connection; returns the client and connection task.
async fn with_server<F, Fut>(
    opts: ConnectOptions,
    script: F,
) -> (Client, JoinHandle<Result<(), Error>>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (client, conn) = with_fake_server(opts, script).await;
    (client, tokio::spawn(conn))
}

/// `list_dbs` fails with the connection (closed; not a transact, so not "outcome unknown"),
/// and the connection ends with a framing error: returns that, the reason it ended.
async fn request_and_connection_fail(
    client: &Client,
    conn: JoinHandle<Result<(), Error>>,
) -> FramingError {
    let e = within(client.list_dbs()).await.unwrap_err();
    assert!(
        matches!(e, Error::Closed(_)) && e.is_connection_lost(),
        "{e:?}"
    );
    match within(conn).await.unwrap() {
        Err(Error::Framing(f)) => f,
        other => panic!("expected a framing error, got {other:?}"),
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(T, f)
        .await
        .expect("the client hung instead of failing")
}

#[tokio::test]
async fn truncated_json_then_close_fails_the_request_and_the_connection() {
    let (client, conn) = with_server(ConnectOptions::default(), |mut s| async move {
        let req = read_request(&mut s).await;
        let text = format!(r#"{{"id":{},"result":["OVN_Nor"#, req["id"]);
        s.write_all(text.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
    })
    .await;
    let ended = request_and_connection_fail(&client, conn).await;
    assert!(matches!(ended, FramingError::Truncated { .. }), "{ended:?}");
    assert!(client.is_closed());
}

#[tokio::test]
async fn a_result_of_the_wrong_type_is_an_error_for_that_request_only() {
    let (client, _conn) = with_server(ConnectOptions::default(), |mut s| async move {
        for _ in 0..2 {
            let req = read_request(&mut s).await;
            let reply = match req["method"].as_str() {
                Some("list_dbs") => json!({"id": req["id"], "result": "not a list", "error": null}),
                Some("transact") => {
                    json!({"id": req["id"], "result": [{"uuid": 5}], "error": null})
                }
                _ => json!({"id": req["id"], "result": [], "error": null}),
            };
            s.write_all(reply.to_string().as_bytes()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let e = within(client.list_dbs()).await.unwrap_err();
    assert!(
        matches!(e, Error::MalformedReply { ref method, .. } if method == "list_dbs"),
        "{e}"
    );
    let ops = [Operation::Insert {
        table: "T".into(),
        row: Default::default(),
        uuid_name: None,
    }];
    let e = within(client.transact_unchecked("X", &ops))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::MalformedReply { ref method, .. } if method == "transact"),
        "{e}"
    );
    assert!(
        !client.is_closed(),
        "a bad reply shape does not poison the stream"
    );
}

#[tokio::test]
async fn a_message_that_is_not_json_rpc_fails_the_connection_and_every_pending_request() {
    let (client, conn) = with_server(ConnectOptions::default(), |mut s| async move {
        let _ = read_request(&mut s).await;
        let _ = read_request(&mut s).await;
        s.write_all(br#"{"id": 1, "method": 5, "params": []}"#)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let a = client.request("list_dbs", &json!([])).unwrap();
    let b = client.request("echo", &json!([])).unwrap();
    for p in [a, b] {
        assert!(matches!(within(p.result()).await, Err(Error::Closed(_))));
    }
    assert!(matches!(
        within(conn).await.unwrap(),
        Err(Error::Decode(_) | Error::InvalidMessage(_))
    ));
}

#[tokio::test]
async fn an_oversized_message_is_refused_without_buffering_it() {
    let opts = ConnectOptions {
        max_message: 1 << 20,
        ..ConnectOptions::default()
    };
    let (client, conn) = with_server(opts, |mut s| async move {
        let req = read_request(&mut s).await;
        let head = format!(r#"{{"id":{},"result":[""#, req["id"]);
        let _ = s.write_all(head.as_bytes()).await;
        let filler = vec![b'x'; 64 * 1024];
        // 8 MiB of one string: the client must give up after 1 MiB and close.
        for _ in 0..128 {
            if s.write_all(&filler).await.is_err() {
                return;
            }
        }
    })
    .await;
    let ended = request_and_connection_fail(&client, conn).await;
    assert_eq!(ended, FramingError::MessageTooLarge { limit: 1 << 20 });
}

#[tokio::test]
async fn the_servers_echo_is_answered_with_its_params() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (_client, _conn) = with_server(ConnectOptions::default(), |mut s| async move {
        s.write_all(br#"{"id":"echo","method":"echo","params":["hello",1]}"#)
            .await
            .unwrap();
        let reply = read_request(&mut s).await;
        let _ = tx.send(reply);
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let reply = within(rx).await.unwrap();
    assert_eq!(
        reply,
        json!({"id": "echo", "result": ["hello", 1], "error": null})
    );
}

/// Timing logic, on paused tokio time: the probe goes out after one interval of silence and
/// the connection is dropped after one more, to the millisecond, and the test waits for
/// neither (the clock jumps to the next timer whenever every task waits).
#[tokio::test]
async fn a_silent_server_is_probed_and_dropped() {
    const PROBE: Duration = Duration::from_millis(200);
    let opts = ConnectOptions {
        inactivity_probe: Some(PROBE),
        ..ConnectOptions::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Silent from before the connection was made: the probe interval counts from connecting.
    let silent_since = tokio::time::Instant::now();
    let (client, conn) = with_server(opts, |mut s| async move {
        // Reads the probe but never answers anything.
        let probe = read_request(&mut s).await;
        let _ = tx.send((probe, tokio::time::Instant::now()));
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    // Connected on real time (a paused clock could jump past the connect timeout while the
    // handshake is under way); from here on only timers and loopback I/O are waited on.
    tokio::time::pause();
    let (probe, probed_at) = within(rx).await.unwrap();
    assert_eq!(probe["method"], "echo");
    assert!(
        probed_at - silent_since >= PROBE,
        "probed after {:?} of silence",
        probed_at - silent_since
    );
    assert!(matches!(
        within(conn).await.unwrap(),
        Err(Error::Timeout(_))
    ));
    // Both steps are the client's timers, so the drop comes at two intervals of silence
    // exactly (`probed_at` is when the server read the probe, which may lag behind).
    let dropped = tokio::time::Instant::now() - silent_since;
    assert!(
        dropped >= 2 * PROBE && dropped < 3 * PROBE,
        "dropped after {dropped:?} of silence"
    );
    assert!(matches!(
        within(client.list_dbs()).await,
        Err(Error::Closed(_))
    ));
}

#[tokio::test]
async fn random_bytes_from_a_server_never_panic_the_client() {
    // Deterministic pseudo-random garbage, many seeds.
    for seed in 0u64..40 {
        let (client, conn) = with_server(ConnectOptions::default(), move |mut s| async move {
            let _ = read_request(&mut s).await;
            let mut x = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut bytes = Vec::with_capacity(4096);
            for _ in 0..4096 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(b"{}[]\",:\\ ab1-e.\x00\xff"[(x % 18) as usize]);
            }
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        })
        .await;
        let r = within(client.list_dbs()).await;
        assert!(r.is_err(), "seed {seed}: garbage produced a result {r:?}");
        let _ = within(conn).await.unwrap();
    }
}
