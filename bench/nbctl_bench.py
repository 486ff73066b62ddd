#!/usr/bin/python3
"""The build workload through ovn-nbctl, one process per transaction, as shell scripts do it.

  nbctl_bench.py nb --db REMOTE --switches S --ports P --mode per-port|per-switch
                    [--concurrency C] [--time-limit SECONDS]

per-switch: one `ovn-nbctl` per switch, its commands chained with `--`; per-port: one per
switch for the switch and its router port pair, then one per port (`lsp-add` +
`lsp-set-addresses`). C processes run at once. With --time-limit the per-port phase stops
once that much time has passed: the JSON line then says `"partial": true` and how many ports
were done, and bench/run extrapolates (a lower bound: each ovn-nbctl reads every port first,
so later ones are slower).

Prints one JSON line like `ovn-vpc bench nb`; client CPU is that of every ovn-nbctl process.
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload as w  # noqa: E402


def switch_commands(i, ports):
    ls, lrp, rp = w.switch_name(i), w.lrp_name(i), w.router_lsp_name(i)
    cmds = [
        ["ls-add", ls],
        ["lrp-add", w.ROUTER, lrp, w.mac(i, 1), w.lrp_network(i)],
        ["lsp-add", ls, rp],
        ["lsp-set-type", rp, "router"],
        ["lsp-set-addresses", rp, "router"],
        ["lsp-set-options", rp, "router-port=" + lrp],
    ]
    for j in range(ports):
        cmds += port_commands(i, j)
    return cmds


def port_commands(i, j):
    p = w.port_name(i, j)
    return [["lsp-add", w.switch_name(i), p], ["lsp-set-addresses", p, w.port_address(i, j)]]


def argv(db, cmds):
    out = ["ovn-nbctl", "--db=" + db]
    for k, c in enumerate(cmds):
        if k:
            out.append("--")
        out += c
    return out


def run_all(jobs, concurrency, deadline=None):
    """Runs the argvs of `jobs` with `concurrency` processes at once; returns how many ran.
    Stops starting new ones after `deadline` (time.monotonic())."""
    running = []
    done = 0

    def reap(p):
        if p.wait() != 0:
            sys.exit("ovn-nbctl failed (%d): %s\n%s" % (p.returncode, " ".join(p.args[:8]), p.stderr.read().decode()))
        p.stderr.close()

    for job in jobs:
        if deadline is not None and time.monotonic() > deadline:
            break
        while len(running) >= concurrency:
            p = running.pop(0)
            reap(p)
            done += 1
        running.append(subprocess.Popen(job, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in running:
        reap(p)
        done += 1
    return done


def nb(args):
    w.check_sizes(args.switches, args.ports)
    S, P = args.switches, args.ports
    per_switch = args.mode == "per-switch"
    cpu0 = w.cpu_seconds(children=True)
    t0 = time.monotonic()
    run_all([argv(args.db, [["lr-add", w.ROUTER]])], 1)
    run_all((argv(args.db, switch_commands(i, P if per_switch else 0)) for i in range(S)),
            args.concurrency)
    transactions = 1 + S
    ports_done = S * (P + 1) if per_switch else S
    partial = False
    if not per_switch:
        deadline = t0 + args.time_limit if args.time_limit else None
        jobs = (argv(args.db, port_commands(k // P, k % P)) for k in range(S * P))
        n = run_all(jobs, args.concurrency, deadline)
        transactions += n
        ports_done += n
        partial = n < S * P
    seconds = time.monotonic() - t0
    cpu = w.cpu_seconds(children=True) - cpu0
    rec = {
        "tool": "ovn-nbctl",
        "mode": args.mode,
        "concurrency": args.concurrency,
        "ports": ports_done,
        "seconds": round(seconds, 4),
        "switches": S,
        "ports_per_switch": P,
        "transactions": transactions,
        "client_cpu_seconds": round(cpu, 4),
    }
    if partial:
        rec.update(partial=True, target_ports=S * (P + 1))
    w.emit(rec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("nb")
    a.add_argument("--db", default=w.default_db(), required=w.default_db() is None)
    a.add_argument("--switches", type=int, default=100)
    a.add_argument("--ports", type=int, default=100)
    a.add_argument("--mode", choices=["per-port", "per-switch"], required=True)
    a.add_argument("--concurrency", type=int, default=1)
    a.add_argument("--time-limit", type=float)
    args = ap.parse_args()
    nb(args)


if __name__ == "__main__":
    main()
