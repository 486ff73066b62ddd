//! A linear pre-scan of YAML text, before libyaml sees it: how deep each document nests, and
//! byte order marks at document starts. It does not parse YAML; it tracks just enough (quoted
//! scalars, comments, block scalars, flow brackets, block indentation, document markers) to
//! bound the nesting from above, so that a document libyaml would take minutes over (its cost
//! grows with the square of the flow nesting) is refused in microseconds. Real manifests nest a
//! dozen levels; the estimate may exceed the true depth by one per line, never by more.

use std::borrow::Cow;

const BOM: char = '\u{feff}';

/// A document nested deeper than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooDeep {
    /// 1-based document index, as serde_yaml counts documents.
    pub(super) document: usize,
    /// 1-based line.
    pub(super) line: usize,
}

/// `---` or `...` at column 0, alone or followed by whitespace.
fn marker(line: &[u8]) -> Option<u8> {
    let head = line.get(..3)?;
    let end = line
        .get(3)
        .is_none_or(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
    match head {
        b"---" if end => Some(b'-'),
        b"..." if end => Some(b'.'),
        _ => None,
    }
}

fn blank_or_comment(line: &str) -> bool {
    let t = line.trim_start_matches([' ', '\t']);
    t.trim_end().is_empty() || t.starts_with('#')
}

/// `text` without the byte order marks YAML allows: at the start of the stream and before each
/// document (after a `---` / `...` line, or right before one).
pub(super) fn strip_boms(text: &str) -> Cow<'_, str> {
    if !text.contains(BOM) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut doc_start = true;
    for line in text.split_inclusive('\n') {
        let mut l = line;
        if let Some(rest) = l.strip_prefix(BOM) {
            if doc_start || marker(rest.as_bytes()).is_some() {
                l = rest;
            }
        }
        doc_start = marker(l.as_bytes()).is_some() || (doc_start && blank_or_comment(l));
        out.push_str(l);
    }
    Cow::Owned(out)
}

/// Where a quoted scalar that opened before `from` ends (the index of its closing quote).
fn quote_end(b: &[u8], mut j: usize, q: u8) -> Option<usize> {
    while j < b.len() {
        match b[j] {
            b'\\' if q == b'"' => j += 2,
            b'\'' if q == b'\'' && b.get(j + 1) == Some(&b'\'') => j += 2,
            c if c == q => return Some(j),
            _ => j += 1,
        }
    }
    None
}

fn space_or_end(b: &[u8], j: usize) -> bool {
    b.get(j).is_none_or(|c| matches!(c, b' ' | b'\t' | b'\r'))
}

