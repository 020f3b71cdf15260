#!/usr/bin/env bash
# Media, Myelin beside Synapse in one run: starts a release Myelin and a Synapse (from PyPI) on
# 127.0.0.1 and runs `myelin-bench --scenario media`: FILES (10) uploads and downloads of MB (4)
# MiB each, and PHOTOS (10) 2000×1500 JPEGs thumbnailed to 320×240 (first request, then again),
# through the authenticated media API. Figures go to docs/benchmarks.md.
#
#   scripts/bench-media.sh [WORKDIR]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/myelin-ci-target), FILES, MB, PHOTOS.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/myelin-bench-media.XXXXXX)}"
mkdir -p "$work"
# shellcheck source=bench-lib.sh
. ./scripts/bench-lib.sh

read -r m_url _ m_pid < <(start_myelin myelin); pids+=("$m_pid")
read -r s_url _ s_pid < <(start_synapse synapse); pids+=("$s_pid")

"$bin/myelin-bench" --scenario media --media-files "${FILES:-10}" --media-mb "${MB:-4}" --media-photos "${PHOTOS:-10}" \
    --target "myelin=$m_url" --pid "myelin=$m_pid" \
    --target "synapse=$s_url" --pid "synapse=$s_pid" \
    --output docs/benchmarks.md
