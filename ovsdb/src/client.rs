//! The client handle: cheap to clone, many requests in flight at once (pipelining), one
//! method per RFC 7047 / OVS extension method.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::connection::{
    Connection, Failure, Outgoing, Stats, TaskOptions, DEFAULT_NOTIFICATION_BUDGET,
};
use crate::message::{Notification, Request, Response};
use crate::operation::{decode_results, Operation, OperationResult, ServerError};
use crate::remote::Remote;
use crate::schema::DatabaseSchema;
use crate::tls::TlsSettings;
use crate::transport::{self, BoxTransport};
use crate::{Error, DEFAULT_MAX_MESSAGE};

/// The default deadline of each request: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Key, certificate and CA for `ssl:` remotes.
    pub tls: Option<TlsSettings>,
    /// Give up on one remote after this long.
    pub connect_timeout: Duration,
    /// Probe a silent server with `echo` after this long, and drop the connection when the
    /// next interval also passes in silence — unless a request of ours is outstanding, which
    /// means the server is busy with it (ovsdb-server sends nothing while it executes a large
    /// transaction); the request's deadline bounds that wait instead. Any byte received
    /// counts as hearing from the server. `None` disables probing.
    pub inactivity_probe: Option<Duration>,
    /// The largest message accepted from the server.
    pub max_message: usize,
    /// The deadline of each request, from the moment it is queued until its whole reply has
    /// arrived ([`DEFAULT_REQUEST_TIMEOUT`], 30 s). When it passes the request fails with
    /// [`Error::Deadline`] — or [`Error::OutcomeUnknown`] for a `transact` that was
    /// (possibly) written — and the connection stays up. `None`: no deadline. Per client
    /// handle: [`Client::with_request_timeout`].
    pub request_timeout: Option<Duration>,
    /// Bytes of notifications that may wait unread in [`crate::Notifications`]
    /// ([`crate::DEFAULT_NOTIFICATION_BUDGET`], 64 MiB; a single larger message alone); beyond
    /// that the connection stops reading until the consumer catches up.
    pub notification_budget: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: None,
            connect_timeout: Duration::from_secs(10),
            inactivity_probe: Some(Duration::from_secs(5)),
            max_message: DEFAULT_MAX_MESSAGE,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            notification_budget: DEFAULT_NOTIFICATION_BUDGET,
        }
    }
}

/// Connects to the first reachable remote of `remotes` (`tcp:a:6641,tcp:b:6641`, …) with
/// default options. Spawn the returned [`Connection`]; use the [`Client`].
///
/// ```no_run
/// # async fn example() -> Result<(), ovsdb::Error> {
/// let (client, connection) = ovsdb::connect("unix:/run/ovn/ovnnb_db.sock").await?;
/// tokio::spawn(connection);
/// println!("{:?}", client.list_dbs().await?);
/// # Ok(()) }
/// ```
pub async fn connect(remotes: &str) -> Result<(Client, Connection), Error> {
    connect_with(remotes, &ConnectOptions::default()).await
}

/// [`connect`] with options. Each remote is tried once, in order; when none can be reached
/// the error is [`Error::Unavailable`], naming each remote and why (`unix:/run/x.sock: No such
/// file or directory (os error 2)`) — except that a single `ssl:` remote whose TLS setup or
/// handshake failed gives that [`Error::Tls`], a configuration problem rather than an absent
/// server. A refused connection or a missing socket fails at once; an unreachable host after
/// `connect_timeout`.
pub async fn connect_with(
    remotes: &str,
    opts: &ConnectOptions,
) -> Result<(Client, Connection), Error> {
    let list = Remote::parse_list(remotes)?;
    let mut tried = Vec::new();
    for remote in &list {
        match transport::open(remote, opts.tls.as_ref(), opts.connect_timeout).await {
            Ok(t) => return Ok(Client::over(t, remote.to_string(), opts)),
            Err(e @ Error::Tls(_)) if list.len() == 1 => return Err(e),
            Err(e) => {
                tracing::debug!(%remote, error = %e, "cannot connect");
                tried.push((remote.to_string(), transport::cause(&e)));
            }
        }
    }
    Err(Error::Unavailable {
        db: None,
        waited: Duration::ZERO,
        tried,
    })
}

