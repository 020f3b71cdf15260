#!/usr/bin/env bash
# Runs every check and test of the workspace, as CI does. Works on a fresh machine with the Rust
# toolchain: anything else a test needs is installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== formatting"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build the server binary the end-to-end tests spawn"
cargo build --locked -p myelin --bin myelin

echo "== PostgreSQL test cluster (throwaway, stopped at exit)"
pg_dir=$(mktemp -d /tmp/myelin-pg-test.XXXXXX)
chmod 755 "$pg_dir"  # the cluster runs as user postgres when we are root
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MYELIN_TEST_POSTGRES
MYELIN_TEST_POSTGRES=$(./scripts/pg-test-cluster.sh "$pg_dir/data" "$pg_port")
stop_cluster() {
    pg_ctl=$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    else "$pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$pg_dir"
}
trap stop_cluster EXIT
echo "$MYELIN_TEST_POSTGRES"

echo "== Node 22, matrix-js-sdk and livekit-server-sdk for the interoperability tests (npm)"
export MYELIN_NODE22
MYELIN_NODE22=$(./scripts/js-deps.sh | tail -1)
echo "$MYELIN_NODE22"

echo "== Debian's Chromium for the browser tests of the web pages (apt)"
export MYELIN_CHROMIUM
MYELIN_CHROMIUM=$(./scripts/chromium.sh | tail -1)
echo "$MYELIN_CHROMIUM"

echo "== Synapse from PyPI for the federation interoperability tests (pip, cached beside the builds)"
export MYELIN_SYNAPSE_VENV
MYELIN_SYNAPSE_VENV=$(./scripts/synapse-venv.sh | tail -1)
echo "$MYELIN_SYNAPSE_VENV"

echo "== moto's S3 server from PyPI for the S3 blob store tests (pip, cached beside the builds)"
export MYELIN_TEST_TOOLS_VENV
MYELIN_TEST_TOOLS_VENV=$(./scripts/test-tools-venv.sh | tail -1)
echo "$MYELIN_TEST_TOOLS_VENV"

log=$(mktemp)
# Tests that run on PostgreSQL whatever the backend (clusters, migration) skip themselves on the
# PostgreSQL pass and say so here; the summary counts them as skipped, not passed.
export MYELIN_SKIP_LOG
MYELIN_SKIP_LOG=$(mktemp)
threads="${MYELIN_TEST_THREADS:-4}"
set +e
echo "== tests (storage conformance on both backends; end-to-end and matrix-sdk tests on SQLite)"
cargo test --workspace --locked --no-fail-fast -- --test-threads="$threads" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "== the suite again, every end-to-end and matrix-sdk test server on PostgreSQL"
# (--workspace, not -p: the same feature set as above, so nothing is compiled again.)
MYELIN_TEST_BACKEND=postgres cargo test --workspace --locked --no-fail-fast -- --test-threads="$threads" 2>&1 | tee -a "$log"
pg_status=${PIPESTATUS[0]}
[ "$pg_status" = 0 ] || status=$pg_status
set -e
skipped=$(wc -l < "$MYELIN_SKIP_LOG")
if [ "$skipped" -gt 0 ]; then
    echo "== skipped"
    sed 's/^/  /' "$MYELIN_SKIP_LOG"
fi
# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
awk -v skipped="$skipped" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p - skipped, f, skipped }' "$log"
rm -f "$log" "$MYELIN_SKIP_LOG"
exit "$status"
