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

echo "== Node 22 and matrix-js-sdk for the interoperability test (npm)"
export MYELIN_NODE22
MYELIN_NODE22=$(./scripts/js-deps.sh | tail -1)
echo "$MYELIN_NODE22"

log=$(mktemp)
threads="${MYELIN_TEST_THREADS:-4}"
set +e
echo "== tests (storage conformance on both backends; end-to-end and matrix-sdk tests on SQLite)"
cargo test --workspace --locked --no-fail-fast -- --test-threads="$threads" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "== the suite again, every end-to-end and matrix-sdk test server on PostgreSQL"
# (cluster.rs and migrate.rs always use PostgreSQL and already ran above.)
# (--workspace, not -p: the same feature set as above, so nothing is compiled again.)
MYELIN_TEST_BACKEND=postgres cargo test --workspace --locked --no-fail-fast -- \
    --test-threads="$threads" --skip three_processes --skip cross_process --skip sigkill_of_one_process \
    --skip sqlite_installation_moves --skip a_client_reads_its_writes --skip sliding_sync_connection_moves 2>&1 | tee -a "$log"
pg_status=${PIPESTATUS[0]}
[ "$pg_status" = 0 ] || status=$pg_status
set -e
# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
