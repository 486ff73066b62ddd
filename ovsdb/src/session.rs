//! A long-lived session with a (possibly clustered) database: finds the RAFT leader, keeps a
//! [`Replica`] of the monitored tables, and reconnects with backoff when the connection drops
//! or the server stops leading, resuming the monitor with `monitor_cond_since` from the last
//! transaction id so a reconnect fetches only what changed.
//!
//! The failure modes this exists for (seen in libovsdb-based controllers): a cache lost or left
//! inconsistent after a RAFT leader change, full resyncs of a large database on every
//! reconnect, and writes sent to a stale follower.
//!
//! After a lost reply — [`Error::is_outcome_unknown`] from [`Session::transact`] or from a
//! [`Client`] of [`Session::client`] — the way to find out what happened is: call
//! [`Session::client`] again (it waits for the session to be connected to a leader with its
//! replica re-synced, which is after the transaction if it committed), then read the replica.
//!
//! At start-up [`Session::client`] fails fast: once every remote has been tried and none was
//! usable it returns [`Error::Unavailable`] naming each remote and why ("Connection refused",
//! "follower of cluster …"), unless [`SessionOptions::wait`] asks to keep trying. Two cases
//! wait the whole `timeout` instead, because a leader is likely to appear: a session that has
//! been connected (a failover), and a remote list of several members in which some member was
//! a follower or behind (an election may be under way: the leader just died). A single
//! follower named alone fails fast.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{Client, ConnectOptions};
use crate::monitor::{
    monitor_cond_params, monitor_cond_since_params, monitor_params, MonitorMethod, MonitorRequests,
    RowUpdate, UpdateNotification,
};
use crate::operation::{ErrorKind, Operation, OperationResult};
use crate::remote::Remote;
use crate::replica::{Change, Replica};
use crate::Error;

/// What a [`Session`] connects to and keeps.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Transport options of each connection.
    pub connect: ConnectOptions,
    /// The database (`OVN_Northbound`).
    pub db: String,
    /// Only use a cluster member that is the leader (the default: writes and fresh reads).
    pub leader_only: bool,
    /// Tables to keep in the replica; `None` keeps none (a write-only session).
    pub monitor: Option<MonitorRequests>,
    /// First delay before retrying after every remote failed; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest delay between rounds of attempts.
    pub backoff_max: Duration,
    /// How long [`Session::client`] keeps trying, from the session's start, while no remote
    /// has been usable yet (missing socket, connection refused, not the leader). Zero (the
    /// default): fail as soon as every remote has been tried once. Once the session has been
    /// connected, or while some member of a multi-member list is a follower (an election),
    /// `client()` waits its whole timeout (see the module docs).
    pub wait: Duration,
}

impl SessionOptions {
    /// Defaults for `db`: leader-only, no monitor, backoff 100 ms … 4 s.
    pub fn new(db: &str) -> SessionOptions {
        SessionOptions {
            connect: ConnectOptions::default(),
            db: db.to_string(),
            leader_only: true,
            monitor: None,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(4),
            wait: Duration::ZERO,
        }
    }

    /// Keep these tables in the replica.
    pub fn monitor(mut self, requests: MonitorRequests) -> Self {
        self.monitor = Some(requests);
        self
    }
}

/// Counters of a session (readable at any time).
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Connections that became usable (1 after the first sync; +1 per reconnect).
    pub connects: AtomicU64,
    /// Bytes of the last monitor reply (the initial sync or the resume).
    pub last_sync_bytes: AtomicU64,
    /// Rows in the last monitor reply.
    pub last_sync_rows: AtomicU64,
    /// Whether the last `monitor_cond_since` found its transaction (a delta, not a refetch).
    pub last_sync_resumed: AtomicBool,
    /// Highest RAFT index seen on a server we used (stale-replica detection).
    pub max_index: AtomicU64,
    /// Servers skipped because they were not the leader or were behind what we had seen.
    pub skipped: AtomicU64,
}

struct Shared {
    current: watch::Sender<State>,
    replica: RwLock<Option<Replica>>,
    changes: broadcast::Sender<Arc<[Change]>>,
    stats: SessionStats,
}

