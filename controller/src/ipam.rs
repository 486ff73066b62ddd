//! IP address management per subnet, range-based: the used space of a pool is a set of
//! disjoint ranges, so a /8 or an IPv6 /64 costs memory in proportion to how fragmented its
//! allocations are, never to its size. Gateway and `excludeIps` are reserved up front; for
//! IPv4 the network and broadcast addresses too. Allocation is static (a requested address) or
//! the lowest free address or a random free one. No I/O: the controller rebuilds pools from `IP`
//! objects and OVN at start by replaying static allocations.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnetwork::IpNetwork;

/// Why an address could not be given or a pool built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// The address is not inside the subnet's CIDR.
    #[error("{ip} is outside {cidr}")]
    OutsideCidr {
        /// The address.
        ip: IpAddr,
        /// The subnet.
        cidr: IpNetwork,
    },
    /// The address is the gateway, excluded, or (IPv4) the network/broadcast address.
    #[error("{ip} is reserved in {cidr} (gateway, excludeIps, network or broadcast address)")]
    Reserved {
        /// The address.
        ip: IpAddr,
        /// The subnet.
        cidr: IpNetwork,
    },
    /// Someone else holds the address.
    #[error("{ip} is already allocated to {owner}")]
    InUse {
        /// The address.
        ip: IpAddr,
        /// Its holder.
        owner: String,
    },
    /// No free address is left.
    #[error("{cidr} has no free address left")]
    Exhausted {
        /// The subnet.
        cidr: IpNetwork,
    },
    /// A malformed `excludeIps` entry or address.
    #[error("invalid {what} {value:?}: {message}")]
    Invalid {
        /// What was being parsed (`excludeIps entry`, `gateway`).
        what: &'static str,
        /// The text.
        value: String,
        /// Why.
        message: String,
    },
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

/// A set of addresses as disjoint, non-adjacent inclusive ranges (`start → end`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: BTreeMap<u128, u128>,
}

impl RangeSet {
    /// Whether `v` is in the set.
    pub fn contains(&self, v: u128) -> bool {
        self.ranges
            .range(..=v)
            .next_back()
            .is_some_and(|(_, end)| *end >= v)
    }

    /// Adds `[start, end]`, merging with neighbours.
    pub fn insert(&mut self, mut start: u128, mut end: u128) {
        if start > end {
            return;
        }
        // Absorb a range that overlaps or touches on the left.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e.saturating_add(1) >= start {
                start = s;
                end = end.max(e);
                self.ranges.remove(&s);
            }
        }
        // Absorb ranges starting inside or right after.
        while let Some((&s, &e)) = self.ranges.range(start..).next() {
            if s > end.saturating_add(1) {
                break;
            }
            end = end.max(e);
            self.ranges.remove(&s);
        }
        self.ranges.insert(start, end);
    }

    /// Removes `[start, end]`, splitting ranges as needed.
    pub fn remove(&mut self, start: u128, end: u128) {
        if start > end {
            return;
        }
        let touching: Vec<(u128, u128)> = self
            .ranges
            .range(..=end)
            .filter(|(_, e)| **e >= start)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            self.ranges.remove(&s);
            if s < start {
                self.ranges.insert(s, start - 1);
            }
            if e > end {
                self.ranges.insert(end + 1, e);
            }
        }
    }

    /// Number of addresses in the set.
    pub fn count(&self) -> u128 {
        self.ranges.iter().map(|(s, e)| e - s + 1).sum()
    }

    /// Number of ranges (the memory cost).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The `n`-th address (0-based) of `[lo, hi]` that is *not* in the set.
    fn nth_outside(&self, lo: u128, hi: u128, mut n: u128) -> Option<u128> {
        let mut cursor = lo;
        for (&s, &e) in self.ranges.range(..=hi) {
            if e < cursor {
                continue;
            }
            if s > cursor {
                let gap = s.min(hi + 1) - cursor;
                if n < gap {
                    return Some(cursor + n);
                }
                n -= gap;
            }
            cursor = e.saturating_add(1);
            if cursor > hi || e == u128::MAX {
                return None;
            }
        }
        let gap = hi - cursor + 1;
        (n < gap).then_some(cursor + n)
    }
}

