//! The connection task: owns the socket, writes what clients queue, matches replies to
//! requests by id, enforces each request's deadline, answers the server's `echo`, probes an
//! idle server, and hands notifications (`update*`, `locked`, `stolen`) to whoever took the
//! [`Notifications`] receiver.
//!
//! **It always reads while it writes.** ovsdb-server stops reading a client while it has
//! output queued for that client (`jsonrpc_session_get_backlog()` in OVS' `ovsdb/jsonrpc-server.c`),
//! so a client that stops reading while it writes a large request deadlocks as soon as the
//! server has a large update or reply for it: both ends' receive queues fill (issue 12, item 2).
//! The task is therefore one poll loop over one state, not a sequence of awaits: every turn it
//! takes what clients queued, writes as much as the socket accepts, reads whatever arrived,
//! and checks its timers; no step waits for another to finish.
//!
//! What a flooding or stuck server can cost (the bounds):
//! - one incoming message: at most `max_message` bytes buffered by the splitter;
//! - notifications not yet read by the consumer: at most the notification budget
//!   ([`crate::ConnectOptions::notification_budget`], 64 MiB by default; a single larger message
//!   alone). While the budget is spent the task stops reading the socket (backpressure on the
//!   server), so the consumer must keep reading [`Notifications`];
//! - replies to the server's own requests (`echo`) it does not read: at most [`REPLY_BACKLOG`]
//!   bytes, then the task stops reading until the server reads them;
//! - time: every request has a deadline ([`crate::ConnectOptions::request_timeout`]), so a
//!   server that answers the probe but never the request, or floods echo requests or
//!   notifications, cannot make a request wait forever.
//!
//! The inactivity probe follows OVS' reconnect FSM (`lib/reconnect.c`): any byte received is
//! activity; after one probe interval of silence an `echo` is sent; after a second silent
//! interval the connection is dropped — unless a request of ours is outstanding. ovsdb-server is
//! single-threaded and sends nothing at all while it executes a large transaction, so silence
//! then means "busy", not "dead": the request's deadline, not the probe, bounds that wait.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::codec::FramedRead;

use crate::framing::JsonCodec;
use crate::message::{Message, Notification, Request, Response};
use crate::transport::BoxTransport;
use crate::Error;

/// Bytes of replies to the server's own requests (`echo`) that may wait unsent before the
/// connection stops reading: a server that floods requests and does not read the answers
/// cannot grow our memory past this (a real ovsdb-server sends one `echo` per probe interval).
pub const REPLY_BACKLOG: usize = 1024 * 1024;

/// Default of [`crate::ConnectOptions::notification_budget`]: 64 MiB.
pub const DEFAULT_NOTIFICATION_BUDGET: usize = 64 * 1024 * 1024;

/// A notification is charged at least this many bytes against the budget, so that a flood of
/// tiny ones is bounded in count as well.
const MIN_NOTIFICATION_COST: usize = 256;

/// Small messages are written together, up to this many bytes per write.
const COALESCE: usize = 64 * 1024;

/// Messages read per turn of the loop, so that timers and writes get their turn in a flood.
const READS_PER_TURN: usize = 64;

/// Turns of the loop per poll before yielding to the runtime.
const TURNS_PER_POLL: usize = 32;

/// The id of our inactivity probes (clients' ids are integers, so they never collide).
const PROBE_ID: &str = "ovn-vpc-probe";

/// Notifications from the server, in the order it sent them.
///
/// Keep reading them: while more than the notification budget
/// ([`crate::ConnectOptions::notification_budget`]) waits here unread, the connection stops
/// reading the socket, and replies to requests wait behind it (each request's deadline still
/// applies). Dropping the receiver discards later notifications.
#[derive(Debug)]
pub struct Notifications {
    rx: mpsc::UnboundedReceiver<Queued>,
    stats: Arc<Stats>,
}

#[derive(Debug)]
struct Queued {
    note: Notification,
    cost: usize,
    // Returned to the budget when the consumer takes the notification.
    _permit: OwnedSemaphorePermit,
}

