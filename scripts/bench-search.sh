#!/usr/bin/env bash
# Search, Myelin beside Synapse in one run: starts a release Myelin and a Synapse (from PyPI) on
# 127.0.0.1 and runs `myelin-bench --scenario search`: a room of MESSAGES (20000) messages sent
# 16 at a time, then REPEATS (20) runs of each query (a common word by rank and newest first, a
# rare word, a two-word phrase). Figures go to docs/benchmarks.md.
#
#   scripts/bench-search.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), MESSAGES, REPEATS.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-search.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r m_url _ m_pid < <(start_myelin myelin); pids+=("$m_pid")
read -r s_url _ s_pid < <(start_synapse synapse); pids+=("$s_pid")

"$bin/myelin-bench" --scenario search --search-messages "${MESSAGES:-20000}" --search-repeats "${REPEATS:-20}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" \
    --scenario-timeout 3600 --output docs/benchmarks.md
