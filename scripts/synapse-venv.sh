#!/usr/bin/env bash
# Installs Synapse (from PyPI) into a Python venv for the federation interoperability tests and
# the benchmarks, and prints the venv's absolute path as the last line of stdout:
#   SYNAPSE_VENV=$(scripts/synapse-venv.sh | tail -1)
#
#   scripts/synapse-venv.sh [VENV]
#
# VENV defaults to $CARGO_TARGET_DIR/synapse-venv (the CI's build cache area, so later runs on
# the same machine reuse it). Idempotent and safe to call concurrently (one install at a time).
# Environment: PYTHON (default python3), SYNAPSE_VERSION (pip version spec, default the pinned one).
set -euo pipefail
target="${CARGO_TARGET_DIR:-/var/tmp/myelin-ci-target}"
venv="${1:-$target/synapse-venv}"
spec="matrix-synapse${SYNAPSE_VERSION:-==1.163.2}"
PYTHON=${PYTHON:-python3}
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
stamp="$venv/.myelin-installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$spec" ] || ! "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
    echo "synapse-venv: installing $spec into $venv (a few minutes the first time)" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet "$spec" >&2
    echo "$spec" > "$stamp"
fi
echo "synapse-venv: $("$venv/bin/python" -c 'import synapse; print("synapse", synapse.__version__)')" >&2
cd "$venv" && pwd
