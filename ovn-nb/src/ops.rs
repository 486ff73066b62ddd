//! Operations that read like `ovn-nbctl` but compose into one transaction.
//!
//! Every row created here carries the owner tag of the caller's [`Identity`] (the object it
//! belongs to: `Vpc/vpc-a`, `Pod/web/nginx-0`), and every write to an existing row is guarded:
//! a `wait` that fails the whole transaction unless the row carries that owner tag, so a row
//! created by someone else is never modified or deleted.
//!
//! ```
//! use ovn_nb::{nb, ops::Txn, Identity};
//! const ME: Identity = Identity::new("me/owner", "me/key", "me/");
//! let mut txn = Txn::new(ME);
//! let ls = txn.ls_add("Subnet/a", nb::LogicalSwitch { name: "sw0".into(), ..Default::default() });
//! txn.lsp_add("Pod/default/p0", &ls, nb::LogicalSwitchPort {
//!     name: "p0".into(),
//!     addresses: vec!["0a:00:00:00:00:02 10.0.0.2".into()],
//!     ..Default::default()
//! });
//! assert_eq!(txn.operations().len(), 3); // insert switch, insert port, link it
//! ```

use ovsdb::{Atom, Condition, Datum, Mutation, Operation, Row, Uuid};

use crate::model::{AtomValue, Ref, RefTarget, Table};
use crate::nb;
use crate::Identity;

/// Where an ACL goes: a logical switch, or a port group (`acl-add --type=port-group`).
#[derive(Debug, Clone)]
pub enum AclTarget {
    /// `ovn-nbctl acl-add SWITCH …`
    Switch(Ref<nb::LogicalSwitch>),
    /// `ovn-nbctl --type=port-group acl-add PG …`
    PortGroup(Ref<nb::PortGroup>),
}

/// Where a load balancer is attached.
#[derive(Debug, Clone)]
pub enum LbTarget {
    /// `ovn-nbctl ls-lb-add SWITCH LB`
    Switch(Ref<nb::LogicalSwitch>),
    /// `ovn-nbctl lr-lb-add ROUTER LB`
    Router(Ref<nb::LogicalRouter>),
}

/// A transaction being built. [`Txn::operations`] hands the operation list to
/// `Client::transact`.
#[derive(Debug)]
pub struct Txn {
    identity: Identity,
    ops: Vec<Operation>,
    next: u32,
}

fn target_atom<T>(r: &Ref<T>) -> Atom {
    r.to_atom()
}

impl Txn {
    /// An empty transaction whose rows are owned by `identity`'s tags.
    pub fn new(identity: Identity) -> Txn {
        Txn {
            identity,
            ops: Vec::new(),
            next: 0,
        }
    }

    fn owner_tag(&self, owner: &str) -> Datum {
        Datum::map([(self.identity.owner_key, owner)])
    }

