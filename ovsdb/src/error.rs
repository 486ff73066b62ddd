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
