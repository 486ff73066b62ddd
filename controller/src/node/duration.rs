//! Durations as the node shim's flags write them (`500ms`, `10s`, `2m`, `1h 30m`): humantime's
//! syntax, with a message that names the flag's value and shows what would be accepted.

use std::time::Duration;

/// Parses a duration in humantime's syntax: integers or decimals, each with a unit (`ms`, `s`,
/// `m`, `h`, `d`, … and their long forms), summed (`--refresh-interval 10s`, `1m 30s`). A bare
/// number is refused: `10` could mean seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (a number and a unit: 500ms, 10s, 2m, 1h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        // What humantime adds to the units above.
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10 s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", " ", "10", "s", "-1s", "ms500", "1x", "1s,"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let e = parse_duration("10").unwrap_err();
        assert!(e.starts_with("\"10\": time unit needed"), "{e}");
        assert!(e.contains("500ms"), "{e}");
    }
}
