#!/usr/bin/env bash
# The web consoles in a real browser: Debian's Chromium, headless, driven by playwright-core
# (npm) with node's own test runner (tests/e2e/console/*.test.mjs).
#   tests/e2e/console-e2e.sh CMKFS_VAULT_BINARY BUILD_DIR [SCREENSHOT_DIR]
set -euo pipefail
VAULT=$1
BUILD=$2
SHOTS=${3:-}
TAG=console-e2e
here=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/cmkfs-e2e-console.XXXXXX)
. "$here/lib.sh"
VAULT_PID=""
cleanup() {
  { [ -n "$VAULT_PID" ] && kill "$VAULT_PID" 2>/dev/null && wait "$VAULT_PID" 2>/dev/null; } || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# playwright-core, as package-lock.json pins it, in the build directory (not the source tree).
node_dir=$BUILD/console-e2e
mkdir -p "$node_dir"
cp "$here/console/package.json" "$here/console/package-lock.json" "$here"/console/*.test.mjs "$node_dir/"
if ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.package-lock.json" 2>/dev/null; then
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed"
fi
[ -x /usr/bin/chromium ] || die "chromium is not installed (apt-get install chromium)"

export CMKFS_VAULT_DIR=$WORK/vault
export PASSWORD="console-e2e $(head -c 12 /dev/urandom | base64)"
printf '%s\n' "$PASSWORD" | "$VAULT" admin set-password 2>/dev/null
export SESSION_IDLE_SECONDS=4
"$VAULT" serve --listen 127.0.0.1:0 --console-session-idle "$SESSION_IDLE_SECONDS" >"$WORK/vault.log" 2>&1 &
VAULT_PID=$!
for _ in $(seq 100); do [ -s "$CMKFS_VAULT_DIR/server.json" ] && break; sleep 0.1; done
[ -s "$CMKFS_VAULT_DIR/server.json" ] || die "cmkfs-vault did not start: $(cat "$WORK/vault.log")"
export VAULT_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$CMKFS_VAULT_DIR/server.json")
[ -z "$SHOTS" ] || export SCREENSHOTS=$(cd "$SHOTS" && pwd)

log "the vault's console at $VAULT_URL/console, in $(/usr/bin/chromium --version)"
(cd "$node_dir" && node --test --test-reporter=spec vault-console.test.mjs)
# The audit log saw the console's actions with the admin, and the refused form.
grep -q '"operation":"console:createidentity".*"admin":"admin"' "$CMKFS_VAULT_DIR/audit.log" ||
  grep -q '"admin":"admin".*"operation":"console:createidentity"' "$CMKFS_VAULT_DIR/audit.log" ||
  die "the audit log has no console action with its admin"
grep -q '"error":"CsrfTokenMissing"' "$CMKFS_VAULT_DIR/audit.log" || die "the refused form is not in the audit log"
log "passed"
