//! `ovn-vpc apply` against a 3-member RAFT cluster whose leader is SIGKILLed while the apply
//! runs, at a different moment each round: the apply moves to the new leader and reports
//! success exactly when the Northbound holds the manifests (a re-plan shows nothing), never a
//! transport error for a transaction that committed.

use std::process::{Command, Stdio};
use std::time::Duration;

use ovn_vpc::sandbox::Sandbox;
use ovn_vpc_tests::ovn_vpc_bin;

fn world(round: usize, pods: usize) -> String {
    let mut y = format!(
        "apiVersion: ovnvpc.io/v1\nkind: Subnet\nmetadata: {{name: r{round}}}\nspec: {{cidrs: [10.{}.0.0/22], namespaces: [ns{round}]}}\n",
        100 + round
    );
    for i in 0..pods {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: ns{round}}}\nspec: {{containers: []}}\n"
        ));
    }
    y
}

#[test]
fn killing_the_leader_during_apply_moves_to_the_new_leader_and_tells_the_truth() {
    let bin = ovn_vpc_bin();
    let mut sandbox = Sandbox::builder().nb_cluster(3).start().unwrap();
    let remote = sandbox.nb_tcp_remote().unwrap();
    assert!(remote.matches("tcp:").count() == 3, "{remote}");
    let dir = tempfile::tempdir().unwrap();
    for round in 0..10 {
        let f = dir.path().join(format!("r{round}.yaml"));
        std::fs::write(&f, world(round, 400)).unwrap();
        let leader = sandbox.wait_nb_leader(None).unwrap();
        let child = Command::new(&bin)
            .args(["apply", "--db", &remote, "-f"])
            .arg(&f)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The kill lands 0, 40, …, 360 ms into the apply, each round at another of its steps
        // (connect, sync, plan, commit): the delay is the test's variable, not a wait.
        std::thread::sleep(Duration::from_millis(40 * round as u64));
        sandbox.kill_nb(leader).unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "round {round}: apply failed although the cluster kept a majority:\n{stdout}\n{stderr}"
        );
        let plan = Command::new(&bin)
            .args(["plan", "--db", &remote, "-f"])
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(
            plan.status.code(),
            Some(0),
            "round {round}: apply said success but the Northbound differs:\n{}",
            String::from_utf8_lossy(&plan.stdout)
        );
        sandbox.start_nb(leader).unwrap();
    }
}