/// Checks that no document of `text` nests deeper than `max` collections.
pub(super) fn check_depth(text: &str, max: usize) -> Result<(), TooDeep> {
    let mut document = 0usize;
    let mut in_doc = false;
    let mut flow = 0usize;
    // Columns of the open block collections, innermost last.
    let mut block: Vec<usize> = Vec::new();
    // Inside a quoted scalar that continues on the next line.
    let mut quote: Option<u8> = None;
    // Inside a block scalar (`|`, `>`): lines indented more than this column are its text.
    let mut scalar: Option<isize> = None;
    for (i, line) in text.split('\n').enumerate() {
        let b = line.as_bytes();
        let too_deep = TooDeep {
            document: document.max(1),
            line: i + 1,
        };
        let mut j = 0;
        if let Some(m) = marker(b) {
            // Markers end everything open, even an unclosed quote (YAML forbids them inside).
            (flow, quote, scalar) = (0, None, None);
            block.clear();
            if m == b'.' {
                in_doc = false;
                continue;
            }
            document += 1;
            in_doc = true;
            j = 3;
        }
        let indent = j + b[j..].iter().take_while(|c| **c == b' ').count();
        if let Some(col) = scalar {
            let rest = &b[indent..];
            if rest.iter().all(|c| c.is_ascii_whitespace()) || indent as isize > col {
                continue;
            }
            scalar = None;
        }
        let mut node = true;
        if let Some(q) = quote {
            match quote_end(b, j, q) {
                Some(k) => {
                    j = k + 1;
                    quote = None;
                    node = false;
                }
                None => continue,
            }
        } else {
            j = indent;
            while j < b.len() && matches!(b[j], b' ' | b'\t') {
                j += 1;
            }
            if j >= b.len() || matches!(b[j], b'#' | b'\r') {
                continue; // blank or comment only
            }
            if !in_doc {
                if b[j] == b'%' && j == 0 {
                    continue; // a directive
                }
                document += 1;
                in_doc = true;
            }
            if flow == 0 {
                while block.last().is_some_and(|c| *c > j) {
                    block.pop();
                }
                if block.last().is_none_or(|c| *c < j) {
                    block.push(j);
                }
            }
        }
        let too_deep = TooDeep {
            document: document.max(1),
            ..too_deep
        };
        if block.len() + flow > max {
            return Err(too_deep);
        }
        while j < b.len() {
            let c = b[j];
            match c {
                b' ' | b'\t' | b'\r' => j += 1,
                b'#' if j == 0 || matches!(b[j - 1], b' ' | b'\t') => break,
                b'"' | b'\'' if node => match quote_end(b, j + 1, c) {
                    Some(k) => {
                        j = k + 1;
                        node = false;
                    }
                    None => {
                        quote = Some(c);
                        break;
                    }
                },
                b'[' | b'{' if node || flow > 0 => {
                    flow += 1;
                    if block.len() + flow > max {
                        return Err(too_deep);
                    }
                    node = true;
                    j += 1;
                }
                b']' | b'}' if flow > 0 => {
                    flow -= 1;
                    node = false;
                    j += 1;
                }
                b',' if flow > 0 => {
                    node = true;
                    j += 1;
                }
                b'-' | b'?' if node && flow == 0 && space_or_end(b, j + 1) => {
                    // A compact nested collection may start after the indicator.
                    let mut k = j + 1;
                    while k < b.len() && matches!(b[k], b' ' | b'\t') {
                        k += 1;
                    }
                    if k < b.len() && !matches!(b[k], b'#' | b'\r') && block.last() < Some(&k) {
                        block.push(k);
                        if block.len() + flow > max {
                            return Err(too_deep);
                        }
                    }
                    node = true;
                    j += 1;
                }
                b':' if space_or_end(b, j + 1)
                    || (flow > 0
                        && matches!(b.get(j + 1), Some(b',' | b'[' | b']' | b'{' | b'}'))) =>
                {
                    node = true;
                    j += 1;
                }
                b'|' | b'>' if node && flow == 0 => {
                    scalar = Some(block.last().map_or(-1, |c| *c as isize));
                    break;
                }
                b'&' | b'!' | b'*' if node => {
                    // An anchor or tag precedes a node; an alias is one.
                    while j < b.len()
                        && !matches!(b[j], b' ' | b'\t' | b'\r')
                        && !(flow > 0 && matches!(b[j], b',' | b'[' | b']' | b'{' | b'}'))
                    {
                        j += 1;
                    }
                    node = c != b'*';
                }
                _ => {
                    node = false;
                    j += 1;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, max: usize) -> bool {
        check_depth(text, max).is_ok()
    }

    #[test]
    fn flow_nesting_is_bounded_in_linear_time() {
        let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        assert_eq!(
            check_depth(&deep, 128),
            Err(TooDeep {
                document: 1,
                line: 1
            })
        );
        let maps = format!("{}x{}\n", "{a: ".repeat(100_000), "}".repeat(100_000));
        assert!(!depth_ok(&maps, 128));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(depth_ok(
            &format!("a: {}{}\n", "[".repeat(100), "]".repeat(100)),
            128
        ));
    }

    #[test]
    fn block_nesting_counts_indentation_and_compact_sequences() {
        let mut y = String::new();
        for i in 0..200 {
            y.push_str(&" ".repeat(i));
            y.push_str("a:\n");
        }
        assert!(!depth_ok(&y, 128));
        assert!(depth_ok(&y, 201));
        let compact = format!("{}x\n", "- ".repeat(200));
        assert!(!depth_ok(&compact, 128));
        assert!(depth_ok(&format!("{}x\n", "- ".repeat(20)), 128));
    }

    #[test]
    fn brackets_in_strings_comments_block_scalars_and_plain_text_do_not_count() {
        let text = format!(
            "a: \"{open}\"\nb: '{open}'' {open}'\nc: x{open}\n# {open}\nd: |\n  {open}\n  {open}\ne: >-\n  {open}\nf: \"multi\n  {open} line\"\ng: [1, 2] # {open}\n",
            open = "[".repeat(300)
        );
        assert_eq!(check_depth(&text, 8), Ok(()));
    }

    #[test]
    fn documents_are_numbered_as_serde_yaml_numbers_them() {
        let deep = format!("x: {}\n", "[".repeat(50));
        for (text, doc) in [
            (format!("a: 1\n---\n{deep}"), 2),
            (format!("---\n{deep}"), 1),
            (format!("# c\n---\n{deep}"), 1),
            (format!("a: 1\n...\n---\n{deep}"), 2),
            (format!("a: 1\n...\n{deep}"), 2),
            (format!("---\n---\n{deep}"), 2),
            (format!("a: [\n---\n{deep}"), 2),
        ] {
            assert_eq!(
                check_depth(&text, 10).map_err(|e| e.document),
                Err(doc),
                "{text}"
            );
        }
    }

    #[test]
    fn byte_order_marks_go_at_stream_and_document_starts_only() {
        assert_eq!(strip_boms("a: 1\n"), Cow::Borrowed("a: 1\n"));
        assert_eq!(strip_boms("\u{feff}a: 1\n"), "a: 1\n");
        assert_eq!(
            strip_boms("\u{feff}a: 1\n---\n\u{feff}b: 2\n\u{feff}---\nc: 3\n"),
            "a: 1\n---\nb: 2\n---\nc: 3\n"
        );
        // Inside a document it is data.
        assert_eq!(strip_boms("a: |\n\u{feff}x\n"), "a: |\n\u{feff}x\n");
    }
}

#[cfg(test)]
mod real_files {
    use super::*;

    /// The smallest limit `text` passes.
    fn depth(text: &str) -> usize {
        (0..=super::super::MAX_DEPTH)
            .find(|m| check_depth(text, *m).is_ok())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn the_repository_manifests_are_far_below_the_limit() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for dir in ["deploy", "examples"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "yaml") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    let d = depth(&text);
                    eprintln!("{}: {d}", p.display());
                    assert!(d <= 40, "{}: estimated depth {d}", p.display());
                }
            }
        }
    }
}
