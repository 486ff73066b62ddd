//! The connection task: owns the socket, writes what clients queue, matches replies to
//! requests by id, answers the server's `echo`, probes an idle server, and hands notifications
//! (`update*`, `locked`, `stolen`) to whoever took the [`Notifications`] receiver.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufWriter, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::framing::JsonCodec;
use crate::message::{Message, Notification, Response};
use crate::transport::BoxTransport;
use crate::Error;

/// Notifications from the server, in the order it sent them.
pub type Notifications = mpsc::UnboundedReceiver<Notification>;

/// Counters of one connection, readable while it runs (e.g. to show that a resumed monitor
/// did not refetch the database).
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes of complete messages received.
    pub bytes_received: AtomicU64,
    /// Messages received.
    pub messages_received: AtomicU64,
    /// Bytes sent.
    pub bytes_sent: AtomicU64,
    /// Requests sent.
    pub requests_sent: AtomicU64,
}

impl Stats {
    /// `bytes_received` now.
    pub fn received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }
}

/// What a [`crate::Client`] queues for the connection task.
pub(crate) enum Outgoing {
    /// An encoded request with id `id`; the reply goes to `reply`.
    Request {
        id: u64,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Response, Error>>,
    },
    /// An encoded `cancel` of request `id`. ovsdb-server (3.1 at least) never answers a
    /// canceled `transact`, although RFC 7047 §4.1.4 says it replies `canceled`; so the
    /// request is completed here with that error, and a late reply, if any, is ignored.
    Cancel { id: u64, bytes: Vec<u8> },
}

/// Settings of the connection task.
#[derive(Debug, Clone)]
pub(crate) struct TaskOptions {
    pub max_message: usize,
    /// Send an `echo` after this long without hearing from the server, and give up when the
    /// next such interval also passes in silence (as OVS' reconnect FSM does). `None`: never.
    pub inactivity_probe: Option<Duration>,
}

/// The future that drives one connection. Spawn it (`tokio::spawn(connection)`); it completes
/// when every [`crate::Client`] is dropped (Ok) or the connection fails (the error, which every
/// request in flight also receives).
#[must_use = "the connection does nothing unless spawned or awaited"]
pub struct Connection {
    future: Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>,
    notifications: Option<Notifications>,
}

impl Connection {
    pub(crate) fn new(
        transport: BoxTransport,
        requests: mpsc::UnboundedReceiver<Outgoing>,
        stats: Arc<Stats>,
        opts: TaskOptions,
    ) -> Connection {
        let (tx, rx) = mpsc::unbounded_channel();
        Connection {
            future: Box::pin(run(transport, requests, tx, stats, opts)),
            notifications: Some(rx),
        }
    }

    /// The server's notifications. Take them before spawning the connection; untaken
    /// notifications are discarded.
    pub fn take_notifications(&mut self) -> Option<Notifications> {
        self.notifications.take()
    }
}

