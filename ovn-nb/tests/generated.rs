//! The generated model is fresh and agrees with the schemas it came from.

use ovn_nb::{nb, server, vswitch, Table};
use ovsdb::DatabaseSchema;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_committed_generated_code_is_what_the_generator_produces_now() {
    for t in ovn_nb_codegen::TARGETS {
        let schema = std::fs::read_to_string(root().join(t.schema)).unwrap();
        let fresh = ovn_nb_codegen::generate(&schema, t.schema).unwrap();
        let committed = std::fs::read_to_string(root().join(t.output)).unwrap();
        assert!(
            fresh == committed,
            "{} is stale: run `cargo run -p ovn-nb-codegen` and commit the result",
            t.output
        );
    }
}

/// Every column of `T` exists in the schema with the same name, and the default row passes
/// the client-side schema check column by column (but for sets that must not be empty).
fn agrees<T: Table>(schema: &DatabaseSchema) {
    let table = schema.table(T::TABLE).unwrap();
    let schema_cols: Vec<&str> = table.columns.keys().map(String::as_str).collect();
    assert_eq!(T::COLUMNS, schema_cols.as_slice(), "{}", T::TABLE);
    let row = T::default().to_row();
    for (c, d) in &row {
        let ct = &table.columns[c].column_type;
        // A set that must hold at least one element (Logical_Router_Port.networks) has no
        // valid empty default: the caller must fill it, and the check at transact says so.
        if ct.min >= 1 && ct.max != Some(1) {
            assert!(table.check_value(c, d).is_err());
            continue;
        }
        table
            .check_value(c, d)
            .unwrap_or_else(|e| panic!("default of {e}"));
    }
    assert_eq!(T::from_row(&row).unwrap(), T::default(), "{}", T::TABLE);
}

#[test]
fn the_types_agree_with_the_schemas() {
    let nbs = DatabaseSchema::from_json_str(nb::SCHEMA).unwrap();
    assert_eq!(nb::TABLES.len(), nbs.tables.len());
    agrees::<nb::LogicalSwitch>(&nbs);
    agrees::<nb::LogicalSwitchPort>(&nbs);
    agrees::<nb::LogicalRouter>(&nbs);
    agrees::<nb::LogicalRouterPort>(&nbs);
    agrees::<nb::LogicalRouterStaticRoute>(&nbs);
    agrees::<nb::LogicalRouterPolicy>(&nbs);
    agrees::<nb::Nat>(&nbs);
    agrees::<nb::Acl>(&nbs);
    agrees::<nb::PortGroup>(&nbs);
    agrees::<nb::AddressSet>(&nbs);
    agrees::<nb::LoadBalancer>(&nbs);
    agrees::<nb::DhcpOptions>(&nbs);
    agrees::<nb::GatewayChassis>(&nbs);
    agrees::<nb::HaChassisGroup>(&nbs);
    agrees::<nb::NbGlobal>(&nbs);
    let vs = DatabaseSchema::from_json_str(vswitch::SCHEMA).unwrap();
    assert_eq!(vswitch::TABLES.len(), vs.tables.len());
    agrees::<vswitch::OpenVSwitch>(&vs);
    agrees::<vswitch::Bridge>(&vs);
    agrees::<vswitch::Port>(&vs);
    agrees::<vswitch::Interface>(&vs);
    let srv = DatabaseSchema::from_json_str(server::SCHEMA).unwrap();
    agrees::<server::Database>(&srv);
}

#[test]
fn typed_values_round_trip_through_rows() {
    use ovn_nb::{ColumnEnum, Ref};
    let acl = nb::Acl {
        action: nb::AclAction::AllowRelated,
        direction: nb::AclDirection::FromLport,
        priority: 1001,
        r#match: "ip4.src == 10.0.0.0/24".into(),
        external_ids: [("ovn-vpc/owner".to_string(), "Vpc/a".to_string())].into(),
        ..Default::default()
    };
    let row = acl.to_row();
    assert_eq!(row["action"].get_str("x"), None);
    assert_eq!(
        row["action"].as_atom().and_then(|a| a.as_str()),
        Some("allow-related")
    );
    assert_eq!(nb::Acl::from_row(&row).unwrap(), acl);
    assert_eq!(nb::AclAction::parse("drop"), Some(nb::AclAction::Drop));
    let route = nb::LogicalRouterStaticRoute {
        policy: Some(nb::LogicalRouterStaticRoutePolicy::SrcIp),
        bfd: Some(Ref::named("b")),
        ..Default::default()
    };
    assert_eq!(
        nb::LogicalRouterStaticRoute::from_row(&route.to_row()).unwrap(),
        route
    );
    // A value of the wrong shape is an error naming table and column.
    let mut bad = acl.to_row();
    bad.insert("priority".into(), ovsdb::Datum::atom("high"));
    let e = nb::Acl::from_row(&bad).unwrap_err();
    assert_eq!((e.table, e.column), ("ACL", "priority"));
    bad.insert("priority".into(), ovsdb::Datum::atom(1i64));
    bad.insert("action".into(), ovsdb::Datum::atom("frob"));
    assert!(nb::Acl::from_row(&bad).is_err());
}
