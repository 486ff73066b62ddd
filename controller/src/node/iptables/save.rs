//! Parser of `iptables-save -t TABLE` output (the "actual" side of the plan). No I/O.

use super::IptablesError;

/// One table as `iptables-save -t TABLE` printed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SavedTable {
    /// The table's name (`nat`, `filter`).
    pub name: String,
    /// Its chains in the order they were declared.
    pub chains: Vec<SavedChain>,
}

/// One chain of a saved table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedChain {
    /// The chain's name.
    pub name: String,
    /// The policy of a built-in chain (`ACCEPT`, `DROP`); `None` for a user-defined chain
    /// (printed as `-`).
    pub policy: Option<String>,
    /// Its rules, in order.
    pub rules: Vec<SavedRule>,
}

/// One rule: the text after `-A CHAIN `, exactly as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRule {
    /// The rule spec, e.g. `-m comment --comment "ovn-vpc:1a2b" -j OVN-PREROUTING`.
    pub spec: String,
    /// The comment of its `-m comment --comment` match, unquoted; the first one that carries our
    /// tag prefix when there are several, else the first.
    pub comment: Option<String>,
    /// The target of `-j` / `-g`, if any.
    pub target: Option<String>,
}

impl SavedTable {
    /// The chain named `name`, if the table has it.
    pub fn chain(&self, name: &str) -> Option<&SavedChain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

impl SavedRule {
    /// Parses a rule spec (the text after `-A CHAIN `).
    pub fn parse(spec: &str) -> SavedRule {
        let words = split_words(spec);
        let mut comments = Vec::new();
        let mut target = None;
        let mut it = words.iter();
        while let Some(w) = it.next() {
            match w.as_str() {
                "--comment" => {
                    if let Some(c) = it.next() {
                        comments.push(c.clone());
                    }
                }
                "-j" | "--jump" | "-g" | "--goto" if target.is_none() => {
                    target = it.next().cloned();
                }
                _ => {}
            }
        }
        let comment = comments
            .iter()
            .find(|c| c.starts_with(super::TAG_PREFIX))
            .or(comments.first())
            .cloned();
        SavedRule {
            spec: spec.to_string(),
            comment,
            target,
        }
    }

