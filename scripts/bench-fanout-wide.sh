#!/usr/bin/env bash
# Fan-out over many rooms, Myelin beside Synapse in one run: starts a release Myelin (with its
# metrics listener) and a Synapse (from PyPI) on 127.0.0.1 and runs
# `myelin-bench --scenario fanout-wide`: LISTENERS (5000) users spread over ROOMS (100) rooms,
# all long-polling /sync at once, and MESSAGES (100) messages sent one at a time to each room in
# turn, each timed until every listener of its room has it. Reports p50/p99, deliveries missed,
# and each server's memory with every listener connected. Figures go to docs/benchmarks.md.
#
#   scripts/bench-fanout-wide.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), LISTENERS, ROOMS, MESSAGES,
# TARGETS ("myelin synapse", or one of them), API (v2, or sliding: the listeners long-poll
# simplified sliding sync), PG_ADMIN_URL (Myelin on PostgreSQL instead of SQLite: a fresh database
# is made in the cluster of this URL, e.g. what scripts/pg-test-cluster.sh prints, and dropped at
# the end).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-fanout-wide.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh
# Every listener holds a connection open to the server and one in the benchmark.
ulimit -n "$(ulimit -Hn)"

if [ -n "${PG_ADMIN_URL:-}" ]; then
    wide_db="fanout_wide_$(date +%s)"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $wide_db" >/dev/null
    export MYELIN_DATABASE="${PG_ADMIN_URL%/*}/$wide_db"
    trap 'cleanup; psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $wide_db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
fi

targets=()
for t in ${TARGETS:-myelin synapse}; do
    case "$t" in
        myelin)
            metrics_port=$(port)
            read -r m_url _ m_pid < <(start_myelin myelin "[metrics]\nlisten = \"127.0.0.1:$metrics_port\"\n")
            pids+=("$m_pid")
            targets+=(--target "myelin=$m_url" --pid "myelin=$m_pid" --metrics "myelin=http://127.0.0.1:$metrics_port/metrics") ;;
        synapse)
            read -r s_url _ s_pid < <(start_synapse synapse); pids+=("$s_pid")
            targets+=(--target "synapse=$s_url" --pid "synapse=$s_pid") ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
done

"$bin/myelin-bench" --scenario fanout-wide --wide-listeners "${LISTENERS:-5000}" --wide-rooms "${ROOMS:-100}" \
    --fanout-messages "${MESSAGES:-100}" --fanout-api "${API:-v2}" --setup-concurrency 16 "${targets[@]}" \
    --scenario-timeout 3600 --output docs/benchmarks.md
