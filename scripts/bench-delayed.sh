#!/usr/bin/env bash
# Delayed-event timers (MSC4140, what MatrixRTC calls rest on), Myelin beside Synapse in one run:
# starts a release Myelin and a Synapse (from PyPI, delayed events enabled with a 24 h maximum)
# on 127.0.0.1 and runs `myelin-bench --scenario delayed`: DELAYED_TIMERS (1000) delayed
# messages scheduled at once by ten users, due over three seconds; how late each one is sent.
# Figures go to docs/benchmarks.md.
#
#   scripts/bench-delayed.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), DELAYED_TIMERS (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-delayed.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r m_url _ m_pid < <(start_myelin myelin); pids+=("$m_pid")
read -r s_url _ s_pid < <(start_synapse synapse); pids+=("$s_pid")

"$bin/myelin-bench" --scenario delayed --delayed-timers "${DELAYED_TIMERS:-1000}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" \
    --output docs/benchmarks.md
