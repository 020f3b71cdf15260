#!/usr/bin/env bash
# Scale-out benchmark: one Myelin process against three on one PostgreSQL, each sender writing to
# its own room (`myelin-bench --scenario rooms-send`), results appended to docs/benchmarks.md.
#
#   scripts/bench-scale-out.sh PG_ADMIN_URL [DELAY_US] [MYELIN_BINARY]
#
# PG_ADMIN_URL : any database of a PostgreSQL cluster (e.g. what scripts/pg-test-cluster.sh
#                prints); two fresh databases are created in it, one per deployment.
# DELAY_US     : when > 0, the processes reach PostgreSQL through `delay-proxy`, which holds
#                every chunk this long in each direction (a database on another machine).
# MYELIN_BINARY: default target/release/myelin (build it and myelin-bench in release first).
#
# Ports 8021 (one process) and 8031-8033 (three processes) on 127.0.0.1; the three processes
# share a data directory (one signing key), as a deployment does. Everything is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SENDERS=${SENDERS:-30}
COUNT=${COUNT:-200}
WORK_PREFIX=myelin-scale-out
# shellcheck source=bench-pg-lib.sh
. ./scripts/bench-pg-lib.sh

psql_create "scale_one_$suffix"
psql_create "scale_three_$suffix"

mkdir -p "$work/one" "$work/three"
start 8021 "$work/one" "$(database_url "$pg_at" "scale_one_$suffix")"
# The first of the three creates the schema and the signing key; the others share them.
start 8031 "$work/three" "$(database_url "$pg_at" "scale_three_$suffix")"
start 8032 "$work/three" "$(database_url "$pg_at" "scale_three_$suffix")"
start 8033 "$work/three" "$(database_url "$pg_at" "scale_three_$suffix")"

# Three first: the ratio column then reads "three/one".
"$BENCH" --target three-processes=http://127.0.0.1:8031,http://127.0.0.1:8032,http://127.0.0.1:8033 \
    --target one-process=http://127.0.0.1:8021 \
    --scenario rooms-send --senders "$SENDERS" --count "$COUNT" --output docs/benchmarks.md
