//! The crate's error type.

/// Everything that can go wrong in this crate.
///
/// Which variants end a connection: [`Error::Framing`] and [`Error::Io`] always do (the byte
/// stream can no longer be trusted); [`Error::Decode`] and [`Error::InvalidMessage`] describe one
/// message whose text was framed correctly, so the stream itself is still in sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The byte stream could not be split into JSON texts; see [`FramingError`].
    #[error("framing error: {0}")]
    Framing(#[from] FramingError),

    /// A framed message is not valid JSON, or a field has the wrong JSON type (for example a
    /// `"method"` that is not a string).
    #[error("message is not valid JSON-RPC JSON: {0}")]
    Decode(#[source] serde_json::Error),

    /// A framed message is valid JSON but not a JSON-RPC 1.0 message as ovsdb-server sends
    /// them (for example a response with neither `"result"` nor `"error"`).
    #[error("malformed JSON-RPC message: {0}")]
    InvalidMessage(&'static str),

    /// A message could not be serialized.
    #[error("cannot encode JSON-RPC message: {0}")]
    Encode(#[source] serde_json::Error),

    /// Reading from or writing to the transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The connection is closed (by the server, by a transport error reported earlier, or
    /// because the [`crate::Connection`] future was dropped). For a `transact` that was
    /// (possibly) written before the connection ended the error is
    /// [`Error::OutcomeUnknown`] instead; a `Closed` transact was certainly not carried out.
    #[error("connection closed{}", if .0.is_empty() { String::new() } else { format!(": {}", .0) })]
    Closed(String),

    /// No reply came within the request's deadline
    /// ([`crate::ConnectOptions::request_timeout`]). The connection itself is still usable; a
    /// late reply is ignored. A `transact` that was (possibly) written is reported as
    /// [`Error::OutcomeUnknown`] with this as its cause.
    #[error("no reply to {method} within {after:?} (the request deadline)")]
    Deadline {
        /// The request's method.
        method: String,
        /// The deadline that passed.
        after: std::time::Duration,
    },

    /// A `transact` was (possibly) written to the server and no reply came: the connection was
    /// lost after sending, or the deadline passed. The transaction may or may not have
    /// committed; re-read the database (a [`crate::Session`]'s replica after it reconnects) to
    /// find out. See [`Error::is_outcome_unknown`].
    #[error("outcome of {method} unknown, it may or may not have been carried out: {cause}")]
    OutcomeUnknown {
        /// The request's method (`transact`).
        method: String,
        /// Why no reply came: [`Error::Closed`] (or another connection error) or
        /// [`Error::Deadline`].
        #[source]
        cause: Box<Error>,
    },

    /// The server broke the protocol in a way that makes the connection untrustworthy, such
    /// as a reply whose id answers no request of ours. Ends the connection.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// No server could be used: each remote tried and why (the OS error, "follower of cluster
    /// …", …). From [`crate::connect_with`] when every remote failed, and from
    /// [`crate::Session::client`].
    #[error("{}", unavailable_message(.db.as_deref(), *.waited, .tried))]
    Unavailable {
        /// The database asked for (`None` for a plain connection).
        db: Option<String>,
        /// How long was waited.
        waited: std::time::Duration,
        /// Each remote tried, with the last reason it could not be used.
        tried: Vec<(String, String)>,
    },

    /// The server answered a method with an error (`unknown database`, `canceled`, …).
    #[error("server error: {0}")]
    Server(#[from] crate::operation::ServerError),

    /// A transaction did not commit; which operation failed and why.
    #[error(transparent)]
    Transact(#[from] crate::operation::TransactError),

    /// A value did not fit its column; nothing was sent.
    #[error("refused before sending: {0}")]
    Constraint(#[from] crate::schema::ConstraintViolation),

    /// A schema could not be parsed.
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaParseError),

    /// A reply had the wrong shape for its request.
    #[error("malformed reply to {method}: {message}")]
    MalformedReply {
        /// The request's method.
        method: String,
        /// What was wrong.
        message: String,
    },

    /// A remote such as `tcp:127.0.0.1:6641` could not be parsed.
    #[error("invalid remote {remote:?}: {message}")]
    InvalidRemote {
        /// The remote as given.
        remote: String,
        /// What is wrong with it.
        message: String,
    },

    /// TLS could not be set up (certificates, keys, CA) or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),

    /// The server did not answer in time: the inactivity probe (ends the connection) or a
    /// connect that took too long. A request's own deadline is [`Error::Deadline`].
    #[error("timed out: {0}")]
    Timeout(String),

    /// A monitor reply or an `update`/`update2`/`update3` notification does not have the shape
    /// RFC 7047 and ovsdb-server(7) give it, or names a table or column that is not monitored.
    #[error("malformed table updates: {0}")]
    Update(String),

    /// An update does not fit the replica (an insert of a row it has, a modify or delete of a
    /// row it lacks): the replica no longer mirrors the server and must be refilled. Nothing
    /// of the update was applied.
    #[error("replica out of sync: {table} row {uuid}: {reason}")]
    OutOfSync {
        /// The table.
        table: String,
        /// The row.
        uuid: crate::notation::Uuid,
        /// What did not fit.
        reason: String,
    },
}

impl Error {
    /// Whether the connection is unusable and a new one is needed (as opposed to one request
    /// having failed).
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Error::Closed(_)
            | Error::Io(_)
            | Error::Framing(_)
            | Error::Timeout(_)
            | Error::Protocol(_) => true,
            Error::OutcomeUnknown { cause, .. } => cause.is_connection_lost(),
            _ => false,
        }
    }

    /// Whether a `transact` was (possibly) written to the server and no reply came (the
    /// connection was lost after sending, or the request deadline passed): the transaction may
    /// or may not have committed, and only re-reading the database tells. `false` for errors
    /// where the request certainly was not carried out (connection refused, no server,
    /// refused by the schema check, closed before it was sent) and for every reply the server
    /// gave.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }

    /// Whether the request deadline passed (directly or as the cause of
    /// [`Error::OutcomeUnknown`]).
    pub fn is_deadline(&self) -> bool {
        match self {
            Error::Deadline { .. } => true,
            Error::OutcomeUnknown { cause, .. } => cause.is_deadline(),
            _ => false,
        }
    }

    /// Whether no server could be reached or used ([`Error::Unavailable`]); nothing was sent.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

fn unavailable_message(
    db: Option<&str>,
    waited: std::time::Duration,
    tried: &[(String, String)],
) -> String {
    let mut s = match db {
        Some(db) => format!("no usable server for {db}"),
        None => "cannot connect".to_string(),
    };
    if !waited.is_zero() {
        s.push_str(&format!(" within {waited:.1?}"));
    }
    if tried.is_empty() {
        s.push_str(": no remote was tried yet");
    } else {
        let list: Vec<String> = tried.iter().map(|(r, why)| format!("{r}: {why}")).collect();
        s.push_str(": ");
        s.push_str(&list.join("; "));
    }
    s
}

/// Why a byte stream could not be split into JSON texts.
///
/// Every framing error is final: the splitter that reported it is poisoned and reports the same
/// error again on every later call, and the connection must be dropped, because there is no
/// reliable way to find the start of the next message after a framing error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A message did not end within `limit` bytes. The oversized message is never buffered whole:
    /// the error is raised as soon as byte `limit + 1` of the message is scanned.
    #[error("message exceeds the {limit}-byte limit")]
    MessageTooLarge {
        /// The configured maximum message size in bytes.
        limit: usize,
    },

    /// Between messages there was a byte that is neither JSON whitespace nor the `{` or `[` that
    /// starts a JSON-RPC message: a bare string, number or literal, a stray `}` or `]`, or
    /// non-JSON bytes.
    #[error(
        "unexpected byte {byte:#04x} ({shown}) at stream offset {offset}: \
         a message must start with '{{' or '['",
        shown = show_byte(*byte)
    )]
    UnexpectedTopLevel {
        /// The offending byte.
        byte: u8,
        /// Its offset from the start of the stream.
        offset: u64,
    },

    /// A `}` closed a `[`, or a `]` closed a `{`.
    #[error(
        "mismatched {found_shown} at stream offset {offset}: expected {expected_shown}",
        found_shown = show_byte(*found),
        expected_shown = show_byte(*expected)
    )]
    MismatchedClose {
        /// The closer the open bracket needed.
        expected: u8,
        /// The closer that was found.
        found: u8,
        /// Its offset from the start of the stream.
        offset: u64,
    },

    /// Objects and arrays were nested more than `limit` deep. No OVSDB message comes close, and
    /// serde_json refuses much shallower nesting at decode time anyway.
    #[error("message nests objects and arrays more than {limit} deep")]
    TooDeep {
        /// The maximum nesting depth.
        limit: usize,
    },

    /// The stream ended in the middle of a message.
    #[error("stream ended inside a message ({buffered} bytes buffered)")]
    Truncated {
        /// How many bytes of the unfinished message were buffered.
        buffered: usize,
    },
}

