# Shared by the federation benchmarks (sourced): release binaries, a free port, and starting a
# Myelin or a Synapse federating over TLS on 127.0.0.1 in "$work". Each start prints
# "URL SERVER_NAME PID"; the caller kills the PIDs it collects in "pids".
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/myelin-ci-target}"
cargo build --release --locked -p myelin -p myelin-bench >&2
bin="$CARGO_TARGET_DIR/release"
venv=$(./scripts/synapse-venv.sh | tail -1)
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

start_myelin() { # NAME [MORE_TOML] -> prints "URL SERVER_NAME PID" (on MYELIN_DATABASE if set)
    local dir="$work/$1" client fed
    client=$(port); fed=$(port)
    mkdir -p "$dir"
    printf '[rate_limits]\nmessages = { per_second = 0.0, burst = 0 }\nlogin = { per_second = 0.0, burst = 0 }\nregistration = { per_second = 0.0, burst = 0 }\n' > "$dir/myelin.toml"
    printf '%b' "${2:-}" >> "$dir/myelin.toml"
    MYELIN_FEDERATION_VERIFY_CERTIFICATES=false MYELIN_FEDERATION_IP_RANGE_ALLOWLIST=127.0.0.1/32 \
        RUST_LOG=warn "$bin/myelin" serve --data-dir "$dir" --config "$dir/myelin.toml" \
        ${MYELIN_DATABASE:+--database "$MYELIN_DATABASE"} --listen "127.0.0.1:$client" --server-name "127.0.0.1:$fed" --federation-listen "127.0.0.1:$fed" \
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
