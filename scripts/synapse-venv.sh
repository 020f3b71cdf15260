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
exec "$(dirname "$0")/pip-venv.sh" "${1:-$target/synapse-venv}" "matrix-synapse${SYNAPSE_VERSION:-==1.163.2}" synapse