/// What [`Session::client`] waits on: the usable client, and why each remote is not.
#[derive(Debug, Clone, Default)]
struct State {
    client: Option<Client>,
    /// Per remote, in list order: the last reason it could not be used, or what is being done
    /// with it now.
    remotes: Vec<(String, String)>,
    /// Completed rounds in which no remote was usable.
    rounds_failed: u64,
    /// In the last failed round some member of a cluster, one of several remotes, was not
    /// its leader: an election may be under way (the leader just died), so start-up does not
    /// fail fast on it.
    leaderless: bool,
    /// Some remote was usable once.
    ever_connected: bool,
}

/// A self-healing connection to the leader of `db`, with a replica of the monitored tables.
/// Dropping it ends the background task and its connection.
pub struct Session {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    db: String,
    started: Instant,
    wait: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Starts connecting to `remotes` (a comma-separated list) in the background.
    pub fn start(remotes: &str, opts: SessionOptions) -> Result<Session, Error> {
        let list = Remote::parse_list(remotes)?;
        let (current, _) = watch::channel(State {
            remotes: list
                .iter()
                .map(|r| (r.to_string(), "not tried yet".to_string()))
                .collect(),
            ..State::default()
        });
        let (changes, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            current,
            replica: RwLock::new(None),
            changes,
            stats: SessionStats::default(),
        });
        let db = opts.db.clone();
        let wait = opts.wait;
        let task = tokio::spawn(run(shared.clone(), list, opts));
        Ok(Session {
            shared,
            task,
            db,
            started: Instant::now(),
            wait,
        })
    }

    /// The connected client, waiting up to `timeout` for a (leader) connection with its
    /// replica synced. Fails with [`Error::Unavailable`], naming each remote and why it could
    /// not be used: when `timeout` passes, or — while no remote has been usable since the
    /// session started — as soon as every remote has been tried and [`SessionOptions::wait`]
    /// has passed (at once by default: a missing socket, a refused connection or a lone
    /// follower is reported in milliseconds, not after `timeout`; a cluster in an election is
    /// waited for).
    pub async fn client(&self, timeout: Duration) -> Result<Client, Error> {
        // `None`: so far in the future that it never comes (a `Duration::MAX` wait).
        let give_up = Instant::now().checked_add(timeout);
        let wait_until = self.started.checked_add(self.wait);
        let mut rx = self.shared.current.subscribe();
        loop {
            let now = Instant::now();
            {
                let state = rx.borrow_and_update();
                if let Some(c) = state.client.as_ref().filter(|c| !c.is_closed()) {
                    return Ok(c.clone());
                }
                let waited_enough = wait_until.is_some_and(|w| now >= w);
                if !state.ever_connected
                    && state.rounds_failed > 0
                    && !state.leaderless
                    && waited_enough
                {
                    return Err(self.unavailable(&state, self.wait));
                }
            }
            if give_up.is_some_and(|g| now >= g) {
                return Err(self.unavailable(&rx.borrow(), timeout));
            }
            // Wake for whichever comes first: a change, the end of the start-up wait, the
            // timeout.
            let wake = [give_up, wait_until.filter(|w| *w > now)]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(Error::Closed("the session has ended".into()));
                    }
                }
                _ = sleep_until(wake) => {}
            }
        }
    }

    fn unavailable(&self, state: &State, waited: Duration) -> Error {
        Error::Unavailable {
            db: Some(self.db.clone()),
            waited,
            tried: state.remotes.clone(),
        }
    }

    /// `transact` on the session's database through the current connection. A reply lost
    /// after the request was (possibly) sent — connection lost, deadline passed — is
    /// [`Error::OutcomeUnknown`] ([`Error::is_outcome_unknown`]): the transaction may or may
    /// not have committed, so it is not retried blindly. Call [`Session::client`] again and
    /// read the replica to find out (or guard a retry with `wait`).
    pub async fn transact(
        &self,
        ops: &[Operation],
        timeout: Duration,
    ) -> Result<Vec<OperationResult>, Error> {
        let client = self.client(timeout).await?;
        client.transact(&self.db, ops).await
    }

    /// Read access to the replica (`None` before the first sync). Do not hold it across an
    /// `.await`.
    pub fn replica(&self) -> RwLockReadGuard<'_, Option<Replica>> {
        self.shared
            .replica
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The change feed: every batch of changes applied to the replica, in order (including
    /// the difference a full resync made). A receiver that lags loses batches and is told so.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[Change]>> {
        self.shared.changes.subscribe()
    }

    /// Counters.
    pub fn stats(&self) -> &SessionStats {
        &self.shared.stats
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn with_replica<T>(shared: &Shared, f: impl FnOnce(&mut Option<Replica>) -> T) -> T {
    let mut guard = shared
        .replica
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard)
}