    /// The operations, in order.
    pub fn operations(self) -> Vec<Operation> {
        self.ops
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn fresh_name(&mut self, table: &str) -> String {
        self.next += 1;
        format!(
            "{}{}",
            table.to_ascii_lowercase().replace('_', ""),
            self.next
        )
    }

    /// Inserts `row` tagged with `owner` and returns a reference usable in the same
    /// transaction. Tables without `external_ids` are inserted untagged.
    pub fn insert<T: Table>(&mut self, owner: &str, row: T) -> Ref<T> {
        let name = self.fresh_name(T::TABLE);
        let mut r = row.to_row();
        if let Some(ids) = r.get_mut("external_ids") {
            let mut pairs: Vec<(Atom, Atom)> = ids.as_map().to_vec();
            pairs.push((Atom::string(self.identity.owner_key), Atom::string(owner)));
            *ids = Datum::map(pairs);
        }
        self.ops.push(Operation::Insert {
            table: T::TABLE.into(),
            row: r,
            uuid_name: Some(name.clone()),
        });
        Ref::named(name)
    }

    /// Fails the transaction unless the existing row `uuid` of `table` carries `owner`. Rows
    /// inserted in this transaction need no guard.
    fn guard(&mut self, table: &str, target: &Atom, owner: &str) {
        let Atom::Uuid(uuid) = target else {
            return;
        };
        self.ops.push(Operation::Wait {
            table: table.into(),
            conditions: vec![
                Condition::uuid(*uuid),
                Condition::includes("external_ids", self.owner_tag(owner)),
            ],
            columns: vec!["_uuid".into()],
            until_equal: true,
            rows: vec![Row::from([("_uuid".to_string(), Datum::atom(*uuid))])],
            timeout_ms: Some(0),
        });
    }

    fn link(&mut self, parent_table: &str, parent: Atom, column: &str, child: Atom, owner: &str) {
        self.guard(parent_table, &parent, owner);
        self.ops.push(Operation::Mutate {
            table: parent_table.into(),
            conditions: vec![Condition::eq("_uuid", parent)],
            mutations: vec![Mutation::insert(column, Datum::atom(child))],
        });
    }

    /// `ovn-nbctl ls-add`.
    pub fn ls_add(&mut self, owner: &str, ls: nb::LogicalSwitch) -> Ref<nb::LogicalSwitch> {
        self.insert(owner, ls)
    }

    /// `ovn-nbctl lsp-add SWITCH PORT` (with the port's addresses, type, options as given).
    pub fn lsp_add(
        &mut self,
        owner: &str,
        switch: &Ref<nb::LogicalSwitch>,
        lsp: nb::LogicalSwitchPort,
    ) -> Ref<nb::LogicalSwitchPort> {
        let r = self.insert(owner, lsp);
        self.link(
            nb::LogicalSwitch::TABLE,
            target_atom(switch),
            "ports",
            r.to_atom(),
            owner,
        );
        r
    }

    /// `ovn-nbctl lr-add`.
    pub fn lr_add(&mut self, owner: &str, lr: nb::LogicalRouter) -> Ref<nb::LogicalRouter> {
        self.insert(owner, lr)
    }

    /// `ovn-nbctl lrp-add ROUTER PORT MAC NETWORK…`.
    pub fn lrp_add(
        &mut self,
        owner: &str,
        router: &Ref<nb::LogicalRouter>,
        lrp: nb::LogicalRouterPort,
    ) -> Ref<nb::LogicalRouterPort> {
        let r = self.insert(owner, lrp);
        self.link(
            nb::LogicalRouter::TABLE,
            target_atom(router),
            "ports",
            r.to_atom(),
            owner,
        );
        r
    }

    /// `ovn-nbctl lrp-set-gateway-chassis PORT CHASSIS PRIORITY`.
    pub fn lrp_set_gateway_chassis(
        &mut self,
        owner: &str,
        lrp: &Ref<nb::LogicalRouterPort>,
        port_name: &str,
        chassis: &str,
        priority: i64,
    ) -> Ref<nb::GatewayChassis> {
        let gc = self.insert(
            owner,
            nb::GatewayChassis {
                name: format!("{port_name}-{chassis}"),
                chassis_name: chassis.into(),
                priority,
                ..Default::default()
            },
        );
        self.link(
            nb::LogicalRouterPort::TABLE,
            target_atom(lrp),
            "gateway_chassis",
            gc.to_atom(),
            owner,
        );
        gc
    }

    /// `ovn-nbctl ha-chassis-group-add` with its members (`ha-chassis-group-add-chassis`).
    pub fn ha_chassis_group_add(
        &mut self,
        owner: &str,
        name: &str,
        chassis: &[(&str, i64)],
    ) -> Ref<nb::HaChassisGroup> {
        let members: Vec<Ref<nb::HaChassis>> = chassis
            .iter()
            .map(|(c, p)| {
                self.insert(
                    owner,
                    nb::HaChassis {
                        chassis_name: (*c).into(),
                        priority: *p,
                        ..Default::default()
                    },
                )
            })
            .collect();
        self.insert(
            owner,
            nb::HaChassisGroup {
                name: name.into(),
                ha_chassis: members,
                ..Default::default()
            },
        )
    }

    /// `ovn-nbctl lr-nat-add ROUTER TYPE EXTERNAL_IP LOGICAL_IP [LOGICAL_PORT EXTERNAL_MAC]`.
    pub fn lr_nat_add(
        &mut self,
        owner: &str,
        router: &Ref<nb::LogicalRouter>,
        nat: nb::Nat,
    ) -> Ref<nb::Nat> {
        let r = self.insert(owner, nat);
        self.link(
            nb::LogicalRouter::TABLE,
            target_atom(router),
            "nat",
            r.to_atom(),
            owner,
        );
        r
    }

    /// `ovn-nbctl lr-route-add ROUTER PREFIX NEXTHOP [PORT]` (`--policy=src-ip` via the row).
    pub fn lr_route_add(
        &mut self,
        owner: &str,
        router: &Ref<nb::LogicalRouter>,
        route: nb::LogicalRouterStaticRoute,
    ) -> Ref<nb::LogicalRouterStaticRoute> {
        let r = self.insert(owner, route);
        self.link(
            nb::LogicalRouter::TABLE,
            target_atom(router),
            "static_routes",
            r.to_atom(),
            owner,
        );
        r
    }

    /// `ovn-nbctl lr-policy-add ROUTER PRIORITY MATCH ACTION [NEXTHOP]`.
    pub fn lr_policy_add(
        &mut self,
        owner: &str,
        router: &Ref<nb::LogicalRouter>,
        policy: nb::LogicalRouterPolicy,
    ) -> Ref<nb::LogicalRouterPolicy> {
        let r = self.insert(owner, policy);
        self.link(
            nb::LogicalRouter::TABLE,
            target_atom(router),
            "policies",
            r.to_atom(),
            owner,
        );
        r
    }

    /// `ovn-nbctl pg-add PORT_GROUP [PORT…]`.
    pub fn pg_add(&mut self, owner: &str, pg: nb::PortGroup) -> Ref<nb::PortGroup> {
        self.insert(owner, pg)
    }

    /// `ovn-nbctl create Address_Set`.
    pub fn address_set_add(&mut self, owner: &str, set: nb::AddressSet) -> Ref<nb::AddressSet> {
        self.insert(owner, set)
    }

    /// `ovn-nbctl acl-add {SWITCH | --type=port-group PG} DIRECTION PRIORITY MATCH VERDICT`.
    pub fn acl_add(&mut self, owner: &str, target: &AclTarget, acl: nb::Acl) -> Ref<nb::Acl> {
        let r = self.insert(owner, acl);
        match target {
            AclTarget::Switch(s) => self.link(
                nb::LogicalSwitch::TABLE,
                target_atom(s),
                "acls",
                r.to_atom(),
                owner,
            ),
            AclTarget::PortGroup(p) => self.link(
                nb::PortGroup::TABLE,
                target_atom(p),
                "acls",
                r.to_atom(),
                owner,
            ),
        }
        r
    }

    /// `ovn-nbctl lb-add` (the row) and `ls-lb-add` / `lr-lb-add` for each target.
    pub fn lb_add(
        &mut self,
        owner: &str,
        lb: nb::LoadBalancer,
        attach: &[LbTarget],
    ) -> Ref<nb::LoadBalancer> {
        let r = self.insert(owner, lb);
        for t in attach {
            match t {
                LbTarget::Switch(s) => self.link(
                    nb::LogicalSwitch::TABLE,
                    target_atom(s),
                    "load_balancer",
                    r.to_atom(),
                    owner,
                ),
                LbTarget::Router(lr) => self.link(
                    nb::LogicalRouter::TABLE,
                    target_atom(lr),
                    "load_balancer",
                    r.to_atom(),
                    owner,
                ),
            }
        }
        r
    }

    /// `ovn-nbctl dhcp-options-create CIDR` + `dhcp-options-set-options`.
    pub fn dhcp_options_add(&mut self, owner: &str, opts: nb::DhcpOptions) -> Ref<nb::DhcpOptions> {
        self.insert(owner, opts)
    }

    /// Sets columns of an existing row of ours (`ovn-nbctl set TABLE ROW COLUMN=VALUE…`).
    pub fn update<T: Table>(&mut self, owner: &str, uuid: Uuid, columns: Row) {
        self.guard(T::TABLE, &Atom::Uuid(uuid), owner);
        self.ops.push(Operation::Update {
            table: T::TABLE.into(),
            conditions: vec![Condition::uuid(uuid)],
            row: columns,
        });
    }

    /// Deletes an existing row of ours (`ovn-nbctl destroy` / `ls-del` / `lr-del`). Rows of
    /// non-root tables (ports, NAT, routes…) are removed from their parent instead with
    /// [`Txn::unlink`]; the database then garbage-collects them.
    pub fn delete<T: Table>(&mut self, owner: &str, uuid: Uuid) {
        self.guard(T::TABLE, &Atom::Uuid(uuid), owner);
        self.ops.push(Operation::Delete {
            table: T::TABLE.into(),
            conditions: vec![Condition::uuid(uuid)],
        });
    }

    /// Removes `child` from `column` of the parent row (`lsp-del`, `lrp-del`, `lr-nat-del`,
    /// `lr-route-del`, `acl-del` …): both must be ours.
    pub fn unlink<P: Table>(
        &mut self,
        owner: &str,
        parent: Uuid,
        column: &str,
        child_table: &str,
        child: Uuid,
    ) {
        self.guard(child_table, &Atom::Uuid(child), owner);
        self.guard(P::TABLE, &Atom::Uuid(parent), owner);
        self.ops.push(Operation::Mutate {
            table: P::TABLE.into(),
            conditions: vec![Condition::uuid(parent)],
            mutations: vec![Mutation::delete(column, Datum::atom(child))],
        });
    }

    /// Appends an operation built by hand (e.g. a `wait` guarding uniqueness).
    pub fn push(&mut self, op: Operation) {
        self.ops.push(op);
    }
}

/// The reference to an existing row.
pub fn existing<T>(uuid: Uuid) -> Ref<T> {
    Ref::uuid(uuid)
}

impl<T> Ref<T> {
    /// Whether this refers to a row inserted in the same transaction.
    pub fn is_named(&self) -> bool {
        matches!(self.target(), RefTarget::Named(_))
    }
}