    /// Our tag (`ovn-vpc:...`) if the rule carries one.
    pub fn tag(&self) -> Option<&str> {
        self.comment
            .as_deref()
            .filter(|c| c.starts_with(super::TAG_PREFIX))
    }
}

/// Splits a rule spec into words the way iptables-restore does: whitespace separates words,
/// double quotes group, a backslash escapes the next character inside quotes.
pub(crate) fn split_words(spec: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Parses the output of `iptables-save -t TABLE` for the table `table`.
///
/// A table that iptables-nft cannot represent (created by `nft` or by the other backend) is
/// reported by iptables-nft-save as a comment ("Table `nat' is incompatible, use 'nft' tool."):
/// that is an error, never an empty table, because writing into it would hide the rules we
/// cannot see. A save without the table at all (the table is not loaded) is an empty table.
pub fn parse_save(text: &str, table: &str) -> Result<SavedTable, IptablesError> {
    let mut out = SavedTable {
        name: table.to_string(),
        chains: Vec::new(),
    };
    let mut current: Option<&str> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let bad = |why: &str| IptablesError::Parse {
            line: n + 1,
            text: raw.to_string(),
            why: why.to_string(),
        };
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            // A whole-ruleset save may report another table as incompatible: not ours to judge.
            let names_table = c.contains(&format!("`{table}'")) || !c.contains('`');
            if c.contains("is incompatible") && names_table {
                return Err(IptablesError::Incompatible {
                    table: table.to_string(),
                    message: c.trim().to_string(),
                });
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            current = Some(name.trim());
            continue;
        }
        if line == "COMMIT" {
            current = None;
            continue;
        }
        let Some(cur) = current else {
            return Err(bad("outside any *table ... COMMIT block"));
        };
        if cur != table {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut parts = decl.split_whitespace();
            let name = parts
                .next()
                .ok_or_else(|| bad("chain declaration without a name"))?;
            let policy = match parts.next() {
                Some("-") | None => None,
                Some(p) => Some(p.to_string()),
            };
            if out.chain(name).is_none() {
                out.chains.push(SavedChain {
                    name: name.to_string(),
                    policy,
                    rules: Vec::new(),
                });
            }
            continue;
        }
        // `iptables-save -c` prefixes rules with `[packets:bytes] `.
        let rule = if line.starts_with('[') {
            line.split_once("] ")
                .map(|(_, r)| r.trim_start())
                .unwrap_or(line)
        } else {
            line
        };
        if let Some(rest) = rule.strip_prefix("-A ") {
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            let parsed = SavedRule::parse(spec.trim());
            match out.chains.iter_mut().find(|c| c.name == chain) {
                Some(c) => c.rules.push(parsed),
                None => return Err(bad("rule in an undeclared chain")),
            }
            continue;
        }
        return Err(bad("not a chain declaration or an -A rule"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"# Generated by iptables-save v1.8.9 on Sun Nov 22 08:00:51 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [12:720]
:KUBE-SERVICES - [0:0]
:cali-PREROUTING - [0:0]
-A PREROUTING -m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "ovn-vpc:0123456789abcdef" -j OVN-POSTROUTING
COMMIT
# Completed on Sun Nov 22 08:00:51 2026
"#;

    #[test]
    fn parses_chains_policies_and_rules() {
        let t = parse_save(SEED, "nat").unwrap();
        let names: Vec<_> = t.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "PREROUTING",
                "INPUT",
                "OUTPUT",
                "POSTROUTING",
                "KUBE-SERVICES",
                "cali-PREROUTING"
            ]
        );
        assert_eq!(
            t.chain("POSTROUTING").unwrap().policy.as_deref(),
            Some("ACCEPT")
        );
        assert_eq!(t.chain("KUBE-SERVICES").unwrap().policy, None);
        let pre = &t.chain("PREROUTING").unwrap().rules;
        assert_eq!(pre.len(), 3);
        assert_eq!(
            pre[1].spec,
            r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#
        );
        assert_eq!(
            pre[1].comment.as_deref(),
            Some("kubernetes service portals")
        );
        assert_eq!(pre[1].target.as_deref(), Some("KUBE-SERVICES"));
        assert_eq!(pre[1].tag(), None);
        assert_eq!(pre[2].comment, None);
        assert_eq!(pre[2].target.as_deref(), Some("CNI-HOSTPORT-DNAT"));
        let post = &t.chain("POSTROUTING").unwrap().rules[0];
        assert_eq!(post.tag(), Some("ovn-vpc:0123456789abcdef"));
    }

    #[test]
    fn other_tables_in_the_same_save_are_skipped() {
        let text = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -j ACCEPT\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
        let nat = parse_save(text, "nat").unwrap();
        assert_eq!(nat.chains.len(), 1);
        assert!(nat.chains[0].rules.is_empty());
        let filter = parse_save(text, "filter").unwrap();
        assert_eq!(
            filter.chain("FORWARD").unwrap().policy.as_deref(),
            Some("DROP")
        );
        assert_eq!(filter.chain("FORWARD").unwrap().rules.len(), 1);
    }

    #[test]
    fn an_absent_table_is_empty() {
        let t = parse_save("", "nat").unwrap();
        assert!(t.chains.is_empty());
    }

    #[test]
    fn another_incompatible_table_does_not_matter() {
        let text = "# Table `mangle' is incompatible, use 'nft' tool.\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(parse_save(text, "nat").unwrap().chains.len(), 1);
        assert!(parse_save(text, "mangle").is_err());
    }

    #[test]
    fn incompatible_table_is_an_error() {
        let text = "# Table `nat' is incompatible, use 'nft' tool.\n";
        match parse_save(text, "nat") {
            Err(IptablesError::Incompatible { table, message }) => {
                assert_eq!(table, "nat");
                assert!(message.contains("incompatible"));
            }
            other => panic!("expected Incompatible, got {other:?}"),
        }
    }

    #[test]
    fn legacy_tables_present_warning_is_only_a_comment() {
        let text = "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(parse_save(text, "nat").unwrap().chains.len(), 1);
    }

    #[test]
    fn counters_prefix_is_accepted() {
        let text = "*nat\n:PREROUTING ACCEPT [3:180]\n[3:180] -A PREROUTING -j ACCEPT\nCOMMIT\n";
        let t = parse_save(text, "nat").unwrap();
        assert_eq!(t.chains[0].rules[0].spec, "-j ACCEPT");
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let e = parse_save("*nat\n-A NOPE -j ACCEPT\nCOMMIT\n", "nat").unwrap_err();
        assert!(matches!(e, IptablesError::Parse { line: 2, .. }), "{e:?}");
        let e = parse_save("-A PREROUTING -j ACCEPT\n", "nat").unwrap_err();
        assert!(matches!(e, IptablesError::Parse { line: 1, .. }), "{e:?}");
        let e = parse_save("*nat\n:PREROUTING ACCEPT [0:0]\nbogus\nCOMMIT\n", "nat").unwrap_err();
        assert!(matches!(e, IptablesError::Parse { line: 3, .. }), "{e:?}");
    }

    #[test]
    fn words_honour_quotes_and_escapes() {
        assert_eq!(
            split_words(r#"-m comment --comment "a \"quoted\" \\ word" -j X"#),
            [
                "-m",
                "comment",
                "--comment",
                r#"a "quoted" \ word"#,
                "-j",
                "X"
            ]
        );
        assert_eq!(split_words(r#"--comment """#), ["--comment", ""]);
        assert_eq!(split_words("  -j   ACCEPT  "), ["-j", "ACCEPT"]);
    }

    #[test]
    fn our_tag_wins_over_a_foreign_comment() {
        let r = SavedRule::parse(
            r#"-m comment --comment "foreign" -m comment --comment "ovn-vpc:ab" -g OVN-X"#,
        );
        assert_eq!(r.tag(), Some("ovn-vpc:ab"));
        assert_eq!(r.target.as_deref(), Some("OVN-X"));
        let r = SavedRule::parse(r#"-m comment --comment "one two" -j ACCEPT"#);
        assert_eq!(r.comment.as_deref(), Some("one two"));
        assert_eq!(r.tag(), None);
    }
}
