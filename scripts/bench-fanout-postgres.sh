#!/usr/bin/env bash
# Fan-out on PostgreSQL across processes: two Myelin processes sharing one database, the sender
# on the first and the listeners taking turns over both (`myelin-bench --scenario fanout` with a
# target of two URLs), beside one process on a database of its own. The table gives the mean
# latency of listeners on the sender's process and on the other one. Results are appended to
# docs/benchmarks.md.
#
#   scripts/bench-fanout-postgres.sh PG_ADMIN_URL [DELAY_US] [MYELIN_BINARY]
#
# PG_ADMIN_URL : any database of a PostgreSQL cluster (e.g. what scripts/pg-test-cluster.sh
#                prints); two fresh databases are created in it, one per deployment.
# DELAY_US     : when > 0, the processes reach PostgreSQL through `delay-proxy`, which holds
#                every chunk this long in each direction (a database on another machine).
# MYELIN_BINARY: default target/release/myelin (build it and myelin-bench in release first).
#
# Ports 8051 (one process) and 8061-8062 (two processes) on 127.0.0.1; the two processes share a
# data directory (one signing key), as a deployment does. Everything is stopped at exit.
# Environment: LISTENERS (50), MESSAGES (20), API (v2 or sliding).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -lt 1 ]; then
    echo "usage: $0 PG_ADMIN_URL [DELAY_US] [MYELIN_BINARY]" >&2
    exit 2
fi
ADMIN=$1
DELAY_US=${2:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
MYELIN=${3:-$TARGET_DIR/release/myelin}
BENCH=$TARGET_DIR/release/myelin-bench
PROXY=$TARGET_DIR/release/delay-proxy

work=$(mktemp -d /tmp/myelin-fanout-pg.XXXXXX)
pids=()
databases=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for db in "${databases[@]}"; do psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Credentials, host and port of the cluster, from the admin URL
# (postgres[ql]://[USER[:PASSWORD]@]HOST[:PORT]/DB).
rest=${ADMIN#*://}
case "$rest" in
    *@*) credentials="${rest%%@*}@"; hostport=${rest#*@} ;;
    *) credentials=""; hostport=$rest ;;
esac
hostport=${hostport%%/*}
database_url() { echo "postgres://$credentials$1/$2"; }

pg_at=$hostport
if [ "$DELAY_US" -gt 0 ]; then
    "$PROXY" --listen 127.0.0.1:54399 --to "$hostport" --delay-us "$DELAY_US" >"$work/proxy.log" 2>&1 &
    pids+=($!)
    pg_at=127.0.0.1:54399
    sleep 0.5
fi

suffix=$(date +%s)
psql_create() {
    psql "$ADMIN" -qc "CREATE DATABASE $1" >/dev/null
    databases+=("$1")
}
psql_create "fanout_one_$suffix"
psql_create "fanout_two_$suffix"

start() { # PORT DATA_DIR DATABASE
    "$MYELIN" --config docs/bench-myelin.toml --data-dir "$2" --listen "127.0.0.1:$1" --database "$3" \
        >>"$2/server-$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$1/_matrix/client/versions" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "process on port $1 did not start; log:" >&2
    cat "$2/server-$1.log" >&2
    exit 1
}

mkdir -p "$work/one" "$work/two"
start 8051 "$work/one" "$(database_url "$pg_at" "fanout_one_$suffix")"
# The first of the two creates the schema and the signing key; the other shares them.
start 8061 "$work/two" "$(database_url "$pg_at" "fanout_two_$suffix")"
start 8062 "$work/two" "$(database_url "$pg_at" "fanout_two_$suffix")"

"$BENCH" --target two-processes=http://127.0.0.1:8061,http://127.0.0.1:8062 \
    --target one-process=http://127.0.0.1:8051 \
    --scenario fanout --listeners "${LISTENERS:-50}" --fanout-messages "${MESSAGES:-20}" \
    --fanout-api "${API:-v2}" --output docs/benchmarks.md
