#!/usr/bin/env bash
# Joining a big room that lives on Synapse, Myelin joining beside Synapse joining, in one run:
# starts a host Synapse (from PyPI) where `myelin-bench --scenario join` builds a room of
# JOIN_MEMBERS members and JOIN_STATE_EVENTS state events, a release Myelin and a second Synapse,
# all federating over TLS on 127.0.0.1; a user of each joins the room through the host. Both
# joiners ask for partial state (`omit_members`) and the host grants it. Figures go to
# docs/benchmarks.md.
#
#   scripts/bench-join.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), JOIN_MEMBERS (2000),
# JOIN_STATE_EVENTS (2100: a host Synapse takes too long to build the issue's 10 000, see
# docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-join.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r host_url host_name host_pid < <(start_synapse synapse-host); pids+=("$host_pid")
read -r m_url _ m_pid < <(start_myelin myelin); pids+=("$m_pid")
read -r s_url _ s_pid < <(start_synapse synapse); pids+=("$s_pid")

"$bin/myelin-bench" --scenario join --join-host "$host_url@$host_name" \
    --join-members "${JOIN_MEMBERS:-2000}" --join-state-events "${JOIN_STATE_EVENTS:-2100}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" \
    --output docs/benchmarks.md
