//! Splitting a byte stream into JSON texts.
//!
//! ovsdb-server writes JSON-RPC messages back to back with no delimiter, sometimes with
//! whitespace between them: JSON objects are self-delimiting, so a reader finds the end of a
//! message by tracking `{}`/`[]` nesting while skipping over strings. This module does exactly
//! that and no more: it does not validate the JSON between the brackets (serde_json does that
//! when the message is decoded), so every byte is looked at once by the splitter and once by the
//! decoder.
//!
//! The scan state lives between calls, so a message cut at any byte (inside a string, right
//! after a backslash, inside a multi-byte UTF-8 sequence) resumes where it stopped: feeding `n`
//! bytes costs O(n) however they are chunked.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::error::{Error, FramingError};

/// Default for the largest message a splitter accepts: 256 MiB.
///
/// The first reply to a monitor request carries every monitored row, so on a large OVN
/// Northbound database it is by far the biggest message, and it is tens of MiB for deployments
/// with tens of thousands of logical ports. 256 MiB leaves room for growth while still bounding
/// what a broken or hostile peer can make us buffer. Lower it with
/// [`JsonCodec::with_max_message`] for databases known to be small (the local `Open_vSwitch`
/// database is a few hundred KiB).
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Deepest `{`/`[` nesting the splitter accepts.
///
/// OVSDB messages nest less than ten deep, and serde_json refuses more than 128 levels when the
/// message is decoded; this bound only keeps the splitter's own state a fixed size.
pub const MAX_DEPTH: usize = 1024;

/// Bits needed to remember, for each open bracket, whether it is `{` or `[`.
const OPEN_WORDS: usize = MAX_DEPTH / 64;

/// Splits a byte stream into complete top-level JSON texts; the [`Decoder`] under
/// [`tokio_util::codec::FramedRead`].
///
/// Each item is the text of one JSON object or array, without the whitespace around it, ready
/// for [`Message::decode`](crate::Message::decode). The codec keeps only scan state; the buffer
/// belongs to the caller (`FramedRead`, or [`JsonSplitter`] for code that is not async).
///
/// # Errors and poisoning
///
/// A framing error ([`FramingError`]) leaves the stream out of sync: the codec clears the buffer,
/// is poisoned, and returns the same error from every later call. Drop the connection.
#[derive(Debug, Clone)]
pub struct JsonCodec {
    max_message: usize,
    /// Bytes of the current message already scanned; 0 between messages.
    scanned: usize,
    /// Number of open `{`/`[` in the current message; 0 between messages.
    depth: usize,
    /// Bit `d` is set when the bracket opened at nesting depth `d` (0-based) is `[`.
    open: [u64; OPEN_WORDS],
    in_string: bool,
    /// The previous byte was a backslash inside a string, so this one is escaped.
    escaped: bool,
    /// Stream offset of the first byte of the buffer, for error messages.
    offset: u64,
    poisoned: Option<FramingError>,
}

impl Default for JsonCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonCodec {
    /// A codec accepting messages up to [`DEFAULT_MAX_MESSAGE`] bytes.
    pub fn new() -> Self {
        Self::with_max_message(DEFAULT_MAX_MESSAGE)
    }

    /// A codec accepting messages up to `max_message` bytes (the JSON text itself, not the
    /// whitespace between messages).
    pub fn with_max_message(max_message: usize) -> Self {
        Self {
            max_message,
            scanned: 0,
            depth: 0,
            open: [0; OPEN_WORDS],
            in_string: false,
            escaped: false,
            offset: 0,
            poisoned: None,
        }
    }

    /// The largest message this codec accepts, in bytes.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Whether a framing error has been reported; if so, every later call reports it again.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Removes the next complete JSON text from the front of `buf`, skipping whitespace before
    /// it; `Ok(None)` if `buf` holds no complete message yet.
    ///
    /// `buf` must be the same buffer on every call, with new bytes only appended to it: the
    /// codec remembers how far into it it has scanned.
    pub fn split(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        self.scan(buf).inspect_err(|error| {
            buf.clear();
            self.poisoned = Some(error.clone());
        })
    }