fn publish(shared: &Shared, changes: Vec<Change>) {
    if !changes.is_empty() {
        let _ = shared.changes.send(changes.into());
    }
}

/// Records what is known about remote `idx` for [`Session::client`]'s errors.
fn set_status(shared: &Shared, idx: usize, why: String) {
    shared.current.send_modify(|s| {
        if let Some(slot) = s.remotes.get_mut(idx) {
            slot.1 = why;
        }
    });
}

async fn run(shared: Arc<Shared>, remotes: Vec<Remote>, opts: SessionOptions) {
    let mut backoff = opts.backoff_min;
    let mut next = 0usize;
    loop {
        let mut connected = false;
        let mut leaderless = false;
        // Cluster id → the remote seen leading it in this round, for "follower of …, leader
        // is …".
        let mut leaders: HashMap<String, String> = HashMap::new();
        for i in 0..remotes.len() {
            let idx = (next + i) % remotes.len();
            let remote = &remotes[idx];
            set_status(&shared, idx, "connecting".into());
            match attempt(
                &shared,
                idx,
                remote,
                &opts,
                &mut leaders,
                remotes.len() == 1,
            )
            .await
            {
                Ok(ended) => {
                    // It worked for a while and then ended: the next round starts with the
                    // following member (the one that just failed is likely down).
                    set_status(&shared, idx, ended);
                    connected = true;
                    next = idx + 1;
                    break;
                }
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "session attempt failed");
                    let member = matches!(&e, Error::Server(s)
                        if matches!(&s.kind, ErrorKind::NotLeader)
                            || matches!(&s.kind, ErrorKind::Other(k) if k == "stale"));
                    leaderless |= member && remotes.len() > 1;
                    set_status(&shared, idx, describe(&e));
                }
            }
        }
        shared.current.send_modify(|s| {
            s.client = None;
            if !connected {
                s.rounds_failed += 1;
                s.leaderless = leaderless;
            }
        });
        if connected {
            backoff = opts.backoff_min;
            continue;
        }
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(opts.backoff_max);
    }
}

/// `d` scaled by a factor in [0.5, 1.5), so that many clients that lost the same leader do
/// not retry in lockstep (a reconnect storm against the new leader).
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per process and per instance: enough spread, no extra crate.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(d.as_nanos() as u64);
    let r = (h.finish() % 1000) as f64 / 1000.0;
    d.mul_f64(0.5 + r)
}

/// One line saying why a remote could not be used.
fn describe(e: &Error) -> String {
    match e {
        Error::Io(io) => io.to_string(),
        Error::Server(s) if matches!(s.kind, ErrorKind::NotLeader | ErrorKind::Other(_)) => s
            .details
            .clone()
            .unwrap_or_else(|| s.kind.as_str().to_string()),
        other => other.to_string(),
    }
}

/// The `_Server` view of the database on one server.
struct DbStatus {
    clustered: bool,
    connected: bool,
    leader: bool,
    index: u64,
    /// The cluster id (clustered databases).
    cid: Option<String>,
}

/// The first UUID of a `_Server` column that is `["set", []]` or `["uuid", "…"]`.
fn uuid_of(v: &Value) -> Option<String> {
    match v {
        Value::Array(a) if a.first() == Some(&json!("uuid")) => {
            a.get(1).and_then(Value::as_str).map(str::to_string)
        }
        _ => None,
    }
}

async fn db_status(client: &Client, db: &str) -> Result<DbStatus, Error> {
    let raw = client
        .call(
            "transact",
            &json!(["_Server", {"op": "select", "table": "Database",
                "where": [["name", "==", db]],
                "columns": ["model", "connected", "leader", "index", "cid"]}]),
        )
        .await?;
    let v: Value = serde_json::from_str(raw.get()).map_err(|e| Error::MalformedReply {
        method: "transact _Server".into(),
        message: e.to_string(),
    })?;
    let row = v[0]["rows"].get(0).ok_or_else(|| {
        Error::Server(crate::ServerError {
            kind: ErrorKind::UnknownDatabase,
            details: Some(format!("the server does not hold {db}")),
        })
    })?;
    Ok(DbStatus {
        clustered: row["model"] == "clustered",
        connected: row["connected"] == true,
        leader: row["leader"] == true,
        index: row["index"].as_u64().unwrap_or(0),
        cid: uuid_of(&row["cid"]),
    })
}

