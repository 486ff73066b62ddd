//! The desired state of one table and the planner that turns (desired, actual) into the input
//! of one `iptables-restore --noflush` transaction. No I/O.

use std::fmt::Write as _;

use super::save::{SavedRule, SavedTable};
use super::{tag_of, KUBE_SERVICES};

/// One rule of a chain we own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule spec without the comment, e.g. `-s 10.16.0.0/16 -j MASQUERADE`.
    pub spec: String,
    /// Its tag, derived from the chain and the spec.
    pub tag: String,
}

impl Rule {
    /// A rule of `chain`; its tag hashes the chain and the spec, so a changed rule is a new rule.
    pub fn new(chain: &str, spec: &str) -> Rule {
        Rule {
            spec: spec.trim().to_string(),
            tag: tag_of(&["rule", chain, spec.trim()]),
        }
    }

    /// The spec as written: our comment first, then the rule.
    fn rendered(&self) -> String {
        format!("-m comment --comment \"{}\" {}", self.tag, self.spec)
    }
}

/// A chain we own, with its complete rule list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredChain {
    /// The chain's name (`OVN-PREROUTING`, ...).
    pub name: String,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

/// Our jump from a built-in chain into a chain of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    /// The built-in chain (`PREROUTING`).
    pub from: String,
    /// Our chain (`OVN-PREROUTING`).
    pub to: String,
    /// The jump must be above the first jump to this chain when there is one; anywhere else.
    pub above: Option<String>,
    /// Its tag.
    pub tag: String,
}

impl Jump {
    /// A jump `from` → `to` that must be above kube-proxy's `KUBE-SERVICES` jump when it exists.
    pub fn new(from: &str, to: &str) -> Jump {
        Jump {
            from: from.to_string(),
            to: to.to_string(),
            above: Some(KUBE_SERVICES.to_string()),
            tag: tag_of(&["jump", from, to]),
        }
    }

    fn rendered(&self) -> String {
        format!("-m comment --comment \"{}\" -j {}", self.tag, self.to)
    }
}

/// Everything of ours in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTable {
    /// The table (`nat`, `filter`).
    pub name: String,
    /// Chains we own.
    pub chains: Vec<DesiredChain>,
    /// Our jumps from built-in chains.
    pub jumps: Vec<Jump>,
}

impl DesiredTable {
    /// An empty desired table: nothing of ours.
    pub fn new(name: &str) -> DesiredTable {
        DesiredTable {
            name: name.to_string(),
            chains: Vec::new(),
            jumps: Vec::new(),
        }
    }

    /// Adds a chain of ours with these rule specs.
    pub fn chain(mut self, name: &str, specs: &[&str]) -> DesiredTable {
        self.chains.push(DesiredChain {
            name: name.to_string(),
            rules: specs.iter().map(|s| Rule::new(name, s)).collect(),
        });
        self
    }

    /// Adds our jump `from` → `to` (above `KUBE-SERVICES` when it exists).
    pub fn jump(mut self, from: &str, to: &str) -> DesiredTable {
        self.jumps.push(Jump::new(from, to));
        self
    }

    /// The node's nat table: `OVN-PREROUTING` and `OVN-POSTROUTING` with these rules, jumped to
    /// from `PREROUTING` and `POSTROUTING`.
    pub fn node_nat(prerouting: &[&str], postrouting: &[&str]) -> DesiredTable {
        DesiredTable::new("nat")
            .chain("OVN-PREROUTING", prerouting)
            .chain("OVN-POSTROUTING", postrouting)
            .jump("PREROUTING", "OVN-PREROUTING")
            .jump("POSTROUTING", "OVN-POSTROUTING")
    }

    /// The node's filter table: `OVN-FORWARD` with these rules, jumped to from `FORWARD`.
    pub fn node_filter(forward: &[&str]) -> DesiredTable {
        DesiredTable::new("filter")
            .chain("OVN-FORWARD", forward)
            .jump("FORWARD", "OVN-FORWARD")
    }
}