    /// Like [`split`](Self::split), for when no more bytes will arrive: an unfinished message
    /// left in `buf` is [`FramingError::Truncated`] instead of `Ok(None)`.
    pub fn split_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        match self.split(buf)? {
            Some(message) => Ok(Some(message)),
            // `split` skipped any whitespace, so whatever is left is part of a message.
            None if buf.is_empty() => Ok(None),
            None => {
                let error = FramingError::Truncated {
                    buffered: buf.len(),
                };
                buf.clear();
                self.poisoned = Some(error.clone());
                Err(error)
            }
        }
    }

    fn scan(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        if self.depth == 0 {
            let whitespace = buf.iter().take_while(|b| is_whitespace(**b)).count();
            buf.advance(whitespace);
            self.offset += whitespace as u64;
            match buf.first() {
                None => return Ok(None),
                Some(b'{' | b'[') => {}
                Some(&byte) => {
                    return Err(FramingError::UnexpectedTopLevel {
                        byte,
                        offset: self.offset,
                    })
                }
            }
        }
        // Scanning stops at the limit, so an oversized message is rejected as soon as its
        // first byte past the limit is buffered, never after reading all of it.
        let stop = buf.len().min(self.max_message);
        let Some(end) = self.scan_bytes(&buf[..stop])? else {
            if buf.len() > self.max_message {
                return Err(FramingError::MessageTooLarge {
                    limit: self.max_message,
                });
            }
            return Ok(None);
        };
        let message = buf.split_to(end).freeze();
        self.offset += end as u64;
        self.scanned = 0;
        Ok(Some(message))
    }

    /// Scans `bytes[self.scanned..]`, the continuation of a message that starts at `bytes[0]`;
    /// returns the message's length once its last closing bracket is seen.
    fn scan_bytes(&mut self, bytes: &[u8]) -> Result<Option<usize>, FramingError> {
        for (i, &byte) in bytes.iter().enumerate().skip(self.scanned) {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.open_bracket(byte == b'[')?,
                b'}' | b']' => {
                    self.close_bracket(byte, self.offset + i as u64)?;
                    if self.depth == 0 {
                        return Ok(Some(i + 1));
                    }
                }
                _ => {}
            }
        }
        self.scanned = bytes.len();
        Ok(None)
    }

    fn open_bracket(&mut self, is_array: bool) -> Result<(), FramingError> {
        if self.depth >= MAX_DEPTH {
            return Err(FramingError::TooDeep { limit: MAX_DEPTH });
        }
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if is_array {
            self.open[word] |= 1 << bit;
        } else {
            self.open[word] &= !(1 << bit);
        }
        self.depth += 1;
        Ok(())
    }

    fn close_bracket(&mut self, found: u8, offset: u64) -> Result<(), FramingError> {
        // `scan` only starts a message on an opening bracket, so depth is at least 1 here; the
        // check keeps a logic error from becoming an underflow panic.
        let Some(depth) = self.depth.checked_sub(1) else {
            return Err(FramingError::UnexpectedTopLevel {
                byte: found,
                offset,
            });
        };
        let is_array = self.open[depth / 64] >> (depth % 64) & 1 == 1;
        let expected = if is_array { b']' } else { b'}' };
        if found != expected {
            return Err(FramingError::MismatchedClose {
                expected,
                found,
                offset,
            });
        }
        self.depth = depth;
        Ok(())
    }
}

/// JSON's insignificant whitespace (RFC 8259 §2).
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

