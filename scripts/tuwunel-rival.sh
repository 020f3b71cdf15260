#!/usr/bin/env bash
# Start a local tuwunel (https://github.com/matrix-construct/tuwunel), a benchmark rival: RocksDB
# in DIR/db, server name "localhost", open registration, no federation, the client API on
# 127.0.0.1:PORT. Waits until GET /_matrix/client/versions answers and prints its PID on stdout
# (the only line there).
#
#   TUWUNEL_BIN=/path/to/tuwunel scripts/tuwunel-rival.sh DIR PORT
#
# tuwunel is not on crates.io and this machine cannot reach GitHub, so there is no way to build
# it from a script here: TUWUNEL_BIN names a binary built beforehand (docs/benchmarks.md, "tuwunel
# beside Myelin", says how the one measured was built). Stop it with: kill "$(cat DIR/tuwunel.pid)"
set -euo pipefail

if [ "$#" -ne 2 ] || [ -z "${TUWUNEL_BIN:-}" ]; then
    echo "usage: TUWUNEL_BIN=/path/to/tuwunel $0 DIR PORT" >&2
    exit 2
fi
DIR=$1
PORT=$2
case "$PORT" in
    '' | *[!0-9]*) echo "PORT must be a number" >&2; exit 2 ;;
esac
mkdir -p "$DIR/db"
DIR=$(cd "$DIR" && pwd)
cat > "$DIR/tuwunel.toml" <<TOML
[global]
server_name = "localhost"
database_path = "$DIR/db"
address = ["127.0.0.1"]
port = $PORT
allow_registration = true
yes_i_am_very_very_sure_i_want_an_open_registration_server_prone_to_abuse = true
allow_federation = false
trusted_servers = []
log = "warn"
TOML
TUWUNEL_CONFIG="$DIR/tuwunel.toml" "$TUWUNEL_BIN" -c "$DIR/tuwunel.toml" >"$DIR/tuwunel.log" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$DIR/tuwunel.pid"
for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/_matrix/client/versions" 2>/dev/null; then
        echo "$pid"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "tuwunel exited early; see $DIR/tuwunel.log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "tuwunel did not answer within 60 s; see $DIR/tuwunel.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
