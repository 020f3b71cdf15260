#!/usr/bin/env bash
# Installs pip requirements (one argument, space-separated) into a Python venv (once; again when the requirement changes) and
# prints the venv's absolute path as the last line of stdout. Shared by synapse-venv.sh and
# test-tools-venv.sh:
#
#   scripts/pip-venv.sh VENV REQUIREMENT MODULE
#
# MODULE is imported to check the install (its version is reported on stderr). Safe to call
# concurrently (one install at a time). Environment: PYTHON (default python3).
set -euo pipefail
venv="$1"
spec="$2"
module="$3"
PYTHON=${PYTHON:-python3}
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
stamp="$venv/.myelin-installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$spec" ] || ! "$venv/bin/python" -c "import $module" 2>/dev/null; then
    echo "pip-venv: installing $spec into $venv (a few minutes the first time)" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    # shellcheck disable=SC2086 # REQUIREMENT may name several packages
    "$venv/bin/python" -m pip install --quiet $spec >&2
    echo "$spec" > "$stamp"
fi
echo "pip-venv: $("$venv/bin/python" -c "import $module; print('$module', $module.__version__)")" >&2
cd "$venv" && pwd