impl Decoder for JsonCodec {
    type Item = Bytes;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        Ok(self.split(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        Ok(self.split_eof(src)?)
    }
}

/// A [`JsonCodec`] with its own buffer, for feeding bytes by hand.
///
/// ```
/// use ovsdb::JsonSplitter;
///
/// let mut splitter = JsonSplitter::new();
/// splitter.push(br#"{"id":1,"result":["a}"],"#);
/// assert_eq!(splitter.next_message()?, None);
/// splitter.push(br#""error":null} {"id""#);
/// let first = splitter.next_message()?.expect("a complete message");
/// assert_eq!(&first[..], br#"{"id":1,"result":["a}"],"error":null}"#);
/// assert_eq!(splitter.next_message()?, None);
/// # Ok::<(), ovsdb::FramingError>(())
/// ```
///
/// Like the codec, a splitter that has reported an error is poisoned: it ignores pushed bytes
/// and reports the same error again.
#[derive(Debug, Clone, Default)]
pub struct JsonSplitter {
    buf: BytesMut,
    codec: JsonCodec,
}

impl JsonSplitter {
    /// A splitter accepting messages up to [`DEFAULT_MAX_MESSAGE`] bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A splitter accepting messages up to `max_message` bytes.
    pub fn with_max_message(max_message: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            codec: JsonCodec::with_max_message(max_message),
        }
    }