impl Future for Connection {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Nobody will read notifications that were not taken by now: drop the receiver so they
        // are not queued forever.
        self.notifications = None;
        self.future.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

type Pending = HashMap<u64, oneshot::Sender<Result<Response, Error>>>;

/// The id of our inactivity probes (clients' ids are integers, so they never collide).
const PROBE_ID: &str = "ovn-vpc-probe";

async fn run(
    transport: BoxTransport,
    mut requests: mpsc::UnboundedReceiver<Outgoing>,
    notifications: mpsc::UnboundedSender<Notification>,
    stats: Arc<Stats>,
    opts: TaskOptions,
) -> Result<(), Error> {
    let (rd, wr) = tokio::io::split(transport);
    let mut reader =
        FramedRead::with_capacity(rd, JsonCodec::with_max_message(opts.max_message), 64 * 1024);
    let mut writer = BufWriter::with_capacity(64 * 1024, wr);
    let mut pending: Pending = HashMap::new();
    let mut state = Task {
        last_heard: Instant::now(),
        probe_sent: false,
    };
    let result = loop {
        let probe_at = opts.inactivity_probe.map(|p| state.last_heard + p);
        tokio::select! {
            frame = reader.next() => {
                let outcome = match frame {
                    None => Err(Error::Closed("the server closed the connection".into())),
                    Some(Err(e)) => Err(e),
                    Some(Ok(bytes)) => {
                        state.last_heard = Instant::now();
                        state.probe_sent = false;
                        stats.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        stats.messages_received.fetch_add(1, Ordering::Relaxed);
                        handle_incoming(&bytes, &mut pending, &notifications, &mut writer, &stats).await
                    }
                };
                if let Err(e) = outcome {
                    break Err(e);
                }
            }
            out = requests.recv() => {
                let Some(out) = out else {
                    // Every client is gone: nothing more can be asked or answered.
                    break Ok(());
                };
                // Drain whatever else is queued so a burst of pipelined requests leaves in one
                // write.
                let mut batch = Some(out);
                let mut failed = None;
                while let Some(out) = batch.take() {
                    if let Err(e) = queue(out, &mut pending, &mut writer, &stats).await {
                        failed = Some(e);
                        break;
                    }
                    batch = requests.try_recv().ok();
                }
                if failed.is_none() {
                    failed = writer.flush().await.err().map(Error::from);
                }
                if let Some(e) = failed {
                    break Err(e);
                }
            }
            _ = sleep_until(probe_at) => {
                if state.probe_sent {
                    break Err(Error::Timeout(format!(
                        "no message from the server for {:?} (inactivity probe)",
                        opts.inactivity_probe.map(|p| p * 2).unwrap_or_default()
                    )));
                }
                let echo = crate::message::Request::new(PROBE_ID, "echo", &Vec::<Value>::new())?;
                let sent = write_all(&mut writer, &echo.encode()?, &stats).await;
                if let Err(e) = sent.and(writer.flush().await.map_err(Error::from)) {
                    break Err(e);
                }
                state.probe_sent = true;
                state.last_heard = Instant::now();
            }
        }
    };
    // Whatever ended the connection is what every request still in flight gets told.
    let reason = match &result {
        Ok(()) => "the connection was shut down".to_string(),
        Err(e) => e.to_string(),
    };
    for (_, reply) in pending.drain() {
        let _ = reply.send(Err(Error::Closed(reason.clone())));
    }
    requests.close();
    while let Ok(out) = requests.try_recv() {
        if let Outgoing::Request { reply, .. } = out {
            let _ = reply.send(Err(Error::Closed(reason.clone())));
        }
    }
    let _ = writer.shutdown().await;
    if let Err(e) = &result {
        tracing::debug!(error = %e, "OVSDB connection ended");
    }
    result
}

struct Task {
    last_heard: Instant,
    probe_sent: bool,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

type Writer = BufWriter<WriteHalf<BoxTransport>>;

async fn write_all(writer: &mut Writer, bytes: &[u8], stats: &Stats) -> Result<(), Error> {
    tracing::trace!(frame = %String::from_utf8_lossy(bytes), "send");
    writer.write_all(bytes).await?;
    stats
        .bytes_sent
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(())
}

async fn queue(
    out: Outgoing,
    pending: &mut Pending,
    writer: &mut Writer,
    stats: &Stats,
) -> Result<(), Error> {
    match out {
        Outgoing::Request { id, bytes, reply } => {
            if reply.is_closed() {
                return Ok(()); // the caller gave up before it was sent
            }
            pending.insert(id, reply);
            stats.requests_sent.fetch_add(1, Ordering::Relaxed);
            write_all(writer, &bytes, stats).await
        }
        Outgoing::Cancel { id, bytes } => {
            write_all(writer, &bytes, stats).await?;
            if let Some(reply) = pending.remove(&id) {
                let _ = reply.send(Ok(Response {
                    id: Value::from(id),
                    result: Err(serde_json::json!({
                        "error": "canceled",
                        "details": "canceled by this client",
                    })),
                }));
            }
            Ok(())
        }
    }
}

async fn handle_incoming(
    bytes: &[u8],
    pending: &mut Pending,
    notifications: &mpsc::UnboundedSender<Notification>,
    writer: &mut Writer,
    stats: &Stats,
) -> Result<(), Error> {
    tracing::trace!(frame = %String::from_utf8_lossy(bytes), "recv");
    // A message we cannot read may be the reply somebody waits for; we cannot tell whose, so
    // the connection is not trustworthy any more: fail it (and every request in flight).
    let message = Message::decode(bytes)?;
    match message {
        Message::Response(resp) => {
            match resp.id.as_u64().and_then(|id| pending.remove(&id)) {
                Some(reply) => {
                    let _ = reply.send(Ok(resp));
                }
                None if resp.id == PROBE_ID => {}
                None => tracing::debug!(id = %resp.id, "reply to no pending request"),
            }
            Ok(())
        }
        Message::Request(req) if req.method == "echo" => {
            // RFC 7047 §4.1.11: reply with the same params.
            let reply = Response {
                id: req.id,
                result: Ok(req.params),
            };
            write_all(writer, &reply.encode()?, stats).await?;
            writer.flush().await?;
            Ok(())
        }
        Message::Request(req) => {
            let reply = Response {
                id: req.id,
                result: Err(serde_json::json!({"error": "unknown method", "details": req.method})),
            };
            write_all(writer, &reply.encode()?, stats).await?;
            writer.flush().await?;
            Ok(())
        }
        Message::Notification(n) => {
            let _ = notifications.send(n);
            Ok(())
        }
    }
}
