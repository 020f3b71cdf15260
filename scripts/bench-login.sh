#!/usr/bin/env bash
# Signing in, Myelin beside Synapse in one run: starts a release Myelin and a Synapse (from PyPI)
# on 127.0.0.1 and runs `myelin-bench --scenario login`: RUNS (30) password logins, RUNS full OAuth
# logins as Element X does them (register the client, authorize, sign in and consent on the
# pages, exchange the code, whoami; Myelin only: Synapse has no OAuth server without MAS, which
# is not on PyPI), and RUNS token refreshes (OAuth's on Myelin, the legacy /refresh on
# Synapse). Both hash passwords as they do by default (Myelin argon2id m=19 MiB t=2, Synapse
# bcrypt with 12 rounds). Figures go to docs/benchmarks.md.
#
#   scripts/bench-login.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-login.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r m_url _ m_pid < <(start_myelin myelin); pids+=("$m_pid")
# Password logins are measured here: Synapse hashes as it does by default (bcrypt, 12 rounds),
# not with the cheap rounds the other benchmarks give it for setting up users.
read -r s_url _ s_pid < <(SYNAPSE_BCRYPT_ROUNDS=12 start_synapse synapse); pids+=("$s_pid")

"$bin/myelin-bench" --scenario login --login-runs "${RUNS:-30}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" \
    --scenario-timeout 1800 --output docs/benchmarks.md