    /// Appends bytes received from the peer. Call [`next_message`](Self::next_message) until it
    /// returns `Ok(None)` before pushing much more: the size limit is enforced when messages are
    /// taken, so a single huge push is buffered whole.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.codec.is_poisoned() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete message, or `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FramingError> {
        self.codec.split(&mut self.buf)
    }

    /// Like [`next_message`](Self::next_message), once the peer has closed the stream: an
    /// unfinished message is [`FramingError::Truncated`]. Call until it returns `Ok(None)`.
    pub fn next_message_at_eof(&mut self) -> Result<Option<Bytes>, FramingError> {
        self.codec.split_eof(&mut self.buf)
    }

    /// Bytes pushed but not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether a framing error has been reported.
    pub fn is_poisoned(&self) -> bool {
        self.codec.is_poisoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What a splitter made of a stream: the messages, then the error that stopped it, if any.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        messages: Vec<Vec<u8>>,
        error: Option<FramingError>,
    }

    /// Feeds `chunks` one at a time, taking every message after each, then ends the stream.
    fn split_chunks<'a>(max_message: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
        let mut splitter = JsonSplitter::with_max_message(max_message);
        let mut messages = Vec::new();
        let mut drain = |splitter: &mut JsonSplitter, eof: bool| -> Result<(), FramingError> {
            loop {
                let next = if eof {
                    splitter.next_message_at_eof()?
                } else {
                    splitter.next_message()?
                };
                match next {
                    Some(message) => messages.push(message.to_vec()),
                    None => return Ok(()),
                }
            }
        };
        let mut result = Ok(());
        for chunk in chunks {
            splitter.push(chunk);
            result = drain(&mut splitter, false);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = drain(&mut splitter, true);
        }
        Outcome {
            messages,
            error: result.err(),
        }
    }

    fn split_whole(stream: &[u8]) -> Outcome {
        split_chunks(DEFAULT_MAX_MESSAGE, [stream])
    }

    fn ok(messages: &[&str]) -> Outcome {
        Outcome {
            messages: messages.iter().map(|m| m.as_bytes().to_vec()).collect(),
            error: None,
        }
    }

    /// Messages covering what can fool a splitter: nesting, escaped quotes, escaped backslashes
    /// right before a closing quote, brackets inside strings, and multi-byte UTF-8.
    const SAMPLE: &[&str] = &[
        r#"{"id":1,"result":[{"rows":[{"name":"ls-\"quoted\"","ext":"a\\"}]}],"error":null}"#,
        r#"{"method":"update","params":["mon",{"T":{"u":{"new":{"s":"}]{[ brackets ]}","b":"\\\\","e":"\\\"","q":"\""}}}}],"id":null}"#,
        r#"[1,[2,[3,{}]],{"a":[]},"]"]"#,
        r#"{"uni":"héllo ☃ 𝄞 \u00e9 \ud834\udd1e","id":"echo"}"#,
        r#"{}"#,
        r#"{"s":"\"}]","b":"\\","c":"}]\\\"}]"}"#,
        r#"{"id":"echo","method":"echo","params":[]}"#,
    ];

    /// SAMPLE joined with assorted whitespace, including none.
    fn sample_stream() -> Vec<u8> {
        let separators = [" \n\t", "", "\r\n", "  ", "\n", "", " "];
        let mut stream = b"\n ".to_vec();
        for (message, separator) in SAMPLE.iter().zip(separators) {
            stream.extend_from_slice(message.as_bytes());
            stream.extend_from_slice(separator.as_bytes());
        }
        stream
    }

    #[test]
    fn sample_messages_are_valid_json() {
        for message in SAMPLE {
            serde_json::from_str::<Value>(message).expect(message);
        }
    }

    #[test]
    fn splits_sample_in_one_chunk() {
        assert_eq!(split_whole(&sample_stream()), ok(SAMPLE));
    }

    #[test]
    fn splits_sample_at_every_split_point() {
        let stream = sample_stream();
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            assert_eq!(split_chunks(usize::MAX, [a, b]), ok(SAMPLE), "split at {i}");
        }
    }

    #[test]
    fn splits_sample_at_every_pair_of_split_points() {
        let stream = sample_stream();
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let chunks = [&stream[..i], &stream[i..j], &stream[j..]];
                assert_eq!(
                    split_chunks(usize::MAX, chunks),
                    ok(SAMPLE),
                    "split at {i}, {j}"
                );
            }
        }
    }

    #[test]
    fn splits_sample_byte_at_a_time() {
        let stream = sample_stream();
        assert_eq!(split_chunks(usize::MAX, stream.chunks(1)), ok(SAMPLE));
    }

    #[test]
    fn messages_are_returned_as_soon_as_complete() {
        let mut splitter = JsonSplitter::new();
        splitter.push(br#"{"a":"\\"}"#);
        assert_eq!(
            splitter.next_message().unwrap().unwrap(),
            &br#"{"a":"\\"}"#[..]
        );
        splitter.push(br#"{"a":"\""#);
        assert_eq!(splitter.next_message(), Ok(None));
        splitter.push(b"}");
        assert_eq!(
            splitter.next_message(),
            Ok(None),
            "the brace is inside the string"
        );
        splitter.push(b"\"}");
        assert_eq!(
            splitter.next_message().unwrap().unwrap(),
            &br#"{"a":"\"}"}"#[..]
        );
        assert_eq!(splitter.buffered(), 0);
    }

    #[test]
    fn whitespace_only_and_empty_streams_have_no_messages() {
        assert_eq!(split_whole(b""), ok(&[]));
        assert_eq!(split_whole(b" \r\n\t \n"), ok(&[]));
    }

    #[test]
    fn message_of_exactly_the_limit_is_accepted() {
        let message = r#"{"a":"0123456789"}"#;
        assert_eq!(
            split_chunks(message.len(), [message.as_bytes()]),
            ok(&[message])
        );
    }

    #[test]
    fn oversized_message_is_rejected() {
        let message = br#"{"a":"0123456789"}"#;
        let limit = message.len() - 1;
        let expected = Outcome {
            messages: vec![b"{}".to_vec()],
            error: Some(FramingError::MessageTooLarge { limit }),
        };
        let mut stream = b"{} ".to_vec();
        stream.extend_from_slice(message);
        assert_eq!(split_chunks(limit, [&stream[..]]), expected);
        assert_eq!(split_chunks(limit, stream.chunks(1)), expected);
    }

    #[test]
    fn oversized_message_is_rejected_before_it_ends() {
        let mut splitter = JsonSplitter::with_max_message(8);
        splitter.push(b"  {\"a\":\"01");
        assert_eq!(
            splitter.next_message(),
            Ok(None),
            "8 bytes of message so far"
        );
        splitter.push(b"2");
        assert_eq!(
            splitter.next_message(),
            Err(FramingError::MessageTooLarge { limit: 8 })
        );
        assert_eq!(splitter.buffered(), 0, "the buffer is released");
    }

    #[test]
    fn oversized_message_is_not_buffered_by_the_codec() {
        // FramedRead keeps appending to the buffer while decode returns Ok(None): the codec must
        // stop that as soon as the limit is passed, so the buffer never grows past
        // limit + one read.
        let mut codec = JsonCodec::with_max_message(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"[");
        let mut reads = 0;
        let error = loop {
            buf.extend_from_slice(&[b'1'; 100]);
            reads += 1;
            match codec.decode(&mut buf) {
                Ok(None) => assert!(buf.len() <= 1024, "{} bytes buffered", buf.len()),
                Ok(Some(_)) => panic!("no message is complete"),
                Err(error) => break error,
            }
        };
        assert_eq!(reads, 11);
        assert!(matches!(
            error,
            Error::Framing(FramingError::MessageTooLarge { limit: 1024 })
        ));
    }

    #[test]
    fn non_object_top_level_values_are_rejected() {
        for (stream, byte) in [
            (&b"]"[..], b']'),
            (b"}", b'}'),
            (b"\"x\"", b'"'),
            (b"123", b'1'),
            (b"-1", b'-'),
            (b"true", b't'),
            (b"null", b'n'),
            (b"\xff{}", 0xff),
            (b"\0", 0),
        ] {
            assert_eq!(
                split_whole(stream),
                Outcome {
                    messages: vec![],
                    error: Some(FramingError::UnexpectedTopLevel { byte, offset: 0 }),
                },
                "{stream:?}"
            );
        }
    }

    #[test]
    fn stray_closer_after_a_message_is_rejected_at_its_offset() {
        assert_eq!(
            split_whole(br#" {"a":1}} "#),
            Outcome {
                messages: vec![br#"{"a":1}"#.to_vec()],
                error: Some(FramingError::UnexpectedTopLevel {
                    byte: b'}',
                    offset: 8
                }),
            }
        );
    }

    #[test]
    fn mismatched_closers_are_rejected() {
        assert_eq!(
            split_whole(b"{}\n{\"a\":[1}]"),
            Outcome {
                messages: vec![b"{}".to_vec()],
                error: Some(FramingError::MismatchedClose {
                    expected: b']',
                    found: b'}',
                    offset: 10
                }),
            }
        );
        assert_eq!(
            split_whole(b"[{]}").error,
            Some(FramingError::MismatchedClose {
                expected: b'}',
                found: b']',
                offset: 2
            })
        );
    }

    #[test]
    fn truncated_streams_are_rejected_at_eof() {
        for (stream, buffered) in [
            (&b"{\"a\":"[..], 5),
            (b"{\"a\":\"}", 7),
            (b"{\"a\":\"\\", 7),
            (b"{} [[[] ", 5),
            (b"{", 1),
        ] {
            let outcome = split_whole(stream);
            assert_eq!(
                outcome.error,
                Some(FramingError::Truncated { buffered }),
                "{stream:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_inside_a_message_is_left_to_the_decoder() {
        assert_eq!(
            split_whole(b"{\"\xff\xfe\":\"\xc3\"}").messages,
            vec![b"{\"\xff\xfe\":\"\xc3\"}".to_vec()]
        );
    }

    #[test]
    fn nesting_up_to_max_depth_is_accepted() {
        let mut stream = vec![b'['; MAX_DEPTH];
        stream.extend(vec![b']'; MAX_DEPTH]);
        assert_eq!(split_whole(&stream).messages, vec![stream.clone()]);
        let mut stream = vec![b'{'; MAX_DEPTH + 1];
        stream.extend(vec![b'}'; MAX_DEPTH + 1]);
        assert_eq!(
            split_whole(&stream).error,
            Some(FramingError::TooDeep { limit: MAX_DEPTH })
        );
    }

    #[test]
    fn bracket_kinds_are_remembered_across_words_of_the_stack() {
        // Alternate kinds so every bit of the 64-bit words is exercised both ways.
        let opens: Vec<u8> = (0..200)
            .map(|i| if i % 3 == 0 { b'[' } else { b'{' })
            .collect();
        let mut stream = opens.clone();
        stream.extend(
            opens
                .iter()
                .rev()
                .map(|&b| if b == b'[' { b']' } else { b'}' }),
        );
        assert_eq!(split_whole(&stream).messages, vec![stream.clone()]);
    }

    #[test]
    fn errors_poison_the_splitter() {
        let mut splitter = JsonSplitter::new();
        splitter.push(b"]{}");
        let error = FramingError::UnexpectedTopLevel {
            byte: b']',
            offset: 0,
        };
        assert_eq!(splitter.next_message(), Err(error.clone()));
        assert!(splitter.is_poisoned());
        splitter.push(b"{}");
        assert_eq!(splitter.buffered(), 0, "pushes are ignored once poisoned");
        assert_eq!(splitter.next_message(), Err(error.clone()));
        assert_eq!(splitter.next_message_at_eof(), Err(error));
    }

    #[test]
    fn codec_decodes_through_the_decoder_trait() {
        let mut codec = JsonCodec::new();
        let mut buf = BytesMut::from(&b" {\"a\":1}\n[2] {"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"{\"a\":1}"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"[2]"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"} ");
        assert_eq!(codec.decode_eof(&mut buf).unwrap().unwrap(), &b"{}"[..]);
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"{");
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(Error::Framing(FramingError::Truncated { buffered: 1 }))
        ));
    }

    /// Any JSON value, with strings rich in the characters the splitter must not trip over.
    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            r#"[\\"{}\[\] a\u{e9}\u{1d11e}]{0,12}"#.prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((r#"[\\"}\]a]{0,4}"#, inner), 0..8)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// A stream and the messages in it: JSON objects, compact or pretty-printed, with optional
    /// whitespace between them.
    fn arb_stream() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
        let message =
            (arb_json(), any::<bool>(), "[ \t\r\n]{0,3}").prop_map(|(value, pretty, separator)| {
                let object = serde_json::json!({ "id": 1, "result": value });
                let text = if pretty {
                    serde_json::to_vec_pretty(&object)
                } else {
                    serde_json::to_vec(&object)
                };
                (text.expect("a Value always serializes"), separator)
            });
        prop::collection::vec(message, 0..6).prop_map(|messages| {
            let mut stream = Vec::new();
            for (text, separator) in &messages {
                stream.extend_from_slice(text);
                stream.extend_from_slice(separator.as_bytes());
            }
            (stream, messages.into_iter().map(|(text, _)| text).collect())
        })
    }

    /// Cuts `bytes` at the given points (taken modulo its length).
    fn cut(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for point in points.into_iter().chain([bytes.len()]) {
            chunks.push(bytes[start..point].to_vec());
            start = point;
        }
        chunks
    }

    proptest! {
        #[test]
        fn returns_exactly_the_concatenated_messages(
            (stream, messages) in arb_stream(),
            points in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let chunks = cut(&stream, &points);
            let outcome = split_chunks(usize::MAX, chunks.iter().map(Vec::as_slice));
            prop_assert_eq!(outcome, Outcome { messages, error: None });
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_chunking_does_not_matter(
            stream in prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(&b"{}[]\"\\ :,a"[..]),
                ],
                0..256,
            ),
            points in prop::collection::vec(any::<usize>(), 0..8),
            max_message in 1usize..300,
        ) {
            let chunks = cut(&stream, &points);
            let chunked = split_chunks(max_message, chunks.iter().map(Vec::as_slice));
            let whole = split_chunks(max_message, [&stream[..]]);
            prop_assert_eq!(chunked, whole);
        }
    }
}
