//! Deadlines, probes and floods against a fake peer on 127.0.0.1 that speaks JSON-RPC badly on
//! purpose (issue 12, items 3 and 4): a reply with an id we never used, a server that answers
//! our probe but never the request while flooding echo requests or notifications, one that
//! reads nothing, and one that is silent for many probe intervals while it "works" on our
//! request. Every case ends in time with an error that says what happened, within bounded
//! memory — or, for the busy server, in success.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ovn_vpc_tests::with_fake_server;
use ovsdb::{ConnectOptions, Error, Operation, REPLY_BACKLOG};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Bound on every wait of the tests themselves: a hang is a failure, not a stuck CI job.
const LIMIT: Duration = Duration::from_secs(20);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the client hung instead of failing")
}

/// JSON values as the client sends them, cut from the byte stream.
struct Reader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
}

impl Reader {
    /// The next message; `None` when the client closed.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let n = it.byte_offset();
                    self.buf.drain(..n);
                    return Some(v);
                }
                Some(Err(e)) if !e.is_eof() => panic!("the client sent bad JSON: {e}"),
                _ => {}
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = self.rd.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

type Writer = Arc<Mutex<OwnedWriteHalf>>;

async fn send(w: &Writer, v: &Value) -> bool {
    w.lock()
        .await
        .write_all(v.to_string().as_bytes())
        .await
        .is_ok()
}

/// The answer to our inactivity probe (`echo` with a string id), if `msg` is one.
fn probe_reply(msg: &Value) -> Option<Value> {
    (msg["method"] == "echo" && msg["id"].is_string())
        .then(|| json!({"id": msg["id"], "result": msg["params"], "error": null}))
}

fn split(sock: TcpStream) -> (Reader, Writer) {
    let (rd, wr) = sock.into_split();
    (
        Reader {
            rd,
            buf: Vec::new(),
        },
        Arc::new(Mutex::new(wr)),
    )
}

/// Waits until the peer's count of bytes written stops growing (its writes block because we
/// stopped reading and the socket buffers between us are full); returns the count. Not
/// growing can only be seen over an interval, so this one waits on purpose (300 ms a round).
async fn plateau(written: &AtomicU64, what: &str) -> u64 {
    let started = Instant::now();
    loop {
        let before = written.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = written.load(Ordering::Relaxed);
        if after == before {
            return after;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{what}: {after} bytes and growing"
        );
    }
}

fn comment(text: &str) -> Vec<Operation> {
    vec![Operation::Comment(text.into())]
}

#[tokio::test]
async fn a_reply_with_an_id_we_never_used_fails_the_connection_naming_it() {
    let (client, conn) = with_fake_server(ConnectOptions::default(), |sock| async move {
        let (mut rd, wr) = split(sock);
        let _req = rd.next().await;
        send(&wr, &json!({"id": 999, "result": [], "error": null})).await;
        tokio::time::sleep(LIMIT).await;
    })
    .await;
    let conn = tokio::spawn(conn);
    let started = Instant::now();
    let e = within(client.transact_unchecked("X", &comment("pending")))
        .await
        .unwrap_err();
    // The transact was written, and the connection broke before its reply: unknown outcome.
    assert!(e.is_outcome_unknown(), "{e:?}");
    assert!(e.is_connection_lost(), "{e:?}");
    assert!(
        matches!(&e, Error::OutcomeUnknown { cause, .. } if matches!(**cause, Error::Closed(_))),
        "{e:?}"
    );
    // Why it broke is the connection's own error; the id is named for whoever reads the log.
    let ended = within(conn).await.unwrap().unwrap_err();
    assert!(
        matches!(ended, Error::Protocol(ref m) if m.contains("id 999")),
        "{ended}"
    );
    // At once, not at the request deadline (30 s by default).
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(client.is_closed());
}

