#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests if it is not there, and prints its path as the
# last line of stdout (apt's output goes to stderr). Idempotent.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Debian's chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    # One apt at a time (tests may call this concurrently).
    exec 9>/tmp/myelin-chromium-install.lock
    flock 9
    if ! command -v chromium >/dev/null 2>&1; then
        apt-get update -qq >&2 && apt-get install -y -qq chromium >&2
    fi
fi
command -v chromium
