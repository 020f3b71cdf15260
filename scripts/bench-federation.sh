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
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/myelin-ci-target}"
cargo build --release --locked -p myelin -p myelin-bench >&2
bin="$CARGO_TARGET_DIR/release"
venv=$(./scripts/synapse-venv.sh | tail -1)
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

start_myelin() { # NAME -> prints "URL SERVER_NAME PID"
    local dir="$work/$1" client fed
    client=$(port); fed=$(port)
    mkdir -p "$dir"
    printf '[rate_limits]\nmessages = { per_second = 0.0, burst = 0 }\nlogin = { per_second = 0.0, burst = 0 }\nregistration = { per_second = 0.0, burst = 0 }\n' > "$dir/myelin.toml"
    MYELIN_FEDERATION_VERIFY_CERTIFICATES=false MYELIN_FEDERATION_IP_RANGE_ALLOWLIST=127.0.0.1/32 \
        RUST_LOG=warn "$bin/myelin" serve --data-dir "$dir" --config "$dir/myelin.toml" \
        --listen "127.0.0.1:$client" --server-name "127.0.0.1:$fed" --federation-listen "127.0.0.1:$fed" \
        >"$dir/log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$client/_matrix/client/versions" >/dev/null && break; sleep 0.1; done
    echo "http://127.0.0.1:$client 127.0.0.1:$fed $pid"
}
start_synapse() { # NAME -> prints "URL SERVER_NAME PID"
    local client fed pid
    client=$(port); fed=$(port)
    pid=$(SYNAPSE_VENV="$venv" SYNAPSE_FEDERATION_PORT="$fed" ./scripts/synapse-rival.sh "$work/$1" "$client")
    echo "http://127.0.0.1:$client 127.0.0.1:$fed $pid"
}

read -r ma_url ma_name ma_pid < <(start_myelin myelin-a); pids+=("$ma_pid")
read -r mb_url _ mb_pid < <(start_myelin myelin-b); pids+=("$mb_pid")
read -r sa_url sa_name sa_pid < <(start_synapse synapse-a); pids+=("$sa_pid")
read -r sb_url _ sb_pid < <(start_synapse synapse-b); pids+=("$sb_pid")

"$bin/myelin-bench" --scenario federation \
    --target "myelin=$ma_url" --peer "myelin=$mb_url@$ma_name" --pid "myelin=$ma_pid" \
    --target "synapse=$sa_url" --peer "synapse=$sb_url@$sa_name" --pid "synapse=$sa_pid" \
    --federation-listeners "${FEDERATION_LISTENERS:-5}" --federation-messages "${FEDERATION_MESSAGES:-30}" \
    --output docs/benchmarks.md