/// A handle to one OVSDB connection. Clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// The deadline of requests made through this handle.
    timeout: Option<Duration>,
}

struct Inner {
    tx: mpsc::UnboundedSender<Outgoing>,
    next_id: AtomicU64,
    stats: Arc<Stats>,
    remote: String,
    schemas: Mutex<HashMap<String, Arc<DatabaseSchema>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("remote", &self.inner.remote)
            .finish_non_exhaustive()
    }
}

/// A request on its way; its id can be handed to [`Client::cancel`].
#[derive(Debug)]
pub struct PendingReply {
    id: u64,
    method: String,
    rx: oneshot::Receiver<Result<Response, Failure>>,
}

impl PendingReply {
    /// The JSON-RPC id of the request.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the reply: its `result`, or the server's `error` as [`Error::Server`]. No
    /// reply within the deadline is [`Error::Deadline`], a connection lost first is
    /// [`Error::Closed`] (or the connection's error); for a `transact` that was (possibly)
    /// written, either becomes [`Error::OutcomeUnknown`].
    pub async fn result(self) -> Result<Box<RawValue>, Error> {
        let resp = match self.rx.await {
            Ok(Ok(resp)) => resp,
            Ok(Err(failure)) => return Err(failure_error(&self.method, failure)),
            // The connection future was dropped (not spawned, aborted) with the request in
            // its hands.
            Err(_) => {
                return Err(failure_error(
                    &self.method,
                    Failure::Closed {
                        reason: "the connection task is gone".into(),
                        sent: true,
                    },
                ))
            }
        };
        resp.result
            .map_err(|e| Error::Server(ServerError::from_json(&e)))
    }

    /// Waits for the reply and decodes its result.
    pub async fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let method = self.method.clone();
        let raw = self.result().await?;
        serde_json::from_str(raw.get()).map_err(|e| Error::MalformedReply {
            method,
            message: e.to_string(),
        })
    }
}

/// The error for a request that got no reply. Only a `transact` can change the database, so
/// only it is "outcome unknown" when it may have reached the server.
fn failure_error(method: &str, failure: Failure) -> Error {
    let (cause, sent) = match failure {
        Failure::Closed { reason, sent } => (Error::Closed(reason), sent),
        Failure::Deadline { after, sent } => (
            Error::Deadline {
                method: method.to_string(),
                after,
            },
            sent,
        ),
    };
    if sent && method == "transact" {
        Error::OutcomeUnknown {
            method: method.to_string(),
            cause: Box::new(cause),
        }
    } else {
        cause
    }
}

