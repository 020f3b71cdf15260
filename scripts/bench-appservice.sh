#!/usr/bin/env bash
# Application service load, Myelin beside Synapse in one run: starts a release Myelin and a
# Synapse (from PyPI) on 127.0.0.1, each with a registration file for a service the bench plays
# (a receiver answering each transaction after DELAY_MS), and runs `myelin-bench --scenario
# appservice`: MESSAGES (10 000) messages from SENDERS (10) senders in a room the service's bot
# is in; measured until the service has them all, with what was lost or delivered twice.
# Figures go to docs/benchmarks.md.
#
#   scripts/bench-appservice.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), MESSAGES, SENDERS, DELAY_MS.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-appservice.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

registration() { # FILE PORT TOKEN
    cat > "$1" <<YAML
id: bench
url: "http://127.0.0.1:$2"
as_token: "$3"
hs_token: "$3-hs"
sender_localpart: benchbot
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: "@benchpuppet_.*"
  aliases: []
  rooms: []
YAML
}
m_port=$(port); s_port=$(port)
registration "$work/myelin-as.yaml" "$m_port" "myelin-as-token"
registration "$work/synapse-as.yaml" "$s_port" "synapse-as-token"

read -r m_url _ m_pid < <(MYELIN_APPSERVICES="$work/myelin-as.yaml" start_myelin myelin); pids+=("$m_pid")
read -r s_url _ s_pid < <(SYNAPSE_APPSERVICES="$work/synapse-as.yaml" start_synapse synapse); pids+=("$s_pid")

"$bin/myelin-bench" --scenario appservice --appservice-messages "${MESSAGES:-10000}" --senders "${SENDERS:-10}" \
    --appservice-delay-ms "${DELAY_MS:-50}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" --appservice "myelin=$m_port:myelin-as-token" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" --appservice "synapse=$s_port:synapse-as-token" \
    --scenario-timeout 3600 --output docs/benchmarks.md
