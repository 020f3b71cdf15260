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
cargo test --workspace --locked --no-fail-fast -- --test-threads="${MYELIN_TEST_THREADS:-4}"