const MAIN: &str = "ovn-vpc-main";
const SERVER: &str = "ovn-vpc-server";

/// One connection's life: connect, check leadership, sync the replica, then follow updates
/// until the connection ends or the server stops leading. `Ok` means it was usable, and says
/// why it ended.
async fn attempt(
    shared: &Arc<Shared>,
    idx: usize,
    remote: &Remote,
    opts: &SessionOptions,
    leaders: &mut HashMap<String, String>,
    single: bool,
) -> Result<String, Error> {
    let transport = crate::transport::open(
        remote,
        opts.connect.tls.as_ref(),
        opts.connect.connect_timeout,
    )
    .await?;
    let (client, mut connection) = Client::over(transport, remote.to_string(), &opts.connect);
    let mut notes = connection
        .take_notifications()
        .ok_or_else(|| Error::Closed("notifications already taken".into()))?;
    let mut conn_task = AbortOnDrop(tokio::spawn(connection));
    // Whatever happens below, the connection dies with this attempt (the guard aborts it).

    set_status(shared, idx, "connected, reading _Server".into());
    let status = db_status(&client, &opts.db).await?;
    if status.clustered {
        let seen = shared.stats.max_index.load(Ordering::Relaxed);
        if let (Some(cid), true) = (&status.cid, status.leader && status.connected) {
            leaders.insert(cid.clone(), remote.to_string());
        }
        if opts.leader_only && !(status.leader && status.connected) {
            shared.stats.skipped.fetch_add(1, Ordering::Relaxed);
            let cid = status.cid.as_deref().unwrap_or("?");
            let details = if !status.connected {
                format!(
                    "member of cluster {cid} that is not connected to it (no leader known to it)"
                )
            } else {
                match leaders.get(cid) {
                    Some(leader) => format!("follower of cluster {cid}, leader is {leader}"),
                    // Named alone, a follower will not become usable: say where to look.
                    None if single => format!(
                        "follower of cluster {cid}; its leader's address is not published in \
                         _Server: list every member"
                    ),
                    None => format!("follower of cluster {cid}, no leader seen"),
                }
            };
            return Err(Error::Server(crate::ServerError {
                kind: ErrorKind::NotLeader,
                details: Some(details),
            }));
        }
        if status.index < seen {
            // A member that lost touch with the cluster serves an old copy: using it would
            // move the replica backwards in time.
            shared.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Server(crate::ServerError {
                kind: ErrorKind::Other("stale".into()),
                details: Some(format!(
                    "at RAFT index {}, behind index {seen} already seen",
                    status.index
                )),
            }));
        }
        shared
            .stats
            .max_index
            .fetch_max(status.index, Ordering::Relaxed);
        // Be told when this server stops leading or loses the cluster.
        client
            .monitor_cond(
                "_Server",
                &json!(SERVER),
                &json!({"Database": [{"where": [["name", "==", opts.db]],
                    "columns": ["connected", "leader", "index"]}]}),
            )
            .await?;
    }

    let mut method = None;
    if let Some(requests) = &opts.monitor {
        set_status(shared, idx, "connected, syncing the replica".into());
        let schema = client.schema(&opts.db).await?;
        requests.validate(&schema)?;
        let last = with_replica(shared, |r| {
            let replica = r.get_or_insert_with(|| Replica::new(schema.clone()));
            replica.monitor(requests)?;
            Ok::<_, Error>(replica.last_txn_id().map(str::to_string))
        })?;
        let id = json!(MAIN);
        // Newest first; fall back for servers that do not know the method.
        let mut tried = Vec::new();
        for m in [
            MonitorMethod::MonitorCondSince,
            MonitorMethod::MonitorCond,
            MonitorMethod::Monitor,
        ] {
            let result = match m {
                MonitorMethod::MonitorCondSince => {
                    client
                        .call(
                            m.as_str(),
                            &monitor_cond_since_params(&opts.db, &id, requests, last.as_deref()),
                        )
                        .await
                }
                MonitorMethod::MonitorCond => {
                    client
                        .call(m.as_str(), &monitor_cond_params(&opts.db, &id, requests))
                        .await
                }
                MonitorMethod::Monitor => {
                    client
                        .call(m.as_str(), &monitor_params(&opts.db, &id, requests)?)
                        .await
                }
            };
            match result {
                Ok(raw) => {
                    let bytes = raw.get().len() as u64;
                    let applied = with_replica(shared, |r| match r.as_mut() {
                        Some(replica) => replica.apply_reply_text(m, raw.get()).map(Some),
                        None => Ok(None),
                    })?;
                    drop(raw);
                    shared.stats.last_sync_bytes.store(bytes, Ordering::Relaxed);
                    if let Some(applied) = applied {
                        shared
                            .stats
                            .last_sync_rows
                            .store(applied.rows as u64, Ordering::Relaxed);
                        shared
                            .stats
                            .last_sync_resumed
                            .store(applied.found, Ordering::Relaxed);
                        publish(shared, applied.changes);
                    }
                    method = Some(m);
                    break;
                }
                Err(Error::Server(e)) if matches!(&e.kind, ErrorKind::Other(s) if s == "unknown method") =>
                {
                    tried.push(m.as_str());
                }
                Err(e) => return Err(e),
            }
        }
        if method.is_none() {
            return Err(Error::MalformedReply {
                method: tried.join("/"),
                message: "the server supports no monitor method".into(),
            });
        }
    }

    shared.stats.connects.fetch_add(1, Ordering::Relaxed);
    set_status(shared, idx, "connected".into());
    shared.current.send_modify(|s| {
        s.client = Some(client.clone());
        s.ever_connected = true;
    });
    tracing::info!(%remote, db = %opts.db, "session connected");

    while let Some(note) = notes.recv().await {
        if !UpdateNotification::is_update(&note.method) {
            if note.method == "monitor_canceled" {
                // The database was removed or its schema changed: start over.
                with_replica(shared, |r| *r = None);
                return Ok(
                    "the server canceled the monitor (database removed or its schema changed)"
                        .into(),
                );
            }
            continue;
        }
        let update = UpdateNotification::decode(&note.method, note.params.get())?;
        if update.monitor_id == json!(SERVER) {
            let mut still_leading = true;
            for (_, row) in update.updates.rows("Database") {
                // A modify carries only the changed columns; an insert the whole row.
                let cols = match row {
                    RowUpdate::Modify(r) | RowUpdate::Insert(r) | RowUpdate::Initial(r) => r,
                    RowUpdate::OldNew { new: Some(r), .. } => r,
                    RowUpdate::Delete | RowUpdate::OldNew { new: None, .. } => {
                        still_leading = false;
                        continue;
                    }
                };
                let is_false = |c: &str| {
                    cols.get(c)
                        .and_then(|d| d.as_atom())
                        .and_then(|a| a.as_bool())
                        == Some(false)
                };
                if is_false("leader") || is_false("connected") {
                    still_leading = false;
                }
                if let Some(i) = cols
                    .get("index")
                    .and_then(|d| d.as_atom())
                    .and_then(|a| a.as_i64())
                {
                    shared
                        .stats
                        .max_index
                        .fetch_max(i.max(0) as u64, Ordering::Relaxed);
                }
            }
            if opts.leader_only && !still_leading {
                tracing::info!(%remote, "server stopped leading; reconnecting");
                return Ok("stopped leading".into());
            }
            continue;
        }
        if update.monitor_id != json!(MAIN) {
            continue;
        }
        let applied = with_replica(shared, |r| match r.as_mut() {
            Some(replica) => replica.apply_notification(&update),
            None => Ok(Vec::new()),
        });
        match applied {
            Ok(changes) => publish(shared, changes),
            Err(e) => {
                // The replica no longer matches the server: resync from scratch.
                tracing::warn!(error = %e, "replica out of sync; resyncing");
                with_replica(shared, |r| {
                    if let Some(replica) = r.as_mut() {
                        replica.set_last_txn_id(None);
                    }
                });
                return Ok(format!("replica out of sync ({e}), resyncing"));
            }
        }
    }
    // The notifications end when the connection does: say why.
    let why = match (&mut conn_task.0).await {
        Ok(Err(e)) => format!("connection lost: {e}"),
        _ => "connection closed".to_string(),
    };
    tracing::info!(%remote, reason = %why, "session connection ended");
    Ok(why)
}

struct AbortOnDrop(JoinHandle<Result<(), Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half_and_varies() {
        let d = Duration::from_millis(400);
        let samples: Vec<Duration> = (0..200).map(|_| jitter(d)).collect();
        assert!(samples.iter().all(|s| *s >= d / 2 && *s < d.mul_f64(1.5)));
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 50, "no spread: {}", distinct.len());
    }
}