/// The `iptables-restore --noflush` input that makes `actual` hold `desired` (`*table` …
/// `COMMIT`), or `None` when it already does.
///
/// - A chain of ours is declared (which creates it, or flushes it under `--noflush`) and
///   refilled only when its sequence of tags differs from the desired one.
/// - In a built-in chain, rules carrying our tag prefix but not a desired tag are deleted by
///   their full spec; so are all copies of our jump when there is more than one or the only one
///   is below the anchor (`KUBE-SERVICES`). The jump is then inserted where the first copy was
///   if that was above the anchor, else right above the anchor (`-I CHAIN N`, N computed after
///   the deletes of this same transaction), else appended. A single copy above the anchor (or
///   anywhere, without an anchor) is left alone. Foreign rules are never named.
pub fn plan_table(desired: &DesiredTable, actual: &SavedTable) -> Option<String> {
    let mut lines: Vec<String> = Vec::new();

    for chain in &desired.chains {
        let same = actual.chain(&chain.name).is_some_and(|c| {
            c.rules.len() == chain.rules.len()
                && c.rules
                    .iter()
                    .zip(&chain.rules)
                    .all(|(a, d)| a.tag() == Some(d.tag.as_str()))
        });
        if !same {
            lines.push(format!(":{} - [0:0]", chain.name));
            for r in &chain.rules {
                lines.push(format!("-A {} {}", chain.name, r.rendered()));
            }
        }
    }

    let mut builtins: Vec<&str> = Vec::new();
    for j in &desired.jumps {
        if !builtins.contains(&j.from.as_str()) {
            builtins.push(&j.from);
        }
    }
    for from in builtins {
        let jumps: Vec<&Jump> = desired.jumps.iter().filter(|j| j.from == from).collect();
        plan_builtin(from, &jumps, actual, &mut lines);
    }

    if lines.is_empty() {
        return None;
    }
    let mut out = format!("*{}\n", desired.name);
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// The `iptables-restore --noflush` input that removes everything of ours from `actual`
/// (`ovn-vpc node --cleanup`), or `None` when nothing of ours is left: every rule carrying our
/// tag prefix in a chain we do not own is deleted by its spec, then our chains are flushed and
/// deleted — except one a foreign rule still jumps to, which is only flushed (deleting it would
/// make the whole transaction fail). Foreign rules are never named.
pub fn plan_removal(desired: &DesiredTable, actual: &SavedTable) -> Option<String> {
    let owned = |name: &str| desired.chains.iter().any(|c| c.name == name);
    let mut lines: Vec<String> = Vec::new();
    for chain in actual.chains.iter().filter(|c| !owned(&c.name)) {
        for r in chain.rules.iter().filter(|r| r.tag().is_some()) {
            lines.push(format!("-D {} {}", chain.name, r.spec));
        }
    }
    let present: Vec<&str> = desired
        .chains
        .iter()
        .filter_map(|d| actual.chain(&d.name))
        .map(|c| c.name.as_str())
        .collect();
    for name in &present {
        lines.push(format!("-F {name}"));
    }
    for name in &present {
        let referenced = actual.chains.iter().filter(|c| !owned(&c.name)).any(|c| {
            c.rules
                .iter()
                .any(|r| r.tag().is_none() && r.target.as_deref() == Some(name))
        });
        if !referenced {
            lines.push(format!("-X {name}"));
        }
    }
    // Only flushes of already-empty chains that must stay: nothing to do.
    let busy = lines.iter().any(|l| !l.starts_with("-F "))
        || present
            .iter()
            .any(|n| actual.chain(n).is_some_and(|c| !c.rules.is_empty()));
    if !busy {
        return None;
    }
    let mut out = format!("*{}\n", desired.name);
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// Plans one built-in chain, simulating the chain as the transaction goes so every `-I N`
/// is computed against the chain as it will be at that line.
fn plan_builtin(from: &str, jumps: &[&Jump], actual: &SavedTable, lines: &mut Vec<String>) {
    let mut sim: Vec<SavedRule> = actual
        .chain(from)
        .map(|c| c.rules.clone())
        .unwrap_or_default();

    // Stale rules of ours (an old jump, a jump of a previous release): deleted by spec.
    let stale: Vec<String> = sim
        .iter()
        .filter(|r| r.tag().is_some_and(|t| !jumps.iter().any(|j| j.tag == t)))
        .map(|r| r.spec.clone())
        .collect();
    for spec in stale {
        delete(from, &spec, &mut sim, lines);
    }

    for jump in jumps {
        let copies: Vec<usize> = positions(&sim, |r| r.tag() == Some(jump.tag.as_str()));
        let anchor = jump
            .above
            .as_deref()
            .and_then(|a| sim.iter().position(|r| r.target.as_deref() == Some(a)));
        let well_placed = |i: usize| anchor.is_none_or(|a| i < a);
        if copies.len() == 1 && well_placed(copies[0]) {
            continue;
        }
        // Where the surviving jump goes, as a 0-based index into the chain without the copies.
        let at = match (copies.first(), anchor) {
            (Some(&first), _) if well_placed(first) => Some(first),
            (_, Some(a)) => Some(a - copies.iter().filter(|&&c| c < a).count()),
            (_, None) => None,
        };
        let specs: Vec<String> = copies.iter().map(|&i| sim[i].spec.clone()).collect();
        for spec in specs {
            delete(from, &spec, &mut sim, lines);
        }
        let rendered = jump.rendered();
        match at {
            Some(i) if i < sim.len() => {
                lines.push(format!("-I {from} {} {rendered}", i + 1));
                sim.insert(i, SavedRule::parse(&rendered));
            }
            _ => {
                lines.push(format!("-A {from} {rendered}"));
                sim.push(SavedRule::parse(&rendered));
            }
        }
    }
}

fn positions(rules: &[SavedRule], f: impl Fn(&SavedRule) -> bool) -> Vec<usize> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| f(r))
        .map(|(i, _)| i)
        .collect()
}

