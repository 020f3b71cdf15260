#!/usr/bin/env bash
# Start-up time and idle memory of a Myelin binary: time from exec to the first 200 answer of
# GET /_matrix/client/versions on a fresh data directory (first start: creates config, key and
# database), then VmRSS after one idle second. Repeats RUNS times (default 5).
#
#   scripts/measure-startup.sh [BINARY] [PORT]
set -euo pipefail
BIN=${1:-target/release/myelin}
PORT=${2:-18555}
RUNS=${RUNS:-5}
for i in $(seq 1 "$RUNS"); do
    dir=$(mktemp -d /tmp/myelin-startup.XXXXXX)
    start=$(date +%s%N)
    "$BIN" --data-dir "$dir" --listen "127.0.0.1:$PORT" >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 5000); do
        if curl -sf "http://127.0.0.1:$PORT/_matrix/client/versions" >/dev/null 2>&1; then break; fi
        sleep 0.001
    done
    end=$(date +%s%N)
    sleep 1
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    printf 'run %d: first /versions after %d ms, idle RSS %.1f MB\n' "$i" $(( (end - start) / 1000000 )) "$(echo "$rss / 1024" | bc -l)"
done
