#!/usr/bin/env bash
# Fan-out, Myelin beside Synapse in one run, with Myelin's own account of where its time went:
# starts a release Myelin (with its metrics listener), a second one whose SQLite reads all go
# through the blocking threads as before (MYELIN_SQLITE_READS=blocking, to show what reading on
# the calling thread changed) and a Synapse (from PyPI) on 127.0.0.1, and runs
# `myelin-bench --scenario fanout` (LISTENERS (50) long-polling /sync in one room, MESSAGES (20)
# messages sent one at a time, each timed until every listener has it). Myelin's metrics are
# read just before and after the measured messages: the time its woken syncs spent building their
# answers (`myelin_sync_build_seconds`), per answer and per message, against what the clients
# saw. Figures go to docs/benchmarks.md.
#
#   scripts/bench-fanout.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), LISTENERS, MESSAGES, API (v2,
# or sliding: the listeners long-poll simplified sliding sync), TUWUNEL_BIN (a tuwunel binary:
# it joins the run as a fourth target, scripts/tuwunel-rival.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-fanout.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

metrics_port=$(port)
read -r m_url _ m_pid < <(start_myelin myelin "[metrics]\nlisten = \"127.0.0.1:$metrics_port\"\n"); pids+=("$m_pid")
blocking_metrics_port=$(port)
read -r b_url _ b_pid < <(MYELIN_SQLITE_READS=blocking start_myelin myelin-blocking-reads \
    "[metrics]\nlisten = \"127.0.0.1:$blocking_metrics_port\"\n"); pids+=("$b_pid")
read -r s_url _ s_pid < <(start_synapse synapse); pids+=("$s_pid")
tuwunel=()
if [ -n "${TUWUNEL_BIN:-}" ]; then
    t_port=$(port)
    t_pid=$(./scripts/tuwunel-rival.sh "$work/tuwunel" "$t_port"); pids+=("$t_pid")
    tuwunel=(--target "tuwunel=http://127.0.0.1:$t_port" --pid "tuwunel=$t_pid")
fi

"$bin/myelin-bench" --scenario fanout --listeners "${LISTENERS:-50}" --fanout-messages "${MESSAGES:-20}" \
    --fanout-api "${API:-v2}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" --metrics "myelin=http://127.0.0.1:$metrics_port/metrics" \
    --target "myelin-blocking-reads=$b_url" --pid "myelin-blocking-reads=$b_pid" \
    --metrics "myelin-blocking-reads=http://127.0.0.1:$blocking_metrics_port/metrics" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" "${tuwunel[@]}" \
    --scenario-timeout 1800 --output docs/benchmarks.md