/// Renders a byte for an error message: printable ASCII quoted, anything else only described.
fn show_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", char::from(byte))
    } else {
        String::from("not printable ASCII")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_messages_name_the_byte_and_offset() {
        let e = FramingError::UnexpectedTopLevel {
            byte: b'}',
            offset: 7,
        };
        assert_eq!(
            e.to_string(),
            "unexpected byte 0x7d ('}') at stream offset 7: a message must start with '{' or '['"
        );
        let e = FramingError::UnexpectedTopLevel {
            byte: 0xff,
            offset: 0,
        };
        assert!(e.to_string().contains("0xff (not printable ASCII)"), "{e}");
        let e = FramingError::MismatchedClose {
            expected: b'}',
            found: b']',
            offset: 3,
        };
        assert_eq!(
            e.to_string(),
            "mismatched ']' at stream offset 3: expected '}'"
        );
    }

    #[test]
    fn predicates_tell_lost_replies_from_requests_never_sent() {
        let deadline = Error::Deadline {
            method: "transact".into(),
            after: std::time::Duration::from_secs(30),
        };
        let unknown_late = Error::OutcomeUnknown {
            method: "transact".into(),
            cause: Box::new(deadline),
        };
        assert!(unknown_late.is_outcome_unknown() && unknown_late.is_deadline());
        assert!(
            !unknown_late.is_connection_lost(),
            "a deadline leaves the connection up"
        );
        assert_eq!(
            unknown_late.to_string(),
            "outcome of transact unknown, it may or may not have been carried out: \
             no reply to transact within 30s (the request deadline)"
        );
        let unknown_lost = Error::OutcomeUnknown {
            method: "transact".into(),
            cause: Box::new(Error::Closed("the server closed the connection".into())),
        };
        assert!(unknown_lost.is_outcome_unknown() && unknown_lost.is_connection_lost());
        assert!(!unknown_lost.is_deadline());
        for certain in [
            Error::Closed("never sent".into()),
            Error::Unavailable {
                db: None,
                waited: std::time::Duration::ZERO,
                tried: vec![],
            },
            Error::Protocol("x".into()),
        ] {
            assert!(!certain.is_outcome_unknown(), "{certain}");
        }
    }

    #[test]
    fn unavailable_names_each_remote_and_why() {
        let e = Error::Unavailable {
            db: Some("OVN_Northbound".into()),
            waited: std::time::Duration::from_millis(2500),
            tried: vec![
                (
                    "unix:/x.sock".into(),
                    "No such file or directory (os error 2)".into(),
                ),
                (
                    "tcp:b:6641".into(),
                    "follower of cluster c1, leader is tcp:a:6641".into(),
                ),
            ],
        };
        assert!(e.is_unavailable());
        assert_eq!(
            e.to_string(),
            "no usable server for OVN_Northbound within 2.5s: \
             unix:/x.sock: No such file or directory (os error 2); \
             tcp:b:6641: follower of cluster c1, leader is tcp:a:6641"
        );
    }

    #[test]
    fn framing_error_converts_into_crate_error() {
        let e: Error = FramingError::MessageTooLarge { limit: 10 }.into();
        assert!(matches!(
            e,
            Error::Framing(FramingError::MessageTooLarge { limit: 10 })
        ));
        assert_eq!(
            e.to_string(),
            "framing error: message exceeds the 10-byte limit"
        );
    }
}
