#!/usr/bin/python3
"""The benchmark workloads through ovsdbapp (the python-ovs IDL), as its users write them.

  ovsdbapp_bench.py nb --db REMOTE --switches S --ports P --mode per-port|per-switch [--concurrency C]
  ovsdbapp_bench.py sync --db REMOTE [--expect-rows N]

Each prints one JSON line, the same fields as `ovn-vpc bench nb|sync`. Concurrency C means C
Python threads submitting transactions through the one API object (ovsdbapp's connection
thread then commits them one after the other: that is how ovsdbapp users parallelize).
The clock starts once the API is connected (schema fetched, initial contents loaded), as it
starts for `ovn-vpc bench nb` once its client is connected and has the schema.
"""

import argparse
import itertools
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload as w  # noqa: E402

from ovsdbapp.backend.ovs_idl import connection  # noqa: E402
from ovsdbapp.schema.ovn_northbound import impl_idl  # noqa: E402

TIMEOUT = 600


def connect(remote):
    idl = connection.OvsdbIdl.from_server(remote, "OVN_Northbound")
    conn = connection.Connection(idl, timeout=TIMEOUT)
    return idl, impl_idl.OvnNbApiIdlImpl(conn)


def run_jobs(n, concurrency, job):
    """job(0..n) on `concurrency` threads sharing the work; the first error is raised."""
    if concurrency <= 1:
        for k in range(n):
            job(k)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if errors:
                    return
            k = next(counter)
            if k >= n:
                return
            try:
                job(k)
            except BaseException as e:  # reported by the main thread
                with lock:
                    errors.append(e)
                return

    threads = [threading.Thread(target=worker) for _ in range(min(concurrency, max(n, 1)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def nb(args):
    w.check_sizes(args.switches, args.ports)
    idl, api = connect(args.db)
    S, P = args.switches, args.ports
    per_switch = args.mode == "per-switch"

    def switch_txn(i):
        ls = w.switch_name(i)
        lrp = w.lrp_name(i)
        rp = w.router_lsp_name(i)
        with api.transaction(check_error=True) as txn:
            txn.add(api.ls_add(ls))
            txn.add(api.lrp_add(w.ROUTER, lrp, w.mac(i, 1), [w.lrp_network(i)]))
            txn.add(api.lsp_add(ls, rp))
            txn.add(api.lsp_set_type(rp, "router"))
            txn.add(api.lsp_set_addresses(rp, ["router"]))
            txn.add(api.lsp_set_options(rp, **{"router-port": lrp}))
            if per_switch:
                for j in range(P):
                    p = w.port_name(i, j)
                    txn.add(api.lsp_add(ls, p))
                    txn.add(api.lsp_set_addresses(p, [w.port_address(i, j)]))

    def port_txn(k):
        i, j = divmod(k, P)
        p = w.port_name(i, j)
        with api.transaction(check_error=True) as txn:
            txn.add(api.lsp_add(w.switch_name(i), p))
            txn.add(api.lsp_set_addresses(p, [w.port_address(i, j)]))

    cpu0 = w.cpu_seconds()
    t0 = time.monotonic()
    api.lr_add(w.ROUTER).execute(check_error=True)
    run_jobs(S, args.concurrency, switch_txn)
    transactions = 1 + S
    if not per_switch:
        run_jobs(S * P, args.concurrency, port_txn)
        transactions += S * P
    seconds = time.monotonic() - t0
    cpu = w.cpu_seconds() - cpu0

    lsps = len(idl.tables["Logical_Switch_Port"].rows)
    if lsps != S * (P + 1) or len(idl.tables["Logical_Switch"].rows) != S:
        sys.exit("ovsdbapp build: expected %d ports, the IDL has %d" % (S * (P + 1), lsps))
    w.emit({
        "tool": "ovsdbapp",
        "mode": args.mode,
        "concurrency": args.concurrency,
        "ports": S * (P + 1),
        "seconds": round(seconds, 4),
        "switches": S,
        "ports_per_switch": P,
        "transactions": transactions,
        "client_cpu_seconds": round(cpu, 4),
    })


def sync(args):
    rss0 = w.proc_status_kb("VmRSS")
    cpu0 = w.cpu_seconds()
    t0 = time.monotonic()
    # Connection.start() (called by the API) returns once the IDL has loaded the initial
    # contents of every registered table: from_server() registers them all.
    idl, api = connect(args.db)
    rows = sum(len(t.rows) for t in idl.tables.values())
    if args.expect_rows is not None:
        # Belt and braces: should start() ever return before the whole reply is in.
        while rows < args.expect_rows and time.monotonic() - t0 < TIMEOUT:
            time.sleep(0.001)
            with api.ovsdb_connection.lock:
                rows = sum(len(t.rows) for t in idl.tables.values())
    seconds = time.monotonic() - t0
    cpu = w.cpu_seconds() - cpu0
    w.emit({
        "tool": "ovsdbapp",
        "rows": rows,
        "seconds": round(seconds, 4),
        "rss_kb": w.proc_status_kb("VmRSS"),
        "logical_switch_ports": len(idl.tables["Logical_Switch_Port"].rows),
        "client_cpu_seconds": round(cpu, 4),
        "rss_before_kb": rss0,
        "peak_rss_kb": w.proc_status_kb("VmHWM"),
    })


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("nb")
    a.add_argument("--db", default=w.default_db(), required=w.default_db() is None)
    a.add_argument("--switches", type=int, default=100)
    a.add_argument("--ports", type=int, default=100)
    a.add_argument("--mode", choices=["per-port", "per-switch"], required=True)
    a.add_argument("--concurrency", type=int, default=1)
    s = sub.add_parser("sync")
    s.add_argument("--db", default=w.default_db(), required=w.default_db() is None)
    s.add_argument("--expect-rows", type=int)
    args = ap.parse_args()
    nb(args) if args.cmd == "nb" else sync(args)
    # Skip the IDL's teardown (and the connection thread's join): nothing left to measure.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
