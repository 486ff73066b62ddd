//! A native async OVSDB client: RFC 7047 JSON-RPC and the Open vSwitch extensions.
//!
//! ovsdb-server speaks JSON-RPC 1.0 in its own dialect: no `"jsonrpc"` member, responses carry
//! both `result` and `error`, notifications have `"id": null`, and messages follow each other on
//! the stream with no delimiter. The client is built in layers, each doing one job:
//!
//! 1. **Framing** ([`JsonCodec`], [`JsonSplitter`]): cuts the byte stream into the text of one
//!    JSON value per message, tracking brackets and strings, with a size limit. No I/O.
//! 2. **Messages** ([`Message`]): decodes one text into a [`Request`], [`Response`] or
//!    [`Notification`] and encodes them back. No I/O.
//! 3. **Notation, schema, operations** ([`Datum`], [`DatabaseSchema`], [`Operation`]): values
//!    in canonical form, schema parsing and client-side checks, transaction operations and the
//!    decoding of their results with typed errors. No I/O.
//! 4. **Connection and client** ([`connect`], [`Client`], [`Connection`]): the task that owns
//!    the socket, always reading while it writes, matches responses to requests by id, enforces
//!    each request's deadline, answers the server's `echo`, probes a silent server, and hands
//!    out notifications within a memory budget.
//! 5. **Session** ([`Session`]): finds the RAFT leader, keeps a [`Replica`], reconnects.
//!
//! Failures say what is known: [`Error::is_outcome_unknown`] when a `transact` may have been
//! carried out but its reply was lost (re-read to find out), [`Error::is_deadline`],
//! [`Error::is_connection_lost`], [`Error::is_unavailable`] (no server usable; each remote
//! named with the reason).
//!
//! Splitting a stream that arrives in arbitrary pieces and decoding what it carries:
//!
//! ```
//! use ovsdb::{JsonSplitter, Message};
//!
//! let mut splitter = JsonSplitter::new();
//! // A reply and a notification, back to back, cut in the middle of a string.
//! splitter.push(br#"{"id":1,"result":["OVN_North"#);
//! assert!(splitter.next_message()?.is_none());
//! splitter.push(br#"bound"],"error":null}{"id":null,"method":"update2","params":["m",{}]}"#);
//!
//! let mut methods = Vec::new();
//! while let Some(text) = splitter.next_message()? {
//!     match Message::decode(&text)? {
//!         Message::Response(reply) => assert_eq!(reply.result.unwrap().get(), r#"["OVN_Northbound"]"#),
//!         Message::Notification(update) => methods.push(update.method),
//!         Message::Request(_) => unreachable!("the stream holds no request"),
//!     }
//! }
//! assert_eq!(methods, ["update2"]);
//! # Ok::<(), ovsdb::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod connection;
mod error;
mod framing;
mod message;
mod monitor;
mod notation;
mod operation;
mod remote;
mod replica;
mod schema;
mod session;
mod tls;
mod transport;

pub use client::{
    connect, connect_with, Client, ConnectOptions, PendingReply, PendingTransact,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use connection::{
    Connection, Notifications, Stats, DEFAULT_NOTIFICATION_BUDGET, REPLY_BACKLOG,
};
pub use error::{Error, FramingError};
pub use framing::{JsonCodec, JsonSplitter, DEFAULT_MAX_MESSAGE, MAX_DEPTH};
pub use message::{Message, Notification, Request, Response};
pub use monitor::{
    monitor_cancel_params, monitor_cond_change_params, monitor_cond_params,
    monitor_cond_since_params, monitor_params, ConditionChanges, MonitorMethod, MonitorParams,
    MonitorReply, MonitorRequest, MonitorRequests, MonitorSelect, RowUpdate, TableUpdate,
    TableUpdates, UpdateFormat, UpdateNotification, ZERO_TXN_ID,
};
pub use notation::{Atom, Datum, Uuid};
pub use operation::{
    decode_results, Condition, ErrorKind, Function, MalformedReply, Mutation, Mutator, Operation,
    OperationResult, Row, ServerError, TransactError,
};
pub use remote::{Remote, DEFAULT_PORT};
pub use replica::{Change, ChangeKind, Replica, ReplyApplied, RowRef, RowSnapshot, TableView};
pub use schema::{
    AtomicType, BaseType, ColumnSchema, ColumnType, ConstraintViolation, DatabaseSchema, RefType,
    SchemaParseError, TableSchema,
};
pub use session::{Session, SessionOptions, SessionStats};
pub use tls::TlsSettings;
pub use transport::{BoxTransport, Transport};
