//! Helpers of the node shim tests: a fresh network namespace per test (`ovnvpc-...`, deleted
//! on drop, also when the test fails) and the distribution's iptables run inside it as an
//! independent witness.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use ovn_vpc::node::{Backend, Family, Iptables};
use ovn_vpc::sandbox::Netns;

/// Calico's jump in nat PREROUTING.
pub const CALI: &str = r#"-m comment --comment "cali:6gwbT8clXdHdC1b1" -j cali-PREROUTING"#;
/// kube-proxy's KUBE-SERVICES jump.
pub const KUBE: &str = r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#;
/// A CNI hostport plugin's jump.
pub const HOSTPORT: &str = "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT";

/// A fresh namespace and the engine bound to it.
pub struct Node {
    /// The namespace.
    pub ns: Netns,
    /// The backend the helpers use.
    pub backend: Backend,
    /// The family the helpers use.
    pub family: Family,
}

impl Node {
    /// A fresh namespace named `ovnvpc-ipt-PID-N`.
    pub fn new(backend: Backend, family: Family) -> Node {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ovnvpc-ipt-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Node {
            ns: Netns::create(&name).expect("ip netns add"),
            backend,
            family,
        }
    }

    pub fn ipt(&self) -> Iptables {
        Iptables::new(self.backend, self.family).in_netns(self.ns.name())
    }

    /// `iptables -w ARGS` in the namespace (`-w`: legacy tests in parallel share the xtables
    /// lock, which is not per namespace).
    pub fn iptables(&self, args: &str) {
        self.iptables_of(self.family, args);
    }

    /// `iptables -w ARGS` or `ip6tables -w ARGS` (of this backend) in the namespace.
    pub fn iptables_of(&self, family: Family, args: &str) {
        let ipt = Iptables::new(self.backend, family);
        let program = ipt.program("").trim_end_matches('-').to_string();
        let mut words: Vec<String> = vec!["-w".into()];
        words.extend(shell_words(args));
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), &program])
            .args(&words)
            .output()
            .expect("run iptables");
        assert!(
            out.status.success(),
            "{program} {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `iptables-save -t TABLE` in the namespace, raw.
    pub fn save_text(&self, table: &str) -> String {
        self.save_text_of(self.family, table)
    }

    /// `iptables-save -t TABLE` or `ip6tables-save -t TABLE` in the namespace, raw.
    pub fn save_text_of(&self, family: Family, table: &str) -> String {
        let ipt = Iptables::new(self.backend, family);
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), &ipt.program("save")])
            .args(["-t", table])
            .output()
            .expect("run iptables-save");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The rule specs of `chain` as iptables-save prints them.
    pub fn rules(&self, table: &str, chain: &str) -> Vec<String> {
        let prefix = format!("-A {chain} ");
        self.save_text(table)
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// kube-proxy, Calico and a CNI hostport plugin's nat PREROUTING, in that order.
    pub fn seed_foreign(&self, with_kube: bool) {
        self.iptables("-t nat -N cali-PREROUTING");
        self.iptables("-t nat -N KUBE-SERVICES");
        self.iptables("-t nat -N CNI-HOSTPORT-DNAT");
        self.iptables(&format!("-t nat -A PREROUTING {CALI}"));
        if with_kube {
            self.iptables(&format!("-t nat -A PREROUTING {KUBE}"));
        }
        self.iptables(&format!("-t nat -A PREROUTING {HOSTPORT}"));
    }
}

/// Enough of shell quoting for the rules above: double quotes group words.
pub fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

impl Node {
    /// `bash -c SCRIPT` in the namespace.
    pub fn sh(&self, script: &str) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "bash", "-c", script])
            .output()
            .expect("run bash in the namespace")
    }

    /// `ipset save` in the namespace.
    pub fn ipset_save(&self) -> String {
        let out = self.sh("ipset save");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `GET PATH` against the shim's health endpoint in the namespace: `(status, body)`, or
    /// `None` when nothing listens yet. Plain bash `/dev/tcp`, so no HTTP client is needed.
    pub fn http_get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        let out = self.sh(&format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
        ));
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }
}

/// `both_backends!(a, b)` makes tests `legacy::a`, `nft::a`, `legacy::b`, ... calling the
/// functions `a(Backend)`, `b(Backend)` of the invoking module with each backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod legacy {
            $(#[test] fn $name() { super::$name(ovn_vpc::node::Backend::Legacy) })*
        }
        mod nft {
            $(#[test] fn $name() { super::$name(ovn_vpc::node::Backend::Nft) })*
        }
    };
}
