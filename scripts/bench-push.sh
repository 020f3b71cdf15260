#!/usr/bin/env bash
# Push delivery, Myelin beside Synapse in one run: starts a release Myelin and a Synapse (from
# PyPI) on 127.0.0.1 and runs `myelin-bench --scenario push`: in a room of two, MESSAGES (200)
# messages sent one at a time, each timed from the send until the receiver's push gateway (a small
# one in the bench, on loopback) has its notification. Figures go to docs/benchmarks.md.
#
#   scripts/bench-push.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), MESSAGES.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-push.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r m_url _ m_pid < <(start_myelin myelin); pids+=("$m_pid")
read -r s_url _ s_pid < <(start_synapse synapse); pids+=("$s_pid")

"$bin/myelin-bench" --scenario push --push-messages "${MESSAGES:-200}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" \
    --scenario-timeout 1800 --output docs/benchmarks.md
