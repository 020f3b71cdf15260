#!/usr/bin/env bash
# Starts (or reuses) a throwaway PostgreSQL cluster for the test suite and prints its URL.
#   scripts/pg-test-cluster.sh [DIR] [PORT]     (defaults: /tmp/myelin-pg, 54329)
# Uses the system's initdb/postgres (Debian's `postgresql` package is installed when absent).
# Tests create one database per test server in it; it listens on 127.0.0.1 only.
set -euo pipefail
dir="${1:-/tmp/myelin-pg}"
port="${2:-54329}"

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "installing PostgreSQL (Debian package postgresql)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

# PostgreSQL refuses to run as root: run it as the `postgres` system user when we are root.
run_as=()
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    run_as=(runuser -u postgres --)
fi

url="postgres://myelin@127.0.0.1:$port/postgres"
if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port"; then
    echo "$url"
    exit 0
fi

if [ ! -f "$dir/PG_VERSION" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ ${#run_as[@]} -gt 0 ]; then chown postgres "$dir"; fi
    "${run_as[@]}" "$bindir/initdb" -D "$dir" -U myelin --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi
# Settings for many short-lived test servers; fsync stays on, so durability tests stay honest.
"${run_as[@]}" "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=800 -c shared_buffers=64MB" \
    start >/dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
# (The server must not keep descriptors it inherited: a build lock held by the caller, e.g.
# `flock LOCK cargo test`, would stay held for as long as the cluster runs.)
echo "$url"
