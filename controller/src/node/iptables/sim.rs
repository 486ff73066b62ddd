//! A tiny in-memory `iptables-restore --noflush` for the planner's tests: applies the lines the
//! planner writes (`:CHAIN`, `-A`, `-I CHAIN N`, `-D CHAIN SPEC`, `-F`) to a parsed save, failing
//! where iptables fails (deleting a missing rule, inserting past the end).

use super::save::{SavedChain, SavedRule, SavedTable};

pub(crate) fn apply(table: &mut SavedTable, text: &str) -> Result<(), String> {
    let mut next = table.clone();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('*') || line == "COMMIT" {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().ok_or("empty declaration")?;
            match next.chains.iter_mut().find(|c| c.name == name) {
                Some(c) => c.rules.clear(),
                None => next.chains.push(SavedChain {
                    name: name.to_string(),
                    policy: None,
                    rules: Vec::new(),
                }),
            }
            continue;
        }
        if let Some(name) = line.strip_prefix("-X ") {
            let used = next
                .chains
                .iter()
                .any(|c| c.rules.iter().any(|r| r.target.as_deref() == Some(name)));
            let c = next.chains.iter().position(|c| c.name == name);
            match c {
                Some(i) if !used && next.chains[i].rules.is_empty() => {
                    next.chains.remove(i);
                }
                _ => return Err(format!("cannot delete chain: {line}")),
            }
            continue;
        }
        let (op, rest) = line.split_once(' ').ok_or(format!("bad line {line}"))?;
        let (chain, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if next.chain(chain).is_none()
            && ["PREROUTING", "POSTROUTING", "FORWARD", "INPUT", "OUTPUT"].contains(&chain)
        {
            next.chains.push(SavedChain {
                name: chain.to_string(),
                policy: Some("ACCEPT".into()),
                rules: Vec::new(),
            });
        }
        let c = next
            .chains
            .iter_mut()
            .find(|c| c.name == chain)
            .ok_or(format!("no chain {chain}: {line}"))?;
        match op {
            "-A" => c.rules.push(SavedRule::parse(rest)),
            "-F" => c.rules.clear(),
            "-D" => {
                let i = c.rules.iter().position(|r| r.spec == rest).ok_or(format!(
                    "Bad rule (does a matching rule exist in that chain?): {line}"
                ))?;
                c.rules.remove(i);
            }
            "-I" => {
                let (n, spec) = rest.split_once(' ').ok_or("bad -I")?;
                let n: usize = n.parse().map_err(|_| format!("bad index: {line}"))?;
                if n == 0 || n > c.rules.len() + 1 {
                    return Err(format!("Index of insertion too big: {line}"));
                }
                c.rules.insert(n - 1, SavedRule::parse(spec));
            }
            _ => return Err(format!("unsupported: {line}")),
        }
    }
    *table = next;
    Ok(())
}
