#!/usr/bin/env bash
# Cross-server latency, Myelin↔Myelin beside Synapse↔Synapse in one run: starts two release
# Myelins and two Synapses (from PyPI), each pair federating over TLS on 127.0.0.1, then runs
# `myelin-bench --scenario federation` (a sender on the first server, listeners on the second
# joined over federation, long-polling /sync) and appends the figures to docs/benchmarks.md.
#
#   scripts/bench-federation.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), FEDERATION_LISTENERS (5),
# FEDERATION_MESSAGES (30).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-fed.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r ma_url ma_name ma_pid < <(start_myelin myelin-a); pids+=("$ma_pid")
read -r mb_url _ mb_pid < <(start_myelin myelin-b); pids+=("$mb_pid")
read -r sa_url sa_name sa_pid < <(start_synapse synapse-a); pids+=("$sa_pid")
read -r sb_url _ sb_pid < <(start_synapse synapse-b); pids+=("$sb_pid")

"$bin/myelin-bench" --scenario federation \
    --target "myelin=$ma_url" --peer "myelin=$mb_url@$ma_name" --pid "myelin=$ma_pid" \
    --target "synapse=$sa_url" --peer "synapse=$sb_url@$sa_name" --pid "synapse=$sa_pid" \
    --federation-listeners "${FEDERATION_LISTENERS:-5}" --federation-messages "${FEDERATION_MESSAGES:-30}" \
    --output docs/benchmarks.md
