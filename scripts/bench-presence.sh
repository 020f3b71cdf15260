#!/usr/bin/env bash
# What tracked presence costs: two release Myelins in one run, presence on (the default) and off
# (`[presence] enabled = false`), through `myelin-bench`'s fan-out (LISTENERS long-polling
# listeners, MESSAGES messages) and send scenarios. Figures go to docs/benchmarks.md.
#
#   scripts/bench-presence.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), LISTENERS, MESSAGES.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-presence.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r on_url _ on_pid < <(start_myelin presence-on); pids+=("$on_pid")
read -r off_url _ off_pid < <(start_myelin presence-off '[presence]\nenabled = false\n'); pids+=("$off_pid")

for scenario in fanout send; do
    "$bin/myelin-bench" --scenario "$scenario" --listeners "${LISTENERS:-50}" --fanout-messages "${MESSAGES:-100}" \
        --target "presence-on=$on_url" --pid "presence-on=$on_pid" \
        --target "presence-off=$off_url" --pid "presence-off=$off_pid" \
        --output docs/benchmarks.md
done
