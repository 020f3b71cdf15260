#!/usr/bin/env bash
# Installs the Python tools the tests start as real peers (moto's S3 server for the S3 blob
# store, aiosmtpd as the SMTP server emails go to, prometheus-client to parse the metrics, mautrix
# with its encryption (python-olm) as the application service framework a test bridge is built on) into a venv, and prints the venv's absolute path as the last line of stdout:
#   TOOLS_VENV=$(scripts/test-tools-venv.sh | tail -1)
#
#   scripts/test-tools-venv.sh [VENV]
#
# VENV defaults to $CARGO_TARGET_DIR/test-tools-venv (beside the build cache, so later runs on
# the same machine reuse it). Idempotent and safe to call concurrently (one install at a time).
set -euo pipefail
target="${CARGO_TARGET_DIR:-/var/tmp/myelin-ci-target}"
exec "$(dirname "$0")/pip-venv.sh" "${1:-$target/test-tools-venv}" "moto[server]==5.2.5 aiosmtpd==1.4.6 prometheus-client==0.21.1 mautrix[encryption]==0.21.1" moto