/// Parses one `excludeIps` entry: `a.b.c.d` or `a..b` (both ends inclusive, same family).
pub fn parse_range(s: &str) -> Result<(IpAddr, IpAddr), IpamError> {
    let bad = |m: &str| IpamError::Invalid {
        what: "excludeIps entry",
        value: s.to_string(),
        message: m.to_string(),
    };
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let a = IpAddr::from_str(a).map_err(|_| bad("not an IP address"))?;
    let b = IpAddr::from_str(b).map_err(|_| bad("not an IP address"))?;
    if a.is_ipv4() != b.is_ipv4() {
        return Err(bad("the two ends are of different families"));
    }
    if to_u128(a) > to_u128(b) {
        return Err(bad("the range ends before it starts"));
    }
    Ok((a, b))
}

/// The addresses of one CIDR.
#[derive(Debug, Clone)]
pub struct Pool {
    cidr: IpNetwork,
    lo: u128,
    hi: u128,
    reserved: RangeSet,
    used: RangeSet,
    owners: HashMap<u128, String>,
}

impl Pool {
    /// A pool for `cidr` with `gateway` and `exclude` (`excludeIps` entries) reserved; the
    /// entries must lie inside the CIDR (an entry partly outside is an error, so a typo does
    /// not silently exclude nothing).
    pub fn new(
        cidr: IpNetwork,
        gateway: Option<IpAddr>,
        exclude: &[&str],
    ) -> Result<Pool, IpamError> {
        let lo = to_u128(cidr.network());
        let hi = to_u128(cidr.broadcast_or_last());
        let mut reserved = RangeSet::default();
        if cidr.is_ipv4() && cidr.prefix() < 31 {
            reserved.insert(lo, lo);
            reserved.insert(hi, hi);
        }
        if cidr.is_ipv6() && cidr.prefix() < 127 {
            // The subnet-router anycast address.
            reserved.insert(lo, lo);
        }
        if let Some(g) = gateway {
            if !cidr.contains(g) {
                return Err(IpamError::OutsideCidr { ip: g, cidr });
            }
            reserved.insert(to_u128(g), to_u128(g));
        }
        for e in exclude {
            let (a, b) = parse_range(e)?;
            if a.is_ipv4() != cidr.is_ipv4() {
                continue; // the other family's entry of a dual-stack subnet
            }
            if !cidr.contains(a) || !cidr.contains(b) {
                return Err(IpamError::Invalid {
                    what: "excludeIps entry",
                    value: e.to_string(),
                    message: format!("not inside {cidr}"),
                });
            }
            reserved.insert(to_u128(a), to_u128(b));
        }
        Ok(Pool {
            cidr,
            lo,
            hi,
            reserved,
            used: RangeSet::default(),
            owners: HashMap::new(),
        })
    }

    /// The CIDR.
    pub fn cidr(&self) -> IpNetwork {
        self.cidr
    }

    /// Addresses that can still be given.
    pub fn available(&self) -> u128 {
        (self.hi - self.lo + 1) - self.reserved.count() - self.used.count()
    }

    /// Addresses given.
    pub fn using(&self) -> usize {
        self.owners.len()
    }

    /// Ranges held in memory (reserved + used).
    pub fn range_count(&self) -> usize {
        self.reserved.range_count() + self.used.range_count()
    }

