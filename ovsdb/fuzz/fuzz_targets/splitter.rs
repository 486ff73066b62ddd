//! Feeds arbitrary bytes, cut into arbitrary chunks, through the splitter and decodes every
//! message it returns. Beyond "never panics", it checks that chunking does not change the
//! outcome: the same bytes fed in one piece must give the same messages and the same error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ovsdb::{FramingError, JsonSplitter, Message};

/// Small enough that the fuzzer reaches the size limit, large enough for real messages.
const MAX_MESSAGE: usize = 4096;

fn split<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, Option<FramingError>) {
    let mut splitter = JsonSplitter::with_max_message(MAX_MESSAGE);
    let mut messages = Vec::new();
    let mut drain = |splitter: &mut JsonSplitter, eof: bool| -> Result<(), FramingError> {
        loop {
            let next = if eof {
                splitter.next_message_at_eof()?
            } else {
                splitter.next_message()?
            };
            let Some(text) = next else { return Ok(()) };
            if let Ok(message) = Message::decode(&text) {
                // What decodes must encode and decode again.
                let encoded = message.encode().expect("a decoded message encodes");
                Message::decode(&encoded).expect("an encoded message decodes");
            }
            messages.push(text.to_vec());
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
    (messages, result.err())
}

fuzz_target!(|chunks: Vec<Vec<u8>>| {
    let chunked = split(chunks.iter().map(Vec::as_slice));
    let whole = chunks.concat();
    assert_eq!(chunked, split([whole.as_slice()]));
});
