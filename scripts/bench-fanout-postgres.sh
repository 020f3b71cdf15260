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

"$BENCH" --target two-processes=http://127.0.0.1:8061,http://127.0.0.1:8062 \
    --target one-process=http://127.0.0.1:8051 \
    --scenario fanout --listeners "${LISTENERS:-50}" --fanout-messages "${MESSAGES:-20}" \
    --fanout-api "${API:-v2}" --output docs/benchmarks.md
