//! `ovn-vpc show`: the Northbound topology as a tree, grouped by VPC. A router is a VPC
//! (named by its owner tag `Vpc/NAME` when it has one); a switch belongs to the router its
//! router-type port connects it to. Like `ovn-nbctl show`, but VPC-aware and with NAT, routes
//! and policies under their router.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use ovsdb::{Datum, Row};

use crate::dump::Dump;

const OWNER: &str = "ovn-vpc/owner";

fn s<'a>(row: &'a Row, col: &str) -> &'a str {
    row.get(col)
        .and_then(Datum::as_atom)
        .and_then(|a| a.as_str())
        .unwrap_or("")
}

fn uuid(row: &Row) -> String {
    row.get("_uuid").map(|d| d.to_string()).unwrap_or_default()
}

fn strings(d: Option<&Datum>) -> Vec<String> {
    d.map(|d| {
        d.as_set()
            .iter()
            .map(|a| {
                a.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| a.to_string())
            })
            .collect()
    })
    .unwrap_or_default()
}

fn refs(d: Option<&Datum>) -> Vec<String> {
    d.map(|d| d.as_set().iter().map(|a| a.to_string()).collect())
        .unwrap_or_default()
}

fn owner(row: &Row) -> Option<&str> {
    row.get("external_ids").and_then(|d| d.get_str(OWNER))
}

