#!/bin/sh
# Entrypoint of the ovn-vpc/ovn-central image. One role per container, always in the
# foreground (the container lives as long as the daemon):
#   nb      OVN_Northbound ovsdb-server, tcp 6641 + unix /var/run/ovn/ovnnb_db.sock
#   sb      OVN_Southbound ovsdb-server, tcp 6642 + unix /var/run/ovn/ovnsb_db.sock
#   northd  ovn-northd, connected to $OVN_NB_DB / $OVN_SB_DB
#           (default tcp:ovn-nb:6641 / tcp:ovn-sb:6642, the compose service names)
# OVN_DBDIR, OVN_RUNDIR and OVN_SCHEMADIR override /var/lib/ovn, /var/run/ovn and
# /usr/share/ovn (only useful to exercise this script outside a container).
set -eu

DBDIR=${OVN_DBDIR:-/var/lib/ovn}
RUNDIR=${OVN_RUNDIR:-/var/run/ovn}
SCHEMADIR=${OVN_SCHEMADIR:-/usr/share/ovn}

usage() {
    echo "usage: $0 nb|sb|northd" >&2
    exit 64
}

# run_db NAME(nb|sb) PORT: create or upgrade the standalone database file, then serve it.
run_db() {
    db="$DBDIR/ovn${1}_db.db"
    schema="$SCHEMADIR/ovn-${1}.ovsschema"
    if [ ! -e "$db" ]; then
        echo "creating $db from $schema"
        ovsdb-tool create "$db" "$schema"
    elif ovsdb-tool db-is-standalone "$db" \
        && [ "$(ovsdb-tool needs-conversion "$db" "$schema")" = yes ]; then
        echo "converting $db to $schema (schema version $(ovsdb-tool schema-version "$schema"))"
        ovsdb-tool convert "$db" "$schema"
    fi
    exec ovsdb-server \
        --remote="ptcp:${2}:0.0.0.0" \
        --remote="punix:$RUNDIR/ovn${1}_db.sock" \
        --unixctl="$RUNDIR/ovn${1}_db.ctl" \
        -vconsole:info -vfile:off --no-chdir \
        "$db"
}

[ "$#" -eq 1 ] || usage
mkdir -p "$RUNDIR" "$DBDIR"

case "$1" in
    nb) run_db nb 6641 ;;
    sb) run_db sb 6642 ;;
    northd)
        exec ovn-northd \
            --ovnnb-db="${OVN_NB_DB:-tcp:ovn-nb:6641}" \
            --ovnsb-db="${OVN_SB_DB:-tcp:ovn-sb:6642}" \
            -vconsole:info -vfile:off --no-chdir \
            --unixctl="$RUNDIR/ovn-northd.ctl"
        ;;
    *) usage ;;
esac
