"""The benchmark workload: names and addresses, shared by the ovsdbapp and ovn-nbctl runs.

Kept in step with controller/src/bench.rs (`ovn-vpc bench nb`), so every tool builds the very
same rows: router `lr0`; switch `ls{i}` on `10.{i//16}.{(i%16)*16}.0/20` with router port
`lrp-ls{i}` (`.1`, MAC `0a:00:ii:ii:00:01`) and its peer `ls{i}-lr0` (type `router`); port
`ls{i}-p{j}` at host number j+2, MAC `0a:00:ii:ii:jj:jj`.
"""

import json
import os
import resource
import sys

ROUTER = "lr0"
MAX_SWITCHES = 4096
MAX_PORTS = 4093


def switch_name(i):
    return "ls%d" % i


def lrp_name(i):
    return "lrp-ls%d" % i


def router_lsp_name(i):
    return "ls%d-%s" % (i, ROUTER)


def port_name(i, j):
    return "ls%d-p%d" % (i, j)


def ip(i, h):
    return "10.%d.%d.%d" % (i // 16, (i % 16) * 16 + h // 256, h % 256)


def mac(i, h):
    return "0a:00:%02x:%02x:%02x:%02x" % (i >> 8, i & 0xFF, h >> 8, h & 0xFF)


def lrp_network(i):
    return "%s/20" % ip(i, 1)


def port_address(i, j):
    return "%s %s" % (mac(i, j + 2), ip(i, j + 2))


def check_sizes(switches, ports):
    if not 1 <= switches <= MAX_SWITCHES:
        sys.exit("--switches must be 1..%d" % MAX_SWITCHES)
    if not 0 <= ports <= MAX_PORTS:
        sys.exit("--ports must be at most %d" % MAX_PORTS)


def cpu_seconds(children=False):
    """User + system CPU of this process (and of its waited-for children)."""
    who = [resource.RUSAGE_SELF] + ([resource.RUSAGE_CHILDREN] if children else [])
    total = 0.0
    for w in who:
        u = resource.getrusage(w)
        total += u.ru_utime + u.ru_stime
    return total


def proc_status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def emit(record):
    print(json.dumps(record, sort_keys=True), flush=True)


def default_db():
    return os.environ.get("OVN_NB_DB")