/// Renders the tree from a dump of the NB (all tables, or at least the ones shown).
pub fn render(dump: &Dump) -> String {
    let table = |name: &str| -> BTreeMap<String, &Row> {
        dump.tables
            .get(name)
            .map(|t| t.rows.iter().map(|r| (uuid(r), r)).collect())
            .unwrap_or_default()
    };
    let routers = table("Logical_Router");
    let lrps = table("Logical_Router_Port");
    let switches = table("Logical_Switch");
    let lsps = table("Logical_Switch_Port");
    let nats = table("NAT");
    let routes = table("Logical_Router_Static_Route");
    let policies = table("Logical_Router_Policy");
    let gcs = table("Gateway_Chassis");
    let ha_groups = table("HA_Chassis_Group");
    let ha_chassis = table("HA_Chassis");
    let lbs = table("Load_Balancer");

    // Which router each switch hangs off: switch port of type router → options:router-port →
    // the router holding that port.
    let lrp_router: BTreeMap<&str, &str> = routers
        .iter()
        .flat_map(|(ru, r)| {
            refs(r.get("ports"))
                .into_iter()
                .filter_map(|p| lrps.get(&p).map(|lrp| (s(lrp, "name"), ru.as_str())))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut switch_router: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (su, sw) in &switches {
        for p in refs(sw.get("ports")) {
            let Some(port) = lsps.get(&p) else { continue };
            if s(port, "type") == "router" {
                let peer = port
                    .get("options")
                    .and_then(|o| o.get_str("router-port"))
                    .unwrap_or("");
                if let Some(r) = lrp_router.get(peer) {
                    switch_router.entry(su.as_str()).or_default().insert(r);
                }
            }
        }
    }

    let mut out = String::new();
    let mut sorted_routers: Vec<(&String, &&Row)> = routers.iter().collect();
    sorted_routers.sort_by_key(|(_, r)| s(r, "name"));
    for (ru, r) in sorted_routers {
        match owner(r).and_then(|o| o.strip_prefix("Vpc/")) {
            Some(vpc) => {
                let _ = writeln!(out, "vpc {vpc} (router {})", s(r, "name"));
            }
            None => {
                let _ = writeln!(out, "router {} (not managed by ovn-vpc)", s(r, "name"));
            }
        }
        let mut lines: Vec<String> = Vec::new();
        for p in refs(r.get("ports")) {
            let Some(lrp) = lrps.get(&p) else { continue };
            let mut line = format!(
                "    port {} {} {}",
                s(lrp, "name"),
                s(lrp, "mac"),
                strings(lrp.get("networks")).join(" ")
            );
            let chassis: Vec<String> = refs(lrp.get("gateway_chassis"))
                .into_iter()
                .filter_map(|g| gcs.get(&g))
                .map(|g| {
                    format!(
                        "{}:{}",
                        s(g, "chassis_name"),
                        g.get("priority").map(|d| d.to_string()).unwrap_or_default()
                    )
                })
                .collect();
            if !chassis.is_empty() {
                line.push_str(&format!(" gateway-chassis [{}]", chassis.join(", ")));
            }
            // An HA chassis group: its chassis by priority.
            if let Some(g) = refs(lrp.get("ha_chassis_group"))
                .first()
                .and_then(|g| ha_groups.get(g))
            {
                let members: Vec<String> = refs(g.get("ha_chassis"))
                    .into_iter()
                    .filter_map(|c| ha_chassis.get(&c))
                    .map(|c| {
                        format!(
                            "{}:{}",
                            s(c, "chassis_name"),
                            c.get("priority").map(|d| d.to_string()).unwrap_or_default()
                        )
                    })
                    .collect();
                line.push_str(&format!(
                    " ha-chassis-group {} [{}]",
                    s(g, "name"),
                    members.join(", ")
                ));
            }
            lines.push(line);
        }
        sorted_lines(&mut out, lines);
        let mut lines: Vec<String> = Vec::new();
        for n in refs(r.get("nat")) {
            let Some(nat) = nats.get(&n) else { continue };
            lines.push(format!(
                "    nat {} {} <-> {}{}",
                s(nat, "type"),
                s(nat, "external_ip"),
                s(nat, "logical_ip"),
                owner(nat).map(|o| format!(" ({o})")).unwrap_or_default()
            ));
        }
        sorted_lines(&mut out, lines);
        let mut lines: Vec<String> = Vec::new();
        for rt in refs(r.get("static_routes")) {
            let Some(route) = routes.get(&rt) else {
                continue;
            };
            let policy = strings(route.get("policy"))
                .pop()
                .unwrap_or_else(|| "dst-ip".into());
            lines.push(format!(
                "    route {} via {} ({policy})",
                s(route, "ip_prefix"),
                s(route, "nexthop")
            ));
        }
        sorted_lines(&mut out, lines);
        let mut lines: Vec<String> = Vec::new();
        for pu in refs(r.get("policies")) {
            let Some(p) = policies.get(&pu) else { continue };
            lines.push(format!(
                "    policy {} {} {}",
                p.get("priority").map(|d| d.to_string()).unwrap_or_default(),
                s(p, "match"),
                s(p, "action")
            ));
        }
        sorted_lines(&mut out, lines);
        let mut lines: Vec<String> = Vec::new();
        for l in refs(r.get("load_balancer")) {
            let Some(lb) = lbs.get(&l) else { continue };
            let vips: Vec<String> = lb
                .get("vips")
                .map(|v| {
                    v.as_map()
                        .iter()
                        .map(|(k, val)| {
                            format!(
                                "{} -> {}",
                                k.as_str().unwrap_or(""),
                                val.as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            lines.push(format!(
                "    load-balancer {} {}",
                s(lb, "name"),
                vips.join(", ")
            ));
        }
        sorted_lines(&mut out, lines);
        let mut attached: Vec<&&Row> = switches
            .iter()
            .filter(|(su, _)| {
                switch_router
                    .get(su.as_str())
                    .is_some_and(|rs| rs.contains(ru.as_str()))
            })
            .map(|(_, sw)| sw)
            .collect();
        attached.sort_by_key(|sw| s(sw, "name"));
        for sw in attached {
            render_switch(&mut out, sw, &lsps, "    ");
        }
    }
    let mut loose: Vec<&&Row> = switches
        .iter()
        .filter(|(su, _)| !switch_router.contains_key(su.as_str()))
        .map(|(_, sw)| sw)
        .collect();
    loose.sort_by_key(|sw| s(sw, "name"));
    for sw in loose {
        render_switch(&mut out, sw, &lsps, "");
    }
    out
}

fn render_switch(out: &mut String, sw: &Row, lsps: &BTreeMap<String, &Row>, indent: &str) {
    let tag = owner(sw).map(|o| format!(" ({o})")).unwrap_or_default();
    let _ = writeln!(out, "{indent}switch {}{tag}", s(sw, "name"));
    let mut ports: Vec<&&Row> = refs(sw.get("ports"))
        .iter()
        .filter_map(|p| lsps.get(p))
        .collect();
    ports.sort_by_key(|p| s(p, "name"));
    for p in ports {
        let kind = match s(p, "type") {
            "" => String::new(),
            t => format!(" type={t}"),
        };
        let _ = writeln!(
            out,
            "{indent}    port {}{kind} {}",
            s(p, "name"),
            strings(p.get("addresses")).join(", ")
        );
    }
}

/// Writes lines in sorted order: sets in OVSDB have no order (they come back by UUID), and
/// the same database should always show the same way.
fn sorted_lines(out: &mut String, mut lines: Vec<String>) {
    lines.sort();
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}