/// On real time, as the other flood tests: the flood keeps a task ready at every instant, so a
/// paused clock would never move on to the deadline.
#[tokio::test]
async fn an_echo_flood_that_answers_the_probe_but_never_the_request_meets_the_deadline() {
    let flood = Arc::new(AtomicU64::new(0));
    let opts = ConnectOptions {
        request_timeout: Some(Duration::from_secs(1)),
        inactivity_probe: Some(Duration::from_millis(100)),
        ..ConnectOptions::default()
    };
    let sent = flood.clone();
    let (client, conn) = with_fake_server(opts, move |sock| async move {
        let (mut rd, wr) = split(sock);
        let w = wr.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let echo = json!({"id": format!("flood-{i}"), "method": "echo", "params": []});
                if !send(&w, &echo).await {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        // Reads everything (our echo replies too), answers only the probe.
        while let Some(msg) = rd.next().await {
            if let Some(reply) = probe_reply(&msg) {
                send(&wr, &reply).await;
            }
        }
    })
    .await;
    let stats_client = client.clone();
    tokio::spawn(conn);
    let started = Instant::now();
    let e = within(client.list_dbs()).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(e, Error::Deadline { ref method, .. } if method == "list_dbs"),
        "{e}"
    );
    assert!(e.is_deadline() && !e.is_connection_lost() && !e.is_outcome_unknown());
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let answered = stats_client.stats().server_requests.load(Ordering::Relaxed);
    assert!(
        answered > 100 && flood.load(Ordering::Relaxed) > 100,
        "no flood: {answered} echo requests answered"
    );
    // A transact in the same situation: written, unanswered, outcome unknown — and the
    // connection is still there.
    let e = within(client.transact_unchecked("X", &comment("t")))
        .await
        .unwrap_err();
    assert!(e.is_outcome_unknown() && e.is_deadline(), "{e}");
    assert!(!client.is_closed());
    eprintln!("{answered} echo requests answered while waiting {took:?}");
}

