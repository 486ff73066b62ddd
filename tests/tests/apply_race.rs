//! Two writers at once: a plan made before another writer's commit loses the race (its guard
//! finds the other's rows), is made again from the replica and lands without a duplicate;
//! the outcome says another writer changed the Northbound.

use ovn_vpc::sandbox::Sandbox;
use ovn_vpc::standalone::{ApplyOptions, Prepared};
use ovn_vpc_tests::nbctl;

const WORLD: &str = "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {name: shared}\nspec: {cidrs: [10.60.0.0/24], namespaces: [sh]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: pa, namespace: sh}\nspec: {containers: []}\n";

#[test]
fn a_plan_overtaken_by_another_writer_is_made_again_and_lands_once() {
    let sandbox = Sandbox::builder().start().unwrap();
    let nb = sandbox.nb_remote();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("w.yaml");
    std::fs::write(&f, WORLD).unwrap();
    let files = [f];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = Prepared::load(&nb, None, &files, ApplyOptions::merge())
            .await
            .unwrap();
        let b = Prepared::load(&nb, None, &files, ApplyOptions::merge())
            .await
            .unwrap();
        // Both plan on the empty Northbound; a commits first.
        let (pa, pb) = (a.plan().unwrap(), b.plan().unwrap());
        assert!(!pa.operations.is_empty() && !pb.operations.is_empty());
        let ra = a.apply_planned(pa).await.unwrap();
        assert_eq!(ra.raced, 0);
        let rb = b.apply_planned(pb).await.unwrap();
        assert_eq!(rb.raced, 1, "b's stale plan was not refused by its guards");
        assert!(
            rb.operations.is_empty(),
            "b's second plan should find everything in place: {:?}",
            rb.changes
        );
    });
    let switches = nbctl(
        &nb,
        &[
            "--bare",
            "--columns=_uuid",
            "find",
            "Logical_Switch",
            "name=shared",
        ],
    );
    assert_eq!(switches.split_whitespace().count(), 1, "duplicate switch");
    let ports = nbctl(
        &nb,
        &["--bare", "--columns=name", "list", "Logical_Switch_Port"],
    );
    let mut names: Vec<&str> = ports.split_whitespace().collect();
    names.sort();
    assert_eq!(names, vec!["pa.sh", "shared-default"], "{ports}");
}
