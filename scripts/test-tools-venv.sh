#!/usr/bin/env bash
# Installs the Python tools the tests start as real peers (moto's S3 server for the S3 blob
# store) into a venv, and prints the venv's absolute path as the last line of stdout:
#   TOOLS_VENV=$(scripts/test-tools-venv.sh | tail -1)
#
#   scripts/test-tools-venv.sh [VENV]
#
# VENV defaults to $CARGO_TARGET_DIR/test-tools-venv (beside the build cache, so later runs on
# the same machine reuse it). Idempotent and safe to call concurrently (one install at a time).
set -euo pipefail
target="${CARGO_TARGET_DIR:-/var/tmp/myelin-ci-target}"
venv="${1:-$target/test-tools-venv}"
spec="moto[server]==5.2.5"
PYTHON=${PYTHON:-python3}
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
stamp="$venv/.myelin-installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$spec" ] || [ ! -x "$venv/bin/moto_server" ]; then
    echo "test-tools-venv: installing $spec into $venv" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet "$spec" >&2
    echo "$spec" > "$stamp"
fi
echo "test-tools-venv: $("$venv/bin/python" -c 'import moto; print("moto", moto.__version__)')" >&2
cd "$venv" && pwd
