#!/usr/bin/env bash
# Call joins (MatrixRTC, the Matrix side), Myelin beside Synapse in one run:
# starts a release Myelin and a Synapse (from PyPI, delayed events enabled with a 24 h maximum)
# on 127.0.0.1 and runs `myelin-bench --scenario call`: CALLS (50) calls one after another, each
# joined (OpenID token, delayed leave, membership), kept alive and hung up while another member syncs.
# Figures go to docs/benchmarks.md.
#
#   scripts/bench-call.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), CALLS (50).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-call.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r m_url _ m_pid < <(start_myelin myelin); pids+=("$m_pid")
read -r s_url _ s_pid < <(start_synapse synapse); pids+=("$s_pid")

"$bin/myelin-bench" --scenario call --calls "${CALLS:-50}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" \
    --output docs/benchmarks.md