impl Notifications {
    /// The next notification; `None` once the connection has ended and all were read.
    pub async fn recv(&mut self) -> Option<Notification> {
        let q = self.rx.recv().await?;
        Some(self.taken(q))
    }

    /// The next notification if one is waiting.
    pub fn try_recv(&mut self) -> Result<Notification, mpsc::error::TryRecvError> {
        let q = self.rx.try_recv()?;
        Ok(self.taken(q))
    }

    fn taken(&self, q: Queued) -> Notification {
        self.stats
            .queued_notification_bytes
            .fetch_sub(q.cost as u64, Ordering::Relaxed);
        q.note
    }
}

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
    /// Bytes of notifications waiting for the consumer now (charged as the budget counts them;
    /// never above the budget, or one larger message).
    pub queued_notification_bytes: AtomicU64,
    /// Bytes of replies to the server's requests not yet written now (never above
    /// [`REPLY_BACKLOG`] plus one reply).
    pub unsent_reply_bytes: AtomicU64,
    /// Requests of the server (`echo`, …) answered.
    pub server_requests: AtomicU64,
}

impl Stats {
    /// `bytes_received` now.
    pub fn received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }
}

/// Why a request got no reply, as the connection task knows it; [`crate::PendingReply`] turns
/// it into an [`Error`] (adding the method, and `OutcomeUnknown` for a sent `transact`).
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection ended (the reason as text: every request in flight is told the same).
    Closed {
        reason: String,
        /// Whether any byte of the request may have reached the server.
        sent: bool,
    },
    /// The deadline passed.
    Deadline { after: Duration, sent: bool },
}

pub(crate) type ReplySender = oneshot::Sender<Result<Response, Failure>>;

