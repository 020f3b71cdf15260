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
# Ports 8051 (one process), 8061-8062 (two processes), 8071 (Synapse) and 8072 (tuwunel) on 127.0.0.1; the two share a
# data directory (one signing key), as a deployment does. Everything is stopped at exit.
# Environment: LISTENERS (50), MESSAGES (20), API (v2 or sliding), SYNAPSE (1: a Synapse from PyPI
# on 127.0.0.1, its usual SQLite, joins the same run as a third target, so the ratios to it are
# side by side), TUWUNEL_BIN (a tuwunel binary, scripts/tuwunel-rival.sh: joins as another target).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK_PREFIX=myelin-fanout-pg
# shellcheck source=bench-pg-lib.sh
. ./scripts/bench-pg-lib.sh

psql_create "fanout_one_$suffix"
psql_create "fanout_two_$suffix"

mkdir -p "$work/one" "$work/two"
start 8051 "$work/one" "$(database_url "$pg_at" "fanout_one_$suffix")"
# The first of the two creates the schema and the signing key; the other shares them.
start 8061 "$work/two" "$(database_url "$pg_at" "fanout_two_$suffix")"
start 8062 "$work/two" "$(database_url "$pg_at" "fanout_two_$suffix")"

rival=()
if [ "${SYNAPSE:-0}" = 1 ]; then
    venv=$(./scripts/synapse-venv.sh | tail -1)
    synapse_pid=$(SYNAPSE_VENV="$venv" ./scripts/synapse-rival.sh "$work/synapse" 8071)
    pids+=("$synapse_pid")
    rival=(--target synapse=http://127.0.0.1:8071)
fi
if [ -n "${TUWUNEL_BIN:-}" ]; then
    pids+=("$(./scripts/tuwunel-rival.sh "$work/tuwunel" 8072)")
    rival+=(--target tuwunel=http://127.0.0.1:8072)
fi

"$BENCH" --target two-processes=http://127.0.0.1:8061,http://127.0.0.1:8062 \
    --target one-process=http://127.0.0.1:8051 "${rival[@]}" \
    --scenario fanout --listeners "${LISTENERS:-50}" --fanout-messages "${MESSAGES:-20}" \
    --fanout-api "${API:-v2}" --output docs/benchmarks.md