/// `-D CHAIN SPEC` deletes the first rule equal to SPEC, so the simulation does the same.
fn delete(from: &str, spec: &str, sim: &mut Vec<SavedRule>, lines: &mut Vec<String>) {
    lines.push(format!("-D {from} {spec}"));
    if let Some(i) = sim.iter().position(|r| r.spec == spec) {
        sim.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::super::save::parse_save;
    use super::super::sim::apply;
    use super::*;

    const CALI: &str = r#"-m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING"#;
    const KUBE: &str = r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#;
    const HOSTPORT: &str = "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT";

    fn nat() -> DesiredTable {
        DesiredTable::node_nat(
            &["-i ovn0 -j MARK --set-xmark 0x4000/0x4000"],
            &["-s 10.16.0.0/16 ! -d 10.16.0.0/16 -j MASQUERADE"],
        )
    }

    /// A nat save with these PREROUTING rules (and nothing of ours elsewhere).
    fn save_with(pre: &[String]) -> SavedTable {
        let mut text = String::from(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n",
        );
        for r in pre {
            text.push_str(&format!("-A PREROUTING {r}\n"));
        }
        text.push_str("COMMIT\n");
        parse_save(&text, "nat").unwrap()
    }

    fn jump_spec(t: &DesiredTable, from: &str) -> String {
        t.jumps.iter().find(|j| j.from == from).unwrap().rendered()
    }

    /// Applies plans until none is left; returns the final table and how many plans were needed.
    fn converge(d: &DesiredTable, mut t: SavedTable) -> (SavedTable, usize) {
        let mut writes = 0;
        while let Some(p) = plan_table(d, &t) {
            apply(&mut t, &p).unwrap_or_else(|e| panic!("{e}\nplan:\n{p}"));
            writes += 1;
            assert!(writes < 3, "no convergence:\n{p}");
        }
        (t, writes)
    }

    fn specs(t: &SavedTable, chain: &str) -> Vec<String> {
        t.chain(chain)
            .map(|c| c.rules.iter().map(|r| r.spec.clone()).collect())
            .unwrap_or_default()
    }

    fn foreign(t: &SavedTable, chain: &str) -> Vec<String> {
        t.chain(chain)
            .map(|c| {
                c.rules
                    .iter()
                    .filter(|r| r.tag().is_none())
                    .map(|r| r.spec.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn seed_scenario_goes_above_kube_services_and_keeps_foreign_order() {
        let d = nat();
        let before = save_with(&[CALI.into(), KUBE.into(), HOSTPORT.into()]);
        let p = plan_table(&d, &before).unwrap();
        assert!(!p.contains("-D "), "nothing to delete:\n{p}");
        assert!(p.contains("-I PREROUTING 2 "), "{p}");
        let (after, writes) = converge(&d, before);
        assert_eq!(writes, 1);
        assert_eq!(
            specs(&after, "PREROUTING"),
            [
                CALI.to_string(),
                jump_spec(&d, "PREROUTING"),
                KUBE.into(),
                HOSTPORT.into()
            ]
        );
        assert_eq!(specs(&after, "POSTROUTING"), [jump_spec(&d, "POSTROUTING")]);
        assert_eq!(specs(&after, "OVN-POSTROUTING").len(), 1);
    }

    #[test]
    fn plan_text_is_one_transaction() {
        let p = plan_table(&nat(), &save_with(&[])).unwrap();
        assert!(p.starts_with("*nat\n:OVN-PREROUTING - [0:0]\n"), "{p}");
        assert!(p.ends_with("COMMIT\n"));
        assert_eq!(p.matches("COMMIT").count(), 1);
    }

    #[test]
    fn a_well_placed_jump_is_never_moved() {
        let d = nat();
        let j = jump_spec(&d, "PREROUTING");
        // Ours at the bottom is fine without KUBE-SERVICES, and anywhere above it is fine.
        for pre in [
            vec![CALI.into(), HOSTPORT.into(), j.clone()],
            vec![j.clone(), CALI.into(), KUBE.into()],
            vec![CALI.into(), j.clone(), HOSTPORT.into(), KUBE.into()],
        ] {
            let (after, _) = converge(&d, save_with(&pre));
            assert_eq!(specs(&after, "PREROUTING"), pre);
        }
    }

    #[test]
    fn a_jump_below_kube_services_is_moved_right_above_it() {
        let d = nat();
        let j = jump_spec(&d, "PREROUTING");
        let (after, writes) = converge(
            &d,
            save_with(&[CALI.into(), KUBE.into(), HOSTPORT.into(), j.clone()]),
        );
        assert_eq!(writes, 1);
        assert_eq!(
            specs(&after, "PREROUTING"),
            [CALI.to_string(), j, KUBE.into(), HOSTPORT.into()]
        );
    }

    #[test]
    fn scattered_duplicates_leave_exactly_one_well_placed() {
        let d = nat();
        let j = jump_spec(&d, "PREROUTING");
        let base = [
            CALI.to_string(),
            KUBE.into(),
            HOSTPORT.into(),
            "-j RETURN".into(),
        ];
        for copies in 2..=5usize {
            for layout in 0..(1usize << (base.len() + 1)) {
                // Spread the copies over the gaps chosen by `layout`, cycling.
                let gaps: Vec<usize> = (0..=base.len())
                    .filter(|g| layout & (1 << g) != 0)
                    .collect();
                if gaps.is_empty() {
                    continue;
                }
                let mut pre = Vec::new();
                let mut placed = 0;
                for (i, b) in base
                    .iter()
                    .chain(std::iter::once(&String::new()))
                    .enumerate()
                {
                    if gaps.contains(&i) {
                        let n = if i == *gaps.last().unwrap() {
                            copies - placed
                        } else {
                            1.min(copies - placed)
                        };
                        for _ in 0..n {
                            pre.push(j.clone());
                        }
                        placed += n;
                    }
                    if !b.is_empty() {
                        pre.push(b.clone());
                    }
                }
                let (after, writes) = converge(&d, save_with(&pre));
                assert_eq!(writes, 1, "{pre:#?}");
                let got = specs(&after, "PREROUTING");
                assert_eq!(got.iter().filter(|s| **s == j).count(), 1, "{pre:#?}");
                assert_eq!(foreign(&after, "PREROUTING"), base, "{pre:#?}");
                let ours = got.iter().position(|s| *s == j).unwrap();
                let kube = got.iter().position(|s| s == KUBE).unwrap();
                assert!(ours < kube, "{got:#?}");
                // Deletes are by spec only, never by index.
                let p = plan_table(&d, &save_with(&pre)).unwrap();
                assert!(p
                    .lines()
                    .all(|l| !l.starts_with("-D ") || l.contains("--comment")));
            }
        }
    }

    #[test]
    fn without_kube_services_the_jump_is_appended_once() {
        let d = nat();
        let before = save_with(&[CALI.into(), HOSTPORT.into()]);
        let p = plan_table(&d, &before).unwrap();
        assert!(
            p.contains(&format!("-A PREROUTING {}", jump_spec(&d, "PREROUTING"))),
            "{p}"
        );
        let (mut after, writes) = converge(&d, before);
        assert_eq!(writes, 1);
        for _ in 0..20 {
            assert_eq!(plan_table(&d, &after), None);
            after = after.clone();
        }
    }

    #[test]
    fn stale_rules_of_ours_are_deleted_by_spec() {
        let d = nat();
        let stale = r#"-m comment --comment "ovn-vpc:deadbeefdeadbeef" -j OVN-OLD"#.to_string();
        let (after, _) = converge(&d, save_with(&[stale, CALI.into(), KUBE.into()]));
        assert_eq!(foreign(&after, "PREROUTING"), [CALI, KUBE]);
        assert_eq!(specs(&after, "PREROUTING").len(), 3);
    }

    #[test]
    fn owned_chains_are_rewritten_only_when_they_differ() {
        let d = nat();
        let (good, _) = converge(&d, save_with(&[]));
        assert_eq!(plan_table(&d, &good), None);

        // Flushed chain.
        let mut flushed = good.clone();
        apply(&mut flushed, "*nat\n-F OVN-POSTROUTING\nCOMMIT\n").unwrap();
        let p = plan_table(&d, &flushed).unwrap();
        assert!(
            p.contains(":OVN-POSTROUTING - [0:0]") && !p.contains(":OVN-PREROUTING"),
            "{p}"
        );
        assert!(!p.contains("PREROUTING -"), "jumps untouched:\n{p}");
        let (healed, _) = converge(&d, flushed);
        assert_eq!(healed, good);

        // A foreign rule slipped into our chain, and a changed desired rule.
        let mut edited = good.clone();
        apply(&mut edited, "*nat\n-A OVN-PREROUTING -j ACCEPT\nCOMMIT\n").unwrap();
        assert_eq!(converge(&d, edited).0, good);
        let d2 = DesiredTable::node_nat(&["-i ovn0 -j ACCEPT"], &["-j MASQUERADE"]);
        let (changed, writes) = converge(&d2, good);
        assert_eq!(writes, 1);
        assert_eq!(
            specs(&changed, "OVN-POSTROUTING"),
            [d2.chains[1].rules[0].rendered()]
        );
    }

    #[test]
    fn flushed_table_and_deleted_jump_are_restored() {
        let d = nat();
        let (good, _) = converge(&d, save_with(&[CALI.into(), KUBE.into()]));
        let mut t = good.clone();
        apply(
            &mut t,
            &format!(
                "*nat\n-D POSTROUTING {}\nCOMMIT\n",
                jump_spec(&d, "POSTROUTING")
            ),
        )
        .unwrap();
        assert_eq!(converge(&d, t).0, good);

        // `iptables -t nat -F; iptables -t nat -X`, then kube-proxy and Calico come back.
        let (healed, writes) = converge(&d, save_with(&[CALI.into(), KUBE.into()]));
        assert_eq!(writes, 1);
        assert_eq!(healed, good);
        // An empty save (table not loaded at all).
        let (from_nothing, _) = converge(&d, parse_save("", "nat").unwrap());
        assert_eq!(
            specs(&from_nothing, "PREROUTING"),
            [jump_spec(&d, "PREROUTING")]
        );
    }

    #[test]
    fn filter_forward_goes_above_kube_services() {
        let d =
            DesiredTable::node_filter(&["-s 10.16.0.0/16 -j ACCEPT", "-d 10.16.0.0/16 -j ACCEPT"]);
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n";
        let (after, writes) = converge(&d, parse_save(text, "filter").unwrap());
        assert_eq!(writes, 1);
        let fwd = &after.chain("FORWARD").unwrap().rules;
        assert_eq!(fwd[1].tag(), Some(d.jumps[0].tag.as_str()));
        assert_eq!(fwd[2].target.as_deref(), Some("KUBE-SERVICES"));
        assert_eq!(specs(&after, "OVN-FORWARD").len(), 2);
    }

    #[test]
    fn removal_takes_everything_of_ours_and_nothing_else() {
        let d = nat();
        let stale = r#"-m comment --comment "ovn-vpc:deadbeefdeadbeef" -j ACCEPT"#.to_string();
        let before = save_with(&[CALI.into(), stale, KUBE.into(), HOSTPORT.into()]);
        let (mut t, _) = converge(&d, before);
        let p = plan_removal(&d, &t).unwrap();
        assert!(
            p.lines()
                .all(|l| !l.starts_with("-D ") || l.contains("ovn-vpc:")),
            "{p}"
        );
        apply(&mut t, &p).unwrap();
        assert_eq!(specs(&t, "PREROUTING"), [CALI, KUBE, HOSTPORT]);
        assert!(specs(&t, "POSTROUTING").is_empty());
        assert!(t.chain("OVN-PREROUTING").is_none() && t.chain("OVN-POSTROUTING").is_none());
        assert_eq!(plan_removal(&d, &t), None);
        assert_eq!(plan_removal(&d, &save_with(&[CALI.into()])), None);
    }

    #[test]
    fn removal_keeps_a_chain_a_foreign_rule_jumps_to() {
        let d = nat();
        let (mut t, _) = converge(&d, save_with(&["-j OVN-PREROUTING".into()]));
        let p = plan_removal(&d, &t).unwrap();
        assert!(
            p.contains("-F OVN-PREROUTING") && !p.contains("-X OVN-PREROUTING"),
            "{p}"
        );
        assert!(p.contains("-X OVN-POSTROUTING"), "{p}");
        apply(&mut t, &p).unwrap();
        assert_eq!(specs(&t, "PREROUTING"), ["-j OVN-PREROUTING"]);
        assert_eq!(plan_removal(&d, &t), None, "an empty kept chain is done");
    }

    #[test]
    fn tags_are_stable_and_distinct() {
        assert_eq!(Rule::new("A", "-j X").tag, Rule::new("A", " -j X ").tag);
        assert_ne!(Rule::new("A", "-j X").tag, Rule::new("B", "-j X").tag);
        assert_ne!(
            Jump::new("PREROUTING", "X").tag,
            Jump::new("POSTROUTING", "X").tag
        );
        // Pinned: a release must recognise the rules the previous one wrote.
        assert_eq!(
            Jump::new("PREROUTING", "OVN-PREROUTING").tag,
            "ovn-vpc:d0b7a7f97106dcfd"
        );
        assert_eq!(
            Rule::new("OVN-POSTROUTING", "-s 10.16.0.0/16 -j MASQUERADE").tag,
            "ovn-vpc:1df5253339b5caf0"
        );
        assert!(Rule::new("A", "-j X").tag.starts_with("ovn-vpc:"));
        assert_eq!(Rule::new("A", "-j X").tag.len(), "ovn-vpc:".len() + 16);
    }
}
