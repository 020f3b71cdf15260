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

echo "== tests"
log=$(mktemp)
set +e
cargo test --workspace --locked --no-fail-fast -- --test-threads="${MYELIN_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
