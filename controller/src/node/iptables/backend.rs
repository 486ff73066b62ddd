//! Which iptables backend holds the host's rules, decided as kube-proxy's iptables-wrapper and
//! Felix's "auto" mode do: kubelet's `KUBE-IPTABLES-HINT` / `KUBE-KUBELET-CANARY` chains in the
//! mangle table name the backend kubelet uses; without them the backend holding more rules wins
//! (nft on a tie, as on a fresh host).

use super::exec::run_tool;
use super::IptablesError;

/// Which iptables implementation holds the host's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-legacy` (x_tables in the kernel).
    Legacy,
    /// `iptables-nft` (nf_tables through the iptables compatibility layer).
    Nft,
}

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iptables-*`.
    V4,
    /// `ip6tables-*`.
    V6,
}

const HINTS: [&str; 2] = [":KUBE-IPTABLES-HINT ", ":KUBE-KUBELET-CANARY "];

impl Backend {
    /// The decision, from `iptables-{nft,legacy}-save -t mangle` and the rule counts of each
    /// backend (both families). No I/O.
    pub fn choose(
        nft_mangle: &str,
        legacy_mangle: &str,
        legacy_rules: usize,
        nft_rules: usize,
    ) -> Backend {
        let hinted = |s: &str| s.lines().any(|l| HINTS.iter().any(|h| l.starts_with(h)));
        if hinted(nft_mangle) {
            Backend::Nft
        } else if hinted(legacy_mangle) || legacy_rules > nft_rules {
            Backend::Legacy
        } else {
            Backend::Nft
        }
    }

    /// Detects the backend of the host (or of network namespace `netns`) by running
    /// `iptables-nft-save`, `iptables-legacy-save` and their ip6tables twins.
    pub fn detect(netns: Option<&str>) -> Result<Backend, IptablesError> {
        let save = |program: &str, args: &[&str]| run_tool(program, args, netns, None, None);
        let count = |s: &str| s.lines().filter(|l| l.starts_with("-A ")).count();
        let nft_mangle = save("iptables-nft-save", &["-t", "mangle"])?;
        let legacy_mangle = save("iptables-legacy-save", &["-t", "mangle"])?;
        let legacy = count(&save("iptables-legacy-save", &[])?)
            + count(&save("ip6tables-legacy-save", &[])?);
        let nft =
            count(&save("iptables-nft-save", &[])?) + count(&save("ip6tables-nft-save", &[])?);
        let chosen = Backend::choose(&nft_mangle, &legacy_mangle, legacy, nft);
        tracing::info!(
            ?chosen,
            legacy_rules = legacy,
            nft_rules = nft,
            "iptables backend"
        );
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: &str = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
    const CANARY: &str = "*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n";

    #[test]
    fn kubelet_hint_wins_over_rule_counts() {
        assert_eq!(Backend::choose(HINT, "", 100, 0), Backend::Nft);
        assert_eq!(Backend::choose(CANARY, "", 100, 0), Backend::Nft);
        assert_eq!(Backend::choose("", HINT, 0, 100), Backend::Legacy);
        assert_eq!(Backend::choose(HINT, HINT, 0, 100), Backend::Nft);
    }

    #[test]
    fn without_hint_more_rules_wins_and_a_tie_is_nft() {
        assert_eq!(Backend::choose("", "", 3, 2), Backend::Legacy);
        assert_eq!(Backend::choose("", "", 2, 3), Backend::Nft);
        assert_eq!(Backend::choose("", "", 0, 0), Backend::Nft);
        // A rule that merely mentions the hint is not the hint chain.
        let mention = "*mangle\n-A PREROUTING -m comment --comment \":KUBE-IPTABLES-HINT \" -j ACCEPT\nCOMMIT\n";
        assert_eq!(Backend::choose(mention, "", 1, 0), Backend::Legacy);
    }
}