#[tokio::test]
async fn a_notification_flood_is_held_to_the_budget_and_the_deadline_still_fires() {
    const BUDGET: usize = 1 << 20;
    let written = Arc::new(AtomicU64::new(0));
    let opts = ConnectOptions {
        request_timeout: Some(Duration::from_secs(1)),
        inactivity_probe: Some(Duration::from_millis(100)),
        notification_budget: BUDGET,
        ..ConnectOptions::default()
    };
    let w_count = written.clone();
    let (client, mut conn) = with_fake_server(opts, move |sock| async move {
        let (mut rd, wr) = split(sock);
        let w = wr.clone();
        tokio::spawn(async move {
            let body = "n".repeat(10_000);
            let note =
                json!({"id": null, "method": "update2", "params": ["m", {"T": {"x": body}}]});
            let bytes = note.to_string().len() as u64;
            while send(&w, &note).await {
                w_count.fetch_add(bytes, Ordering::Relaxed);
            }
        });
        while let Some(msg) = rd.next().await {
            if let Some(reply) = probe_reply(&msg) {
                send(&wr, &reply).await;
            }
        }
    })
    .await;
    // Taken, and not read (yet): the consumer is slow.
    let mut notes = conn.take_notifications().unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let e = within(client.list_dbs()).await.unwrap_err();
    assert!(e.is_deadline(), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let queued = client
        .stats()
        .queued_notification_bytes
        .load(Ordering::Relaxed);
    assert!(
        queued > 0 && queued <= BUDGET as u64,
        "{queued} bytes queued, budget {BUDGET}"
    );
    // Backpressure, not buffering: the peer's writes block (socket buffers full).
    let before = plateau(&written, "the client kept reading past its budget").await;
    let queued = client
        .stats()
        .queued_notification_bytes
        .load(Ordering::Relaxed);
    assert!(queued <= BUDGET as u64, "{queued} bytes queued");
    // Once the consumer reads, the flow resumes.
    let mut read = 0;
    while read < 500 {
        within(notes.recv()).await.expect("notification");
        read += 1;
    }
    assert!(written.load(Ordering::Relaxed) > before);
    eprintln!("{queued} bytes queued at most; the peer had written {before} bytes when it blocked");
}

#[tokio::test]
async fn an_echo_flood_that_never_reads_our_replies_stops_our_reading_at_the_backlog_bound() {
    let written = Arc::new(AtomicU64::new(0));
    let opts = ConnectOptions {
        request_timeout: Some(Duration::from_secs(1)),
        ..ConnectOptions::default()
    };
    let w_count = written.clone();
    let (client, conn) = with_fake_server(opts, move |sock| async move {
        // Never reads: our replies pile up.
        let (_rd, mut wr) = sock.into_split();
        let echo = json!({"id": "x", "method": "echo", "params": ["some padding to be echoed"]})
            .to_string();
        while wr.write_all(echo.as_bytes()).await.is_ok() {
            w_count.fetch_add(echo.len() as u64, Ordering::Relaxed);
        }
    })
    .await;
    tokio::spawn(conn);
    let e = within(client.list_dbs()).await.unwrap_err();
    assert!(e.is_deadline(), "{e}");
    // The socket buffers fill first (megabytes on loopback), then our backlog to its bound.
    let started = Instant::now();
    let backlog = || client.stats().unsent_reply_bytes.load(Ordering::Relaxed);
    while backlog() < REPLY_BACKLOG as u64 {
        assert!(
            started.elapsed() < LIMIT,
            "backlog never filled: {}",
            backlog()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backlog = backlog();
    assert!(
        backlog <= REPLY_BACKLOG as u64 + 1024,
        "unsent replies: {backlog} bytes"
    );
    let before = plateau(
        &written,
        "the client kept reading while its replies could not be sent",
    )
    .await;
    let backlog = client.stats().unsent_reply_bytes.load(Ordering::Relaxed);
    assert!(
        backlog <= REPLY_BACKLOG as u64 + 1024,
        "unsent replies: {backlog} bytes"
    );
    eprintln!("{backlog} bytes of replies waiting; the peer blocked after {before} bytes");
}

/// On paused tokio time: the deadline passes without the test waiting for it, since every
/// task then waits (the clock jumps to the next timer).
#[tokio::test]
async fn a_transact_never_written_is_not_outcome_unknown_one_partly_written_is() {
    let opts = ConnectOptions {
        request_timeout: Some(Duration::from_secs(1)),
        ..ConnectOptions::default()
    };
    let (client, conn) = with_fake_server(opts, |sock| async move {
        // Accepts, reads nothing, says nothing.
        tokio::time::sleep(LIMIT).await;
        drop(sock);
    })
    .await;
    // Connected on real time (a paused clock could pass the connect timeout during the
    // handshake); nothing is answered from here on, so nothing can arrive late.
    tokio::time::pause();
    tokio::spawn(conn);
    // 64 MB do not fit in the socket buffers: the first transact stays partly written and the
    // second one queued behind it.
    let big = comment(&"b".repeat(64 << 20));
    let first = client.start_transact("X", &big).unwrap();
    let small = comment("small");
    let second = client.start_transact("X", &small).unwrap();
    let (e1, e2) = within(async { tokio::join!(first.finish(&big), second.finish(&small)) }).await;
    let (e1, e2) = (e1.unwrap_err(), e2.unwrap_err());
    assert!(e1.is_outcome_unknown() && e1.is_deadline(), "{e1}");
    assert!(!e2.is_outcome_unknown() && e2.is_deadline(), "{e2}");
    assert!(
        matches!(e2, Error::Deadline { ref method, .. } if method == "transact"),
        "{e2}"
    );
}

/// On real time: once the peer is back it answers each probe over loopback, and on a paused
/// clock the client could reach its give-up time while an answer is still in flight.
#[tokio::test]
async fn a_server_silent_for_many_probe_intervals_while_it_works_on_our_request_is_waited_for() {
    let opts = ConnectOptions {
        inactivity_probe: Some(Duration::from_millis(100)),
        request_timeout: Some(Duration::from_secs(10)),
        ..ConnectOptions::default()
    };
    let (client, conn) = with_fake_server(opts, |sock| async move {
        let (mut rd, wr) = split(sock);
        let req = rd.next().await.unwrap();
        // "Executing a large transaction": single-threaded, it sends nothing — not even the
        // answer to our probes — for ten probe intervals.
        let busy = tokio::time::sleep(Duration::from_millis(1000));
        tokio::pin!(busy);
        let mut probes = Vec::new();
        loop {
            tokio::select! {
                _ = &mut busy => break,
                msg = rd.next() => match msg {
                    Some(m) => probes.extend(probe_reply(&m)),
                    None => return,
                },
            }
        }
        send(
            &wr,
            &json!({"id": req["id"], "result": [{}], "error": null}),
        )
        .await;
        for p in probes {
            send(&wr, &p).await;
        }
        // Then idle and answering probes, as a server does.
        while let Some(m) = rd.next().await {
            if let Some(p) = probe_reply(&m) {
                send(&wr, &p).await;
            }
        }
    })
    .await;
    let conn = tokio::spawn(conn);
    let started = Instant::now();
    let ops = comment("slow");
    let results = within(client.transact_unchecked("X", &ops)).await.unwrap();
    assert_eq!(results.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(1000));
    // The connection survived and still works; with nothing outstanding the probe is back to
    // normal (the peer answers it, so the connection stays).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!client.is_closed());
    assert!(!conn.is_finished());
}