    /// Whether `ip` is never given out here: the gateway, an `excludeIps` entry, or the
    /// network / broadcast (IPv6: subnet-router anycast) address.
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        self.cidr.contains(ip) && self.reserved.contains(to_u128(ip))
    }

    /// Who holds `ip`.
    pub fn owner(&self, ip: IpAddr) -> Option<&str> {
        self.owners.get(&to_u128(ip)).map(String::as_str)
    }

    /// Gives `ip` to `owner`. Idempotent for the same owner (a rebuild replays allocations).
    pub fn allocate_static(&mut self, ip: IpAddr, owner: &str) -> Result<(), IpamError> {
        if !self.cidr.contains(ip) {
            return Err(IpamError::OutsideCidr {
                ip,
                cidr: self.cidr,
            });
        }
        let v = to_u128(ip);
        if self.reserved.contains(v) {
            return Err(IpamError::Reserved {
                ip,
                cidr: self.cidr,
            });
        }
        if let Some(o) = self.owners.get(&v) {
            if o == owner {
                return Ok(());
            }
            return Err(IpamError::InUse {
                ip,
                owner: o.clone(),
            });
        }
        self.used.insert(v, v);
        self.owners.insert(v, owner.to_string());
        Ok(())
    }

    fn nth_free(&self, n: u128) -> Option<u128> {
        // Free = outside reserved ∪ used. Merge both views lazily: walk the union.
        let mut union = self.reserved.clone();
        for (s, e) in &self.used.ranges {
            union.insert(*s, *e);
        }
        union.nth_outside(self.lo, self.hi, n)
    }

    /// Gives the lowest free address to `owner`.
    pub fn allocate_next(&mut self, owner: &str) -> Result<IpAddr, IpamError> {
        let v = self
            .nth_free(0)
            .ok_or(IpamError::Exhausted { cidr: self.cidr })?;
        let ip = from_u128(v, self.cidr.is_ipv6());
        self.allocate_static(ip, owner)?;
        Ok(ip)
    }

    /// Gives a free address chosen by `pick` (given the number of free addresses, returns an
    /// index below it: a random number in production, anything in tests).
    pub fn allocate_random(
        &mut self,
        owner: &str,
        pick: impl FnOnce(u128) -> u128,
    ) -> Result<IpAddr, IpamError> {
        let free = self.available();
        if free == 0 {
            return Err(IpamError::Exhausted { cidr: self.cidr });
        }
        let n = pick(free) % free;
        let v = self
            .nth_free(n)
            .ok_or(IpamError::Exhausted { cidr: self.cidr })?;
        let ip = from_u128(v, self.cidr.is_ipv6());
        self.allocate_static(ip, owner)?;
        Ok(ip)
    }

    /// Returns `ip` to the pool (no-op when it was free).
    pub fn release(&mut self, ip: IpAddr) {
        let v = to_u128(ip);
        if self.owners.remove(&v).is_some() {
            self.used.remove(v, v);
        }
    }

    /// Returns every address held by `owner`.
    pub fn release_owner(&mut self, owner: &str) -> Vec<IpAddr> {
        let held: Vec<u128> = self
            .owners
            .iter()
            .filter(|(_, o)| o.as_str() == owner)
            .map(|(v, _)| *v)
            .collect();
        let v6 = self.cidr.is_ipv6();
        held.into_iter()
            .map(|v| {
                self.release(from_u128(v, v6));
                from_u128(v, v6)
            })
            .collect()
    }
}

trait LastAddress {
    fn broadcast_or_last(&self) -> IpAddr;
}

impl LastAddress for IpNetwork {
    fn broadcast_or_last(&self) -> IpAddr {
        match self {
            IpNetwork::V4(n) => IpAddr::V4(n.broadcast()),
            IpNetwork::V6(n) => {
                let host_bits = 128 - n.prefix() as u32;
                let mask = if host_bits == 128 {
                    u128::MAX
                } else {
                    (1u128 << host_bits) - 1
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | mask))
            }
        }
    }
}

