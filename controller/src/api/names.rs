//! Kubernetes' own name rules (`k8s.io/apimachinery/pkg/util/validation`): object names are
//! DNS-1123 subdomains, namespaces DNS-1123 labels. ovn-vpc builds owner keys
//! (`Pod/namespace/name`), port names (`<pod>.<namespace>`, `<vpc>-<subnet>`) and IP object
//! names (`<pod>.<namespace>`) from them, and these are unique only because the rules keep `/`
//! out of every name and `.` out of namespaces: pod `b/c` in namespace `a` and pod `c` in
//! namespace `a/b` would otherwise share `Pod/a/b/c`.

/// Which rule a name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// At most 63 characters: lowercase letters, digits and `-`, starting and ending with a
    /// letter or digit (namespaces; Vpc and Subnet names, which become OVN port names).
    Label,
    /// At most 253 characters: DNS-1123 labels joined by `.` (most object names, pods).
    Subdomain,
}

impl NameRule {
    fn describe(self) -> &'static str {
        match self {
            NameRule::Label => {
                "a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and \
                 ending with a letter or digit"
            }
            NameRule::Subdomain => {
                "a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit"
            }
        }
    }

    /// Checks `name`; the error says what is wrong and what the rule is.
    pub fn check(self, name: &str) -> Result<(), String> {
        let max = match self {
            NameRule::Label => 63,
            NameRule::Subdomain => 253,
        };
        let why = if name.is_empty() {
            Some("it is empty".to_string())
        } else if name.len() > max {
            Some(format!("it has {} characters", name.chars().count()))
        } else if let Some(c) = name.chars().find(|c| {
            !(c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || *c == '-'
                || (*c == '.' && self == NameRule::Subdomain))
        }) {
            Some(format!("{c:?} is not allowed"))
        } else if name
            .split('.')
            .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-') || l.len() > 63)
        {
            Some(match self {
                NameRule::Label => "it starts or ends with '-'".to_string(),
                NameRule::Subdomain => {
                    "a part between dots is empty, too long, or starts or ends with '-'".into()
                }
            })
        } else {
            None
        };
        match why {
            None => Ok(()),
            Some(why) => Err(format!(
                "{:?} is not a valid name: {why} ({})",
                truncated(name),
                self.describe()
            )),
        }
    }
}

/// `s` with its control characters escaped (`\0`, `\n`): text for a one-line message that
/// may carry a value (or a parser's words about one) as it came.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s`, cut to 80 characters for a message (a 300-character name need not be echoed whole).
pub(crate) fn truncated(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        let head: String = s.chars().take(77).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_name_rules() {
        for ok in ["a", "web-0", "a1", "0a"] {
            assert_eq!(NameRule::Label.check(ok), Ok(()), "{ok}");
            assert_eq!(NameRule::Subdomain.check(ok), Ok(()), "{ok}");
        }
        assert_eq!(NameRule::Subdomain.check("nginx.v2"), Ok(()));
        let longest = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(61));
        assert_eq!(longest.len(), 253);
        assert_eq!(NameRule::Subdomain.check(&longest), Ok(()));
        for (rule, bad, why) in [
            (NameRule::Label, "a.b", "'.' is not allowed"),
            (NameRule::Subdomain, "b/c", "'/' is not allowed"),
            (NameRule::Subdomain, "a\"b", "'\"' is not allowed"),
            (NameRule::Subdomain, "a\nb", "'\\n' is not allowed"),
            (NameRule::Subdomain, "a\0b", "'\\0' is not allowed"),
            (NameRule::Subdomain, "Web", "'W' is not allowed"),
            (NameRule::Subdomain, "", "it is empty"),
            (NameRule::Label, "-a", "starts or ends with '-'"),
            (NameRule::Subdomain, "a..b", "a part between dots is empty"),
            (NameRule::Subdomain, "a.", "a part between dots is empty"),
            (NameRule::Label, &"a".repeat(64), "it has 64 characters"),
            (
                NameRule::Subdomain,
                &"a".repeat(300),
                "it has 300 characters",
            ),
            (NameRule::Subdomain, &"a".repeat(64), "too long"),
        ] {
            let e = rule.check(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        // A long name is not echoed whole.
        assert!(
            NameRule::Subdomain
                .check(&"a".repeat(300))
                .unwrap_err()
                .len()
                < 300
        );
    }
}
