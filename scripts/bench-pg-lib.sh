# Shared by the PostgreSQL benchmarks (sourced after `cd` to the repository): the arguments
# PG_ADMIN_URL [DELAY_US] [MYELIN_BINARY], a work directory ("/tmp/$WORK_PREFIX.*"), the optional
# `delay-proxy` in front of the cluster, and helpers: `psql_create DB` (dropped at exit),
# `database_url HOST:PORT DB` and `start PORT DATA_DIR DATABASE_URL` (a release Myelin on
# 127.0.0.1:PORT, waited for). Everything started is stopped at exit.
if [ "$#" -lt 1 ]; then
    echo "usage: $0 PG_ADMIN_URL [DELAY_US] [MYELIN_BINARY]" >&2
    exit 2
fi
ADMIN=$1
DELAY_US=${2:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
MYELIN=${3:-$TARGET_DIR/release/myelin}
BENCH=$TARGET_DIR/release/myelin-bench
PROXY=$TARGET_DIR/release/delay-proxy

work=$(mktemp -d "/tmp/${WORK_PREFIX:-myelin-bench-pg}.XXXXXX")
pids=()
databases=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for db in "${databases[@]}"; do psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Credentials, host and port of the cluster, from the admin URL
# (postgres[ql]://[USER[:PASSWORD]@]HOST[:PORT]/DB).
rest=${ADMIN#*://}
case "$rest" in
    *@*) credentials="${rest%%@*}@"; hostport=${rest#*@} ;;
    *) credentials=""; hostport=$rest ;;
esac
hostport=${hostport%%/*}
database_url() { echo "postgres://$credentials$1/$2"; }

pg_at=$hostport
if [ "$DELAY_US" -gt 0 ]; then
    "$PROXY" --listen 127.0.0.1:54399 --to "$hostport" --delay-us "$DELAY_US" >"$work/proxy.log" 2>&1 &
    pids+=($!)
    pg_at=127.0.0.1:54399
    sleep 0.5
fi

suffix=$(date +%s)
psql_create() {
    psql "$ADMIN" -qc "CREATE DATABASE $1" >/dev/null
    databases+=("$1")
}

start() { # PORT DATA_DIR DATABASE
    "$MYELIN" --config docs/bench-myelin.toml --data-dir "$2" --listen "127.0.0.1:$1" --database "$3" \
        >>"$2/server-$1.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$1/_matrix/client/versions" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "process on port $1 did not start; log:" >&2
    cat "$2/server-$1.log" >&2
    exit 1
}