/// A locally administered unicast MAC (`0a:…`) derived from `seed` (e.g. the owner and the
/// address), so a rebuild gives the same MAC without storing it.
pub fn mac_for(seed: &str) -> Mac {
    use std::hash::Hasher as _;
    // FNV-1a, 64 bits: stable across runs and versions (unlike std's RandomState).
    let mut h = fnv::FnvHasher::default();
    h.write(seed.as_bytes());
    let b = h.finish().to_be_bytes();
    Mac([0x0a, b[0], b[1], b[2], b[3], b[4]])
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Mac {
    /// A group (multicast or broadcast) address: the I/G bit of the first octet is set. No
    /// port can own one.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// `00:00:00:00:00:00`, which OVN treats as no address at all.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

/// Why a MAC address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (six two-digit hex octets separated by ':')")]
pub struct MacParseError(String);

impl FromStr for Mac {
    type Err = MacParseError;

    /// `0a:1b:2c:3d:4e:5f` (either case), the only form OVN's `addresses` column takes.
    fn from_str(s: &str) -> Result<Mac, MacParseError> {
        let bad = || MacParseError(s.chars().take(80).collect());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for o in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(cidr: &str, gw: Option<&str>, ex: &[&str]) -> Pool {
        Pool::new(cidr.parse().unwrap(), gw.map(ip), ex).unwrap()
    }

    #[test]
    fn macs_parse_in_the_form_ovn_takes_and_group_or_zero_macs_are_recognised() {
        let m: Mac = "0A:00:00:00:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "0a:00:00:00:00:01");
        assert!(!m.is_multicast() && !m.is_zero());
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!("ff:ff:ff:ff:ff:ff".parse::<Mac>().unwrap().is_multicast());
        assert!("00:00:00:00:00:00".parse::<Mac>().unwrap().is_zero());
        for bad in [
            "zz:zz",
            "",
            "0a:00:00:00:00",
            "0a:00:00:00:00:01:02",
            "0a-00-00-00-00-01",
            "0a:00:00:00:00:1",
            " 0a:00:00:00:00:01",
            "0a:00:00:00:00:+1",
            "0a:00:00:00:00:01\0",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gateway_exclusions_network_and_broadcast_are_never_given() {
        let mut p = pool("10.0.1.0/29", Some("10.0.1.1"), &["10.0.1.2..10.0.1.3"]);
        assert_eq!(p.available(), 3); // .4 .5 .6
        let got: Vec<IpAddr> = (0..3)
            .map(|i| p.allocate_next(&format!("p{i}")).unwrap())
            .collect();
        assert_eq!(got, [ip("10.0.1.4"), ip("10.0.1.5"), ip("10.0.1.6")]);
        assert!(matches!(
            p.allocate_next("x"),
            Err(IpamError::Exhausted { .. })
        ));
        for r in ["10.0.1.0", "10.0.1.1", "10.0.1.3", "10.0.1.7"] {
            assert!(
                matches!(
                    p.allocate_static(ip(r), "x"),
                    Err(IpamError::Reserved { .. })
                ),
                "{r}"
            );
        }
        assert!(matches!(
            p.allocate_static(ip("10.0.2.1"), "x"),
            Err(IpamError::OutsideCidr { .. })
        ));
    }

    #[test]
    fn static_allocations_are_exclusive_and_idempotent_per_owner() {
        let mut p = pool("10.0.0.0/24", Some("10.0.0.1"), &[]);
        p.allocate_static(ip("10.0.0.10"), "Pod/a/x").unwrap();
        p.allocate_static(ip("10.0.0.10"), "Pod/a/x").unwrap();
        assert_eq!(
            p.allocate_static(ip("10.0.0.10"), "Pod/a/y"),
            Err(IpamError::InUse {
                ip: ip("10.0.0.10"),
                owner: "Pod/a/x".into()
            })
        );
        assert_eq!(p.using(), 1);
        p.release(ip("10.0.0.10"));
        p.allocate_static(ip("10.0.0.10"), "Pod/a/y").unwrap();
        assert_eq!(p.release_owner("Pod/a/y"), [ip("10.0.0.10")]);
        assert_eq!(p.using(), 0);
    }

    #[test]
    fn huge_subnets_cost_ranges_not_addresses() {
        let mut v4 = pool(
            "10.0.0.0/8",
            Some("10.0.0.1"),
            &["10.255.0.0..10.255.255.255"],
        );
        for i in 0..1000 {
            v4.allocate_next(&format!("p{i}")).unwrap();
        }
        // Sequential allocations merge into one used range.
        assert!(v4.range_count() <= 4, "{}", v4.range_count());
        // network, gateway, and the exclusion (which holds the broadcast address).
        assert_eq!(v4.available(), (1u128 << 24) - 1 - 1 - 65536 - 1000);
        let mut v6 = pool("fd00:10::/64", Some("fd00:10::1"), &[]);
        let a = v6.allocate_next("p").unwrap();
        assert_eq!(a, ip("fd00:10::2"));
        let r = v6.allocate_random("q", |n| n / 2).unwrap();
        assert!(v6.cidr().contains(r));
        assert!(v6.range_count() <= 4);
        assert_eq!(v6.available(), (1u128 << 64) - 2 - 2);
    }

    #[test]
    fn malformed_exclusions_are_clear_errors() {
        let cidr: IpNetwork = "10.0.1.0/24".parse().unwrap();
        for bad in [
            "10.0.1.300",
            "10.0.1.9..10.0.1.2",
            "10.0.1.2..fd00::1",
            "x..y",
            "10.0.2.0..10.0.2.5",
        ] {
            let e = Pool::new(cidr, None, &[bad]).unwrap_err();
            assert!(matches!(e, IpamError::Invalid { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        // A dual-stack subnet lists both families' exclusions; each pool takes its own.
        assert!(Pool::new(cidr, None, &["fd00::5"]).is_ok());
        assert!(matches!(
            Pool::new(cidr, Some(ip("10.0.2.1")), &[]),
            Err(IpamError::OutsideCidr { .. })
        ));
    }

    #[test]
    fn macs_are_stable_and_locally_administered() {
        let a = mac_for("Pod/web/p0 10.0.1.5");
        assert_eq!(a, mac_for("Pod/web/p0 10.0.1.5"));
        assert_ne!(a, mac_for("Pod/web/p1 10.0.1.6"));
        assert_eq!(a.0[0] & 0b11, 0b10, "locally administered unicast");
        assert_eq!(a.to_string().len(), 17);
        // Pinned: a rebuild after an upgrade must give every port the MAC it already has.
        assert_eq!(a.to_string(), "0a:08:50:81:6e:f3");
        assert_eq!(mac_for("lrp vpc-a/a-net1").to_string(), "0a:ee:5b:40:aa:da");
        assert_eq!(mac_for("").to_string(), "0a:cb:f2:9c:e4:84");
    }

    proptest! {
        /// Random allocate/release/restart sequences: never a duplicate, never a reserved
        /// address, counts consistent, and a rebuild from the allocations (what a restart does
        /// from IP objects) gives the same pool.
        #[test]
        fn random_sequences_never_leak_or_duplicate(ops in prop::collection::vec((0u8..5, 0u16..64, any::<u64>()), 1..300)) {
            let mut p = pool("10.9.0.0/26", Some("10.9.0.1"), &["10.9.0.10..10.9.0.19"]);
            let total = p.available();
            let mut held: BTreeMap<IpAddr, String> = BTreeMap::new();
            for (kind, who, r) in ops {
                let owner = format!("Pod/ns/p{who}");
                match kind {
                    0 => if let Ok(a) = p.allocate_next(&owner) {
                        prop_assert!(held.insert(a, owner).is_none(), "duplicate {a}");
                    },
                    1 => if let Ok(a) = p.allocate_random(&owner, |n| (r as u128) % n) {
                        prop_assert!(held.insert(a, owner).is_none(), "duplicate {a}");
                    },
                    2 => {
                        let a = from_u128(to_u128(ip("10.9.0.0")) + (r % 64) as u128, false);
                        match p.allocate_static(a, &owner) {
                            Ok(()) => { let prev = held.insert(a, owner.clone()); prop_assert!(prev.is_none() || prev == Some(owner)); }
                            Err(IpamError::InUse { owner: o, .. }) => prop_assert_eq!(held.get(&a), Some(&o)),
                            Err(_) => prop_assert!(!held.contains_key(&a)),
                        }
                    }
                    3 => {
                        for a in p.release_owner(&owner) {
                            prop_assert_eq!(held.remove(&a), Some(owner.clone()));
                        }
                    }
                    _ => {
                        // Restart: rebuild from the recorded allocations.
                        let mut fresh = pool("10.9.0.0/26", Some("10.9.0.1"), &["10.9.0.10..10.9.0.19"]);
                        for (a, o) in &held {
                            fresh.allocate_static(*a, o).unwrap();
                        }
                        p = fresh;
                    }
                }
                prop_assert_eq!(p.using(), held.len());
                prop_assert_eq!(p.available(), total - held.len() as u128);
                for (a, o) in &held {
                    prop_assert_eq!(p.owner(*a), Some(o.as_str()));
                    let v = to_u128(*a);
                    prop_assert!(v != to_u128(ip("10.9.0.1")) && !(to_u128(ip("10.9.0.10"))..=to_u128(ip("10.9.0.19"))).contains(&v));
                }
            }
        }

        /// The range set agrees with a plain set of numbers.
        #[test]
        fn range_set_matches_a_plain_set(ops in prop::collection::vec((any::<bool>(), 0u128..200, 0u128..20), 1..100)) {
            let mut rs = RangeSet::default();
            let mut plain = std::collections::BTreeSet::new();
            for (add, start, len) in ops {
                let end = start + len;
                if add { rs.insert(start, end); (start..=end).for_each(|v| { plain.insert(v); }); }
                else { rs.remove(start, end); (start..=end).for_each(|v| { plain.remove(&v); }); }
                prop_assert_eq!(rs.count(), plain.len() as u128);
                for v in 0..230u128 { prop_assert_eq!(rs.contains(v), plain.contains(&v)); }
                // Ranges stay disjoint and non-adjacent.
                let r: Vec<(u128, u128)> = rs.ranges.iter().map(|(s, e)| (*s, *e)).collect();
                for w in r.windows(2) { prop_assert!(w[0].1 + 1 < w[1].0); }
                // nth_outside enumerates exactly the complement.
                let outside: Vec<u128> = (0..230u128).filter(|v| !plain.contains(v)).collect();
                for (i, v) in outside.iter().enumerate().take(20) {
                    prop_assert_eq!(rs.nth_outside(0, 229, i as u128), Some(*v));
                }
                prop_assert_eq!(rs.nth_outside(0, 229, outside.len() as u128), None);
            }
        }
    }
}