/// What a [`crate::Client`] queues for the connection task.
pub(crate) enum Outgoing {
    /// An encoded request with id `id`; the reply goes to `reply`.
    Request {
        id: u64,
        bytes: Vec<u8>,
        reply: ReplySender,
        /// When to give up, and the duration that stands for (for the message).
        deadline: Option<(Instant, Duration)>,
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
    /// next such interval also passes in silence with no request of ours outstanding. `None`:
    /// never.
    pub inactivity_probe: Option<Duration>,
    /// Bytes of unread notifications before the task stops reading.
    pub notification_budget: usize,
}

/// The future that drives one connection. Spawn it (`tokio::spawn(connection)`); it completes
/// when every [`crate::Client`] is dropped and every request in flight has its answer (Ok), or
/// when the connection fails (the error, which every request in flight also receives).
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
        let notifications = Notifications {
            rx,
            stats: stats.clone(),
        };
        let driver = Driver::new(transport, requests, tx, stats, opts);
        Connection {
            future: Box::pin(driver.run()),
            notifications: Some(notifications),
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

/// The transport, counting the bytes read so that partial messages count as activity (as
/// OVS' `jsonrpc_session_run()` does: a large reply that takes long to arrive is not silence).
struct Counting {
    inner: BoxTransport,
    received: u64,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.received += (buf.filled().len() - before) as u64;
        r
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct Pending {
    reply: ReplySender,
    /// Some byte of it was handed to the transport (conservatively: it was put in the chunk
    /// being written).
    sent: bool,
    after: Duration,
}

type Acquire =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send>>;

/// A notification waiting for budget; reading stops meanwhile.
struct Parked {
    note: Notification,
    cost: usize,
    acquire: Acquire,
}

struct Driver {
    io: FramedRead<Counting, JsonCodec>,
    requests: mpsc::UnboundedReceiver<Outgoing>,
    /// Every client is gone: finish what is in flight, then end.
    clients_gone: bool,
    notifications: mpsc::UnboundedSender<Queued>,
    budget: Arc<Semaphore>,
    parked: Option<Parked>,
    pending: HashMap<u64, Pending>,
    /// Ids whose caller was already answered (deadline passed, canceled) but whose reply may
    /// still come: a late reply is not a protocol error.
    abandoned: HashSet<u64>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Our requests (with their id) and cancels (without), in order.
    out_requests: VecDeque<(Option<u64>, Vec<u8>)>,
    /// Replies to the server's requests and our probes: sent first, at the next message
    /// boundary.
    out_replies: VecDeque<Vec<u8>>,
    reply_backlog: usize,
    /// The last chunk held replies: the next one is our requests' turn if any wait, so a
    /// flood of server requests cannot starve them.
    last_chunk_replies: bool,
    chunk: Vec<u8>,
    chunk_pos: usize,
    need_flush: bool,
    stats: Arc<Stats>,
    opts: TaskOptions,
    last_heard: Instant,
    last_received: u64,
    probe_sent: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
}

impl Driver {
    fn new(
        transport: BoxTransport,
        requests: mpsc::UnboundedReceiver<Outgoing>,
        notifications: mpsc::UnboundedSender<Queued>,
        stats: Arc<Stats>,
        opts: TaskOptions,
    ) -> Driver {
        let io = FramedRead::with_capacity(
            Counting {
                inner: transport,
                received: 0,
            },
            JsonCodec::with_max_message(opts.max_message),
            64 * 1024,
        );
        // Permits are acquired as u32 counts: a budget beyond 4 GiB is 4 GiB.
        let mut opts = opts;
        opts.notification_budget = opts
            .notification_budget
            .clamp(MIN_NOTIFICATION_COST, u32::MAX as usize);
        let budget = opts.notification_budget;
        Driver {
            io,
            requests,
            clients_gone: false,
            notifications,
            budget: Arc::new(Semaphore::new(budget)),
            parked: None,
            pending: HashMap::new(),
            abandoned: HashSet::new(),
            deadlines: BinaryHeap::new(),
            out_requests: VecDeque::new(),
            out_replies: VecDeque::new(),
            reply_backlog: 0,
            last_chunk_replies: false,
            chunk: Vec::new(),
            chunk_pos: 0,
            need_flush: false,
            stats,
            opts,
            last_heard: Instant::now(),
            last_received: 0,
            probe_sent: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_at: None,
        }
    }

    async fn run(mut self) -> Result<(), Error> {
        let result = std::future::poll_fn(|cx| self.poll_drive(cx)).await;
        self.finish(&result).await;
        result
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        for _ in 0..TURNS_PER_POLL {
            let mut progress = self.take_requests(cx);
            progress |= self.write(cx)?;
            progress |= self.deliver(cx);
            progress |= self.read(cx)?;
            progress |= self.timers(cx)?;
            if self.is_done() {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // A flood keeps every step busy: let the rest of the runtime run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn is_done(&self) -> bool {
        self.clients_gone
            && self.pending.is_empty()
            && self.out_requests.is_empty()
            && self.chunk_pos == self.chunk.len()
            && !self.need_flush
    }

    /// Reading stops while a notification waits for budget or while the server does not read
    /// our replies to its requests.
    fn paused(&self) -> bool {
        self.parked.is_some() || self.reply_backlog > REPLY_BACKLOG
    }

    fn take_requests(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while !self.clients_gone {
            match self.requests.poll_recv(cx) {
                Poll::Ready(Some(out)) => {
                    self.queue(out);
                    progress = true;
                }
                Poll::Ready(None) => {
                    self.clients_gone = true;
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    fn queue(&mut self, out: Outgoing) {
        match out {
            Outgoing::Request {
                id,
                bytes,
                reply,
                deadline,
            } => {
                if reply.is_closed() {
                    return; // the caller gave up before it was sent
                }
                let after = match deadline {
                    Some((at, after)) => {
                        self.deadlines.push(Reverse((at, id)));
                        after
                    }
                    None => Duration::ZERO,
                };
                self.pending.insert(
                    id,
                    Pending {
                        reply,
                        sent: false,
                        after,
                    },
                );
                self.stats.requests_sent.fetch_add(1, Ordering::Relaxed);
                self.out_requests.push_back((Some(id), bytes));
            }
            Outgoing::Cancel { id, bytes } => {
                self.out_requests.push_back((None, bytes));
                if let Some(p) = self.pending.remove(&id) {
                    self.abandoned.insert(id);
                    let _ = p.reply.send(Ok(Response {
                        id: Value::from(id),
                        result: Err(serde_json::json!({
                            "error": "canceled",
                            "details": "canceled by this client",
                        })),
                    }));
                }
            }
        }
    }

    fn queue_reply(&mut self, bytes: Vec<u8>) {
        self.reply_backlog += bytes.len();
        self.stats
            .unsent_reply_bytes
            .store(self.reply_backlog as u64, Ordering::Relaxed);
        self.out_replies.push_back(bytes);
    }

    /// Fills the chunk to write with the next messages of one queue, small ones together:
    /// replies first (they are small and the server may be waiting on them, our probe among
    /// them), then our requests, taking turns when both wait.
    fn refill(&mut self) -> bool {
        if self.chunk.capacity() > 4 * COALESCE {
            self.chunk = Vec::new(); // do not keep a large request's buffer around
        }
        self.chunk.clear();
        self.chunk_pos = 0;
        let replies = !self.out_replies.is_empty()
            && (self.out_requests.is_empty() || !self.last_chunk_replies);
        self.last_chunk_replies = replies;
        loop {
            let next_len = if replies {
                self.out_replies.front().map(Vec::len)
            } else {
                self.out_requests.front().map(|(_, r)| r.len())
            };
            let Some(next_len) = next_len else { break };
            if !self.chunk.is_empty() && self.chunk.len() + next_len > COALESCE {
                break;
            }
            let bytes = if replies {
                let Some(r) = self.out_replies.pop_front() else {
                    break;
                };
                self.reply_backlog -= r.len();
                self.stats
                    .unsent_reply_bytes
                    .store(self.reply_backlog as u64, Ordering::Relaxed);
                r
            } else {
                let Some((id, r)) = self.out_requests.pop_front() else {
                    break;
                };
                if let Some(p) = id.and_then(|id| self.pending.get_mut(&id)) {
                    p.sent = true;
                }
                r
            };
            tracing::trace!(frame = %String::from_utf8_lossy(&bytes), "send");
            if self.chunk.is_empty() && bytes.len() >= COALESCE {
                self.chunk = bytes; // a large request is written from its own buffer
                break;
            }
            self.chunk.extend_from_slice(&bytes);
        }
        !self.chunk.is_empty()
    }

    fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut progress = false;
        loop {
            if self.chunk_pos == self.chunk.len() && !self.refill() {
                break;
            }
            let io = Pin::new(self.io.get_mut());
            match io.poll_write(cx, &self.chunk[self.chunk_pos..]) {
                Poll::Ready(Ok(0)) => {
                    return Err(Error::Io(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.chunk_pos += n;
                    self.stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                    self.need_flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => return Ok(progress),
            }
        }
        if self.need_flush {
            match Pin::new(self.io.get_mut()).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.need_flush = false,
                Poll::Ready(Err(e)) => return Err(e.into()),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Hands a parked notification over once the budget allows.
    fn deliver(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(parked) = self.parked.as_mut() else {
            return false;
        };
        if self.notifications.is_closed() {
            self.parked = None; // nobody reads them any more
            return true;
        }
        match parked.acquire.as_mut().poll(cx) {
            Poll::Ready(Ok(permit)) => {
                if let Some(p) = self.parked.take() {
                    self.hand_over(p.note, p.cost, permit);
                }
                true
            }
            // The semaphore is never closed; treat it as "nobody reads".
            Poll::Ready(Err(_)) => {
                self.parked = None;
                true
            }
            Poll::Pending => false,
        }
    }

    fn hand_over(&mut self, note: Notification, cost: usize, permit: OwnedSemaphorePermit) {
        self.stats
            .queued_notification_bytes
            .fetch_add(cost as u64, Ordering::Relaxed);
        let queued = Queued {
            note,
            cost,
            _permit: permit,
        };
        if self.notifications.send(queued).is_err() {
            // The receiver is gone; `Queued` was dropped with its permit: undo the count.
            self.stats
                .queued_notification_bytes
                .fetch_sub(cost as u64, Ordering::Relaxed);
        }
    }

    fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.probe_sent = None;
    }

    fn read(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut progress = false;
        for _ in 0..READS_PER_TURN {
            if self.paused() {
                break;
            }
            let polled = Pin::new(&mut self.io).poll_next(cx);
            let received = self.io.get_ref().received;
            if received != self.last_received {
                self.last_received = received;
                self.heard();
            }
            match polled {
                Poll::Ready(None) => {
                    return Err(Error::Closed("the server closed the connection".into()));
                }
                Poll::Ready(Some(Err(e))) => return Err(e),
                Poll::Ready(Some(Ok(bytes))) => {
                    self.stats
                        .bytes_received
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
                    self.incoming(&bytes)?;
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        Ok(progress)
    }

    fn incoming(&mut self, bytes: &[u8]) -> Result<(), Error> {
        tracing::trace!(frame = %String::from_utf8_lossy(bytes), "recv");
        // A message we cannot read may be the reply somebody waits for; we cannot tell whose,
        // so the connection is not trustworthy any more: fail it (and every request in flight).
        match Message::decode(bytes)? {
            Message::Response(resp) => {
                let id = resp.id.as_u64();
                if let Some(p) = id.and_then(|id| self.pending.remove(&id)) {
                    let _ = p.reply.send(Ok(resp));
                } else if resp.id == PROBE_ID || id.is_some_and(|id| self.abandoned.remove(&id)) {
                    // Our probe's answer, or a late reply to a request already answered.
                } else {
                    // Whatever this answers, it is not what we asked: the server and we no
                    // longer agree on the conversation.
                    return Err(Error::Protocol(format!(
                        "the server sent a reply with id {} that answers no request of ours",
                        resp.id
                    )));
                }
            }
            Message::Request(req) => {
                self.stats.server_requests.fetch_add(1, Ordering::Relaxed);
                let result = if req.method == "echo" {
                    // RFC 7047 §4.1.11: reply with the same params.
                    Ok(req.params)
                } else {
                    Err(serde_json::json!({"error": "unknown method", "details": req.method}))
                };
                let reply = Response { id: req.id, result };
                self.queue_reply(reply.encode()?);
            }
            Message::Notification(note) => {
                if self.notifications.is_closed() {
                    return Ok(());
                }
                // A message larger than the whole budget is charged the whole budget: it
                // waits until nothing else is queued, then goes alone.
                let cost = bytes
                    .len()
                    .clamp(MIN_NOTIFICATION_COST, self.opts.notification_budget);
                let permits = u32::try_from(cost).unwrap_or(u32::MAX);
                match self.budget.clone().try_acquire_many_owned(permits) {
                    Ok(permit) => self.hand_over(note, cost, permit),
                    Err(_) => {
                        let acquire = Box::pin(self.budget.clone().acquire_many_owned(permits));
                        self.parked = Some(Parked {
                            note,
                            cost,
                            acquire,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Deadlines and the inactivity probe. Returns whether anything happened.
    fn timers(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut progress = false;
        for _ in 0..4 {
            let now = Instant::now();
            progress |= self.expire(now);
            progress |= self.probe(now)?;
            let Some(at) = self.next_timer() else {
                self.timer_at = None;
                return Ok(progress);
            };
            if self.timer_at != Some(at) {
                self.timer.as_mut().reset(at);
                self.timer_at = Some(at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(progress); // the timer will wake us
            }
        }
        // Still due after a few rounds (should not happen): never sleep on a fired timer.
        cx.waker().wake_by_ref();
        Ok(progress)
    }

    fn expire(&mut self, now: Instant) -> bool {
        let mut progress = false;
        while let Some(Reverse((at, id))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(p) = self.pending.remove(&id) else {
                continue; // answered already
            };
            progress = true;
            if p.sent {
                self.abandoned.insert(id);
            } else {
                // Never written: take it out of the queue, the server will not see it.
                self.out_requests.retain(|(i, _)| *i != Some(id));
            }
            let _ = p.reply.send(Err(Failure::Deadline {
                after: p.after,
                sent: p.sent,
            }));
        }
        progress
    }

    fn probe(&mut self, now: Instant) -> Result<bool, Error> {
        let Some(interval) = self.opts.inactivity_probe else {
            return Ok(false);
        };
        if self.paused() {
            // Silence while we ourselves do not read is not the server's.
            self.last_heard = now;
            return Ok(false);
        }
        match self.probe_sent {
            None if now >= self.last_heard + interval => {
                let echo = Request::new(PROBE_ID, "echo", &Vec::<Value>::new())?;
                self.queue_reply(echo.encode()?);
                self.probe_sent = Some(now);
                Ok(true)
            }
            Some(at) if now >= at + interval && self.pending.is_empty() => {
                Err(Error::Timeout(format!(
                    "no message from the server for {:.1?} (inactivity probe)",
                    now - self.last_heard
                )))
            }
            _ => Ok(false),
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let deadline = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let probe = match (self.opts.inactivity_probe, self.probe_sent) {
            _ if self.paused() => None,
            (Some(i), None) => Some(self.last_heard + i),
            // With a request outstanding a silent server is busy, not gone (see the module
            // docs); its deadline is the timer then.
            (Some(i), Some(at)) if self.pending.is_empty() => Some(at + i),
            _ => None,
        };
        match (deadline, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn finish(&mut self, result: &Result<(), Error>) {
        match result {
            Ok(()) => {
                // Everything was written; a TLS close_notify may need one more write. Do not
                // wait long for a peer that does not read.
                let io = self.io.get_mut();
                let _ = tokio::time::timeout(Duration::from_millis(200), io.shutdown()).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "OVSDB connection ended");
                // Whatever ended the connection is what every request still in flight is told.
                let reason = e.to_string();
                for (_, p) in self.pending.drain() {
                    let _ = p.reply.send(Err(Failure::Closed {
                        reason: reason.clone(),
                        sent: p.sent,
                    }));
                }
                self.requests.close();
                while let Ok(out) = self.requests.try_recv() {
                    if let Outgoing::Request { reply, .. } = out {
                        let _ = reply.send(Err(Failure::Closed {
                            reason: reason.clone(),
                            sent: false,
                        }));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, ConnectOptions};
    use tokio::io::AsyncReadExt;

    /// Over a duplex pipe with a 4 KiB buffer each way, the peer writes 4 MiB of notifications
    /// and only then reads, while the client sends a 4 MiB request: a connection that stops
    /// reading while it writes deadlocks here (both buffers full), one that always reads does
    /// not.
    #[tokio::test]
    async fn a_large_request_and_a_large_inflow_do_not_deadlock_on_a_tiny_pipe() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let (client, conn) =
            Client::over(Box::new(ours), "duplex".into(), &ConnectOptions::default());
        let conn = tokio::spawn(conn);
        let peer = tokio::spawn(async move {
            let note = format!(
                r#"{{"id":null,"method":"update2","params":["m",{{"T":{{"x":{{"insert":{{"s":"{}"}}}}}}}}]}}"#,
                "y".repeat(4000)
            );
            for _ in 0..1024 {
                theirs.write_all(note.as_bytes()).await.unwrap();
            }
            // Now read the request (whole) and answer it.
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = theirs.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client hung up");
                buf.extend_from_slice(&chunk[..n]);
                let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
                if let Some(Ok(v)) = it.next() {
                    let reply = serde_json::json!({"id": v["id"], "result": v["params"][0].as_str().map(str::len), "error": null});
                    theirs
                        .write_all(reply.to_string().as_bytes())
                        .await
                        .unwrap();
                    break;
                }
            }
            theirs
        });
        let big = "z".repeat(4 * 1024 * 1024);
        let reply = tokio::time::timeout(Duration::from_secs(20), client.call("big", &[&big]))
            .await
            .expect("deadlock: the request never completed")
            .unwrap();
        assert_eq!(reply.get(), (4 * 1024 * 1024).to_string());
        let _theirs = peer.await.unwrap();
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