impl Client {
    /// A client over an already open byte stream (any transport, e.g. a test's socket pair).
    pub fn over(
        transport: BoxTransport,
        remote: String,
        opts: &ConnectOptions,
    ) -> (Client, Connection) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        let connection = Connection::new(
            transport,
            rx,
            stats.clone(),
            TaskOptions {
                max_message: opts.max_message,
                inactivity_probe: opts.inactivity_probe,
                notification_budget: opts.notification_budget,
            },
        );
        let client = Client {
            inner: Arc::new(Inner {
                tx,
                next_id: AtomicU64::new(1),
                stats,
                remote,
                schemas: Mutex::new(HashMap::new()),
            }),
            timeout: opts.request_timeout,
        };
        (client, connection)
    }

    /// A handle on the same connection whose requests have deadline `timeout` (`None`: none),
    /// e.g. for a `transact` known to take long, or one blocked in a `wait` on purpose.
    pub fn with_request_timeout(&self, timeout: Option<Duration>) -> Client {
        Client {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// The deadline of requests made through this handle.
    pub fn request_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The remote this client is connected to.
    pub fn remote(&self) -> &str {
        &self.inner.remote
    }

    /// Traffic counters of the connection.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Whether the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.tx.is_closed()
    }

    /// Sends a request and returns at once; the reply is awaited on the [`PendingReply`].
    /// Encoding happens here, on the caller's task, so many callers encode in parallel.
    pub fn request(&self, method: &str, params: &impl Serialize) -> Result<PendingReply, Error> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = Request::new(id, method, params)?.encode()?;
        let (reply, rx) = oneshot::channel();
        let deadline = self.timeout.map(|d| (tokio::time::Instant::now() + d, d));
        self.inner
            .tx
            .send(Outgoing::Request {
                id,
                bytes,
                reply,
                deadline,
            })
            .map_err(|_| Error::Closed("the connection task is gone".into()))?;
        Ok(PendingReply {
            id,
            method: method.to_string(),
            rx,
        })
    }

    /// Sends a request and waits for its result.
    pub async fn call(
        &self,
        method: &str,
        params: &impl Serialize,
    ) -> Result<Box<RawValue>, Error> {
        self.request(method, params)?.result().await
    }

    /// `list_dbs` (RFC 7047 §4.1.1): the databases the server holds.
    pub async fn list_dbs(&self) -> Result<Vec<String>, Error> {
        self.request("list_dbs", &json!([]))?.decode().await
    }

    /// `get_schema` (§4.1.2), parsed.
    pub async fn get_schema(&self, db: &str) -> Result<DatabaseSchema, Error> {
        let raw = self.call("get_schema", &json!([db])).await?;
        Ok(DatabaseSchema::from_json_str(raw.get())?)
    }

    /// The schema of `db`, fetched once and cached for the life of this client.
    pub async fn schema(&self, db: &str) -> Result<Arc<DatabaseSchema>, Error> {
        if let Some(s) = self.lock_schemas().get(db) {
            return Ok(s.clone());
        }
        let s = Arc::new(self.get_schema(db).await?);
        self.lock_schemas().insert(db.to_string(), s.clone());
        Ok(s)
    }

    fn lock_schemas(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<DatabaseSchema>>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts).
        self.inner
            .schemas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets cached schemas (after a `set_db_change_aware` notice of a schema change).
    pub fn forget_schemas(&self) {
        self.lock_schemas().clear();
    }

    /// `transact` (§4.1.3): every operation is first checked against the schema (fetched and
    /// cached on first use); a value that does not fit is refused with
    /// [`Error::Constraint`] and nothing is sent. A transaction that did not commit is
    /// [`Error::Transact`], naming the failed operation.
    pub async fn transact(
        &self,
        db: &str,
        ops: &[Operation],
    ) -> Result<Vec<OperationResult>, Error> {
        let schema = self.schema(db).await?;
        for op in ops {
            op.validate(&schema)?;
        }
        self.transact_unchecked(db, ops).await
    }

    /// `transact` without the client-side schema check (the server still checks).
    pub async fn transact_unchecked(
        &self,
        db: &str,
        ops: &[Operation],
    ) -> Result<Vec<OperationResult>, Error> {
        self.start_transact(db, ops)?.finish(ops).await
    }

    /// Sends a `transact` without waiting (its id can be [`Client::cancel`]led); finish it with
    /// [`PendingTransact::finish`]. No schema check.
    pub fn start_transact(&self, db: &str, ops: &[Operation]) -> Result<PendingTransact, Error> {
        Ok(PendingTransact {
            reply: self.request("transact", &TransactParams { db, ops })?,
        })
    }

    /// `cancel` (§4.1.4): asks the server to give up on request `id` (a `transact` blocked
    /// in a `wait`); that request then fails with `canceled` — completed by the client, since
    /// ovsdb-server sends no reply for it.
    pub fn cancel(&self, id: u64) -> Result<(), Error> {
        let bytes = Notification::new("cancel", &json!([id]))?.encode()?;
        self.inner
            .tx
            .send(Outgoing::Cancel { id, bytes })
            .map_err(|_| Error::Closed("the connection task is gone".into()))
    }

    /// `echo` (§4.1.11): a round trip.
    pub async fn echo(&self) -> Result<(), Error> {
        let v: Vec<Value> = self.request("echo", &json!(["ping"]))?.decode().await?;
        if v != [json!("ping")] {
            return Err(Error::MalformedReply {
                method: "echo".into(),
                message: format!("echoed {v:?}"),
            });
        }
        Ok(())
    }

    /// `monitor` (§4.1.5): the initial contents as the raw `table-updates` reply; later changes
    /// arrive as `update` notifications.
    pub async fn monitor(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: &impl Serialize,
    ) -> Result<Box<RawValue>, Error> {
        self.call("monitor", &(db, monitor_id, requests)).await
    }

    /// `monitor_cond` (ovsdb-server(7)): conditional monitoring with `update2` notifications.
    pub async fn monitor_cond(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: &impl Serialize,
    ) -> Result<Box<RawValue>, Error> {
        self.call("monitor_cond", &(db, monitor_id, requests)).await
    }

    /// `monitor_cond_since`: resumes from `last_txn_id` when the server still has it (reply
    /// `[true, txn, changes since]`) or sends everything (`[false, txn, all]`); `update3`
    /// notifications follow.
    pub async fn monitor_cond_since(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: &impl Serialize,
        last_txn_id: Option<&str>,
    ) -> Result<Box<RawValue>, Error> {
        let last = last_txn_id.unwrap_or("00000000-0000-0000-0000-000000000000");
        self.call("monitor_cond_since", &(db, monitor_id, requests, last))
            .await
    }

    /// `monitor_cond_change`: replaces the conditions of a monitor (and renames it).
    pub async fn monitor_cond_change(
        &self,
        monitor_id: &Value,
        new_monitor_id: &Value,
        requests: &impl Serialize,
    ) -> Result<(), Error> {
        self.call(
            "monitor_cond_change",
            &(monitor_id, new_monitor_id, requests),
        )
        .await
        .map(drop)
    }

    /// `monitor_cancel` (§4.1.7).
    pub async fn monitor_cancel(&self, monitor_id: &Value) -> Result<(), Error> {
        self.call("monitor_cancel", &[monitor_id]).await.map(drop)
    }

    /// `lock` (§4.1.8): `true` when acquired now; otherwise a `locked` notification follows
    /// when it is.
    pub async fn lock(&self, name: &str) -> Result<bool, Error> {
        self.lock_call("lock", name).await
    }

    /// `steal` (§4.1.9): takes the lock from its owner (who gets `stolen`).
    pub async fn steal(&self, name: &str) -> Result<bool, Error> {
        self.lock_call("steal", name).await
    }

    /// `unlock` (§4.1.10).
    pub async fn unlock(&self, name: &str) -> Result<(), Error> {
        self.call("unlock", &[name]).await.map(drop)
    }

    async fn lock_call(&self, method: &str, name: &str) -> Result<bool, Error> {
        #[derive(serde::Deserialize)]
        struct Locked {
            locked: bool,
        }
        let r: Locked = self.request(method, &[name])?.decode().await?;
        Ok(r.locked)
    }

    /// `set_db_change_aware` (ovsdb-server(7)): stay connected across schema changes and
    /// database removal, told by notifications instead of being disconnected.
    pub async fn set_db_change_aware(&self, aware: bool) -> Result<(), Error> {
        self.call("set_db_change_aware", &[aware]).await.map(drop)
    }
}

/// A `transact` on its way.
#[derive(Debug)]
pub struct PendingTransact {
    reply: PendingReply,
}

impl PendingTransact {
    /// The request id, for [`Client::cancel`].
    pub fn id(&self) -> u64 {
        self.reply.id()
    }

    /// Waits for the reply and decodes it against `ops` (the operations that were sent).
    pub async fn finish(self, ops: &[Operation]) -> Result<Vec<OperationResult>, Error> {
        let raw = self.reply.result().await?;
        let v: Value = serde_json::from_str(raw.get()).map_err(|e| Error::MalformedReply {
            method: "transact".into(),
            message: e.to_string(),
        })?;
        match decode_results(ops, &v) {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(failed)) => Err(Error::Transact(failed)),
            Err(malformed) => Err(Error::MalformedReply {
                method: "transact".into(),
                message: malformed.0,
            }),
        }
    }
}

/// `[db, op, op, …]`, serialized straight from the borrowed operations.
struct TransactParams<'a> {
    db: &'a str,
    ops: &'a [Operation],
}

impl Serialize for TransactParams<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.ops.len() + 1))?;
        seq.serialize_element(self.db)?;
        for op in self.ops {
            seq.serialize_element(op)?;
        }
        seq.end()
    }
}
