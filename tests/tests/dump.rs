//! `ovn-vpc dump` agrees with `ovsdb-client -f json dump` row for row on a populated NB.

use ovn_vpc::dump::dump;
use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::{nbctl, ovsdb_client_dump};
use ovsdb::Datum;

#[tokio::test]
async fn dump_json_matches_ovsdb_client_row_for_row() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    nbctl(
        &nb,
        &[
            "ls-add",
            "sw0",
            "--",
            "lsp-add",
            "sw0",
            "p0",
            "--",
            "lsp-set-addresses",
            "p0",
            "0a:00:00:00:00:02 10.0.0.2",
        ],
    );
    nbctl(
        &nb,
        &[
            "lr-add",
            "r0",
            "--",
            "lrp-add",
            "r0",
            "r0-sw0",
            "0a:00:00:00:00:01",
            "10.0.0.1/24",
        ],
    );
    nbctl(
        &nb,
        &["lr-nat-add", "r0", "snat", "172.16.0.10", "10.0.0.0/24"],
    );
    nbctl(&nb, &["lr-route-add", "r0", "0.0.0.0/0", "172.16.0.1"]);
    nbctl(
        &nb,
        &[
            "acl-add",
            "sw0",
            "to-lport",
            "1000",
            "ip4.src == 10.0.0.5",
            "drop",
        ],
    );
    nbctl(
        &nb,
        &[
            "set",
            "Logical_Switch",
            "sw0",
            "external_ids:ovn-vpc/owner=Subnet/a",
            "other_config:mcast_snoop=true",
        ],
    );

    let (client, conn) = ovsdb::connect(&nb).await.unwrap();
    tokio::spawn(conn);
    let ours = dump(&client, "OVN_Northbound", &[]).await.unwrap();
    let json = ours.to_json();
    let want = ovsdb_client_dump(&nb, "OVN_Northbound", &[]);
    assert_eq!(json.as_object().unwrap().len(), want.len(), "same tables");
    let mut compared = 0;
    for (table, rows) in &want {
        let got = json[table].as_array().unwrap();
        assert_eq!(got.len(), rows.len(), "{table}: row count");
        for row in got {
            let uuid = row["_uuid"].as_str().unwrap();
            let expected = &rows[uuid];
            for (col, datum) in expected {
                let ours: Datum = serde_json::from_value(row[col].clone()).unwrap();
                assert_eq!(&ours, datum, "{table} {uuid} {col}");
                compared += 1;
            }
            assert_eq!(
                row.as_object().unwrap().len(),
                expected.len() + 1,
                "{table}: same columns"
            );
        }
    }
    assert!(compared > 50, "compared only {compared} values");

    // Named tables only, and the text form names them with aligned headings.
    let some = dump(
        &client,
        "OVN_Northbound",
        &["Logical_Switch".into(), "NAT".into()],
    )
    .await
    .unwrap();
    assert_eq!(some.tables.len(), 2);
    let text = some.to_text();
    assert!(
        text.contains("Logical_Switch table") && text.contains("NAT table"),
        "{text}"
    );
    assert!(
        text.contains("172.16.0.10") && text.contains("mcast_snoop=true"),
        "{text}"
    );
    // An unknown table is refused before anything is read.
    assert!(dump(&client, "OVN_Northbound", &["Nope".into()])
        .await
        .is_err());
}

/// `ovn-vpc dump` (text) of a row whose cell is over 65,535 characters: it used to panic with
/// "Formatting argument out of range" (issue 12, item 3); now the whole cell is printed.
#[test]
fn dump_text_prints_a_cell_longer_than_65535_characters() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let long = "v".repeat(70_000);
    nbctl(
        &nb,
        &[
            "ls-add",
            "wide",
            "--",
            "set",
            "Logical_Switch",
            "wide",
            &format!("external_ids:big={long}"),
        ],
    );
    nbctl(&nb, &["ls-add", "narrow"]);
    let out = std::process::Command::new(ovn_vpc_tests::ovn_vpc_bin())
        .args(["dump", "--db", &nb, "Logical_Switch"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let wide = text
        .lines()
        .find(|l| l.contains(" wide"))
        .unwrap_or_else(|| {
            panic!(
                "no row for switch wide in:\n{}",
                &text[..2000.min(text.len())]
            )
        });
    assert!(
        wide.contains(&format!("{{big={long}}}")),
        "the cell was cut"
    );
    // The column after the wide one (name) starts past it on every line.
    let heading = text.lines().nth(1).unwrap();
    let name_at = heading.find(" name ").unwrap() + 1;
    assert!(name_at > 70_000, "{name_at}");
    let narrow = text.lines().find(|l| l.contains(" narrow")).unwrap();
    assert!(narrow[name_at..].starts_with("narrow "), "not aligned");
    assert!(wide[name_at..].starts_with("wide "), "not aligned");
}
