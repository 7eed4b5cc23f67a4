#!/usr/bin/env bash
# The web consoles in a real browser: Debian's Chromium, headless, driven by playwright-core
# (npm) with node's own test runner: cmkfs-vault's console (vault-console.test.mjs), then cmkfs
# console on a mounted store with the vault's (store-console.test.mjs).
#   tests/e2e/console-e2e.sh CMKFS CMKFS_VAULT BUILD_DIR [SCREENSHOT_DIR]
set -euo pipefail
CMKFS=$1
VAULT=$2
BUILD=$3
SHOTS=${4:-}
TAG=console-e2e
here=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/cmkfs-e2e-console.XXXXXX)
. "$here/lib.sh"
PIDS=()
cleanup() {
  unmount_all "$WORK/mnt"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# playwright-core, as package-lock.json pins it, in the build directory (not the source tree).
node_dir=$BUILD/console-e2e
mkdir -p "$node_dir"
cp "$here/console/package.json" "$here/console/package-lock.json" "$here"/console/*.mjs "$node_dir/"
if ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.package-lock.json" 2>/dev/null; then
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed"
fi
[ -x /usr/bin/chromium ] || die "chromium is not installed (apt-get install chromium)"

# Nothing of this host's own configuration is touched: bindings, console password, certificate.
export CMKFS_CONFIG_DIR=$WORK/host CMKFS_VAULT_DIR=$WORK/vault VAULT_DIR=$WORK/vault WORK CMKFS
export PASSWORD="console-e2e $(head -c 12 /dev/urandom | base64)"
printf '%s\n' "$PASSWORD" | "$VAULT" admin set-password 2>/dev/null
printf '%s\n' "$PASSWORD" | "$CMKFS" console --set-password 2>/dev/null
"$VAULT" serve --listen 127.0.0.1:0 >"$WORK/vault.log" 2>&1 &
PIDS+=($!)
export SESSION_IDLE_SECONDS=6
"$CMKFS" console --listen 127.0.0.1:0 --session-idle "$SESSION_IDLE_SECONDS" --store "$WORK/store" \
  --audit-log "$WORK/console-audit.jsonl" >"$WORK/console.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  [ -s "$CMKFS_VAULT_DIR/server.json" ] && grep -q "console at" "$WORK/console.log" && break
  sleep 0.1
done
[ -s "$CMKFS_VAULT_DIR/server.json" ] || die "cmkfs-vault did not start: $(cat "$WORK/vault.log")"
export VAULT_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$CMKFS_VAULT_DIR/server.json")
CONSOLE_URL=$(grep -o 'https://[^ ]*/console' "$WORK/console.log" | head -1) || die "cmkfs console did not start: $(cat "$WORK/console.log")"
export CONSOLE_URL=${CONSOLE_URL%/console}
[ -z "$SHOTS" ] || export SCREENSHOTS=$(cd "$SHOTS" && pwd)
mkdir -p "$WORK/mnt"

# Bodies that cannot be bounded before they are read are refused before sign-in, by both: httplib
# read a chunked one, or one without a length, whole (any local user could fill the memory of the
# root console), and inflated a compressed one.
for url in "$CONSOLE_URL/console/signin" "$VAULT_URL/console/signin"; do
  code() { curl -sk -o /dev/null -w '%{http_code}' "$@"; }
  got=$(head -c 200000 /dev/zero | code -H 'Transfer-Encoding: chunked' --data-binary @- "$url")
  [ "$got" = 411 ] || die "a chunked body to $url got $got, not 411"
  got=$(code -X POST "$url")
  [ "$got" = 411 ] || die "a POST without a length to $url got $got, not 411"
  got=$(head -c 1000000 /dev/zero | gzip -c | code -H 'Content-Encoding: gzip' --data-binary @- "$url")
  [ "$got" = 415 ] || die "a gzip body to $url got $got, not 415"
done
# Another local user's wrong passwords shut out that user, not the host's admin (root), whom the
# browser signs in next: all of loopback was one client, and five guesses by anyone on the host
# shut the admin out for a minute.
guess() {  # URL PRODUCT: a wrong password from user nobody; the page it is sent to
  setpriv --reuid=65534 --regid=65534 --clear-groups curl -sk --max-time 10 -o /dev/null -D - \
    -b "__Host-$2-signin=x" --data 'csrf=x&password=wrong' "$1/console/signin" | grep -i '^location:'
}
for pair in "$CONSOLE_URL cmkfs" "$VAULT_URL cmkfs-vault"; do
  read -r url product <<<"$pair"
  for _ in 1 2 3 4 5; do guess "$url" "$product" | grep -q 'e=wrong' || die "a wrong password at $url was not refused as wrong"; done
  guess "$url" "$product" | grep -q 'e=throttled' || die "the sixth wrong password of a local user at $url was not throttled"
done
log "consoles at $VAULT_URL/console and $CONSOLE_URL/console, in $(/usr/bin/chromium --version 2>/dev/null)"
(cd "$node_dir" && node --test --test-concurrency=1 --test-reporter=spec vault-console.test.mjs store-console.test.mjs)
# The audit logs saw the consoles' actions with the admin, and the refused form.
grep '"operation":"console:createidentity"' "$CMKFS_VAULT_DIR/audit.log" | grep -q '"admin":"admin"' ||
  die "the vault's audit log has no console action with its admin"
grep -q '"error":"CsrfTokenMissing"' "$CMKFS_VAULT_DIR/audit.log" || die "the refused form is not in the audit log"
grep '"event":"console:rotate-key"' "$WORK/console-audit.jsonl" | grep -q '"admin":"admin"' ||
  die "cmkfs console's audit log has no key change with its admin"
log "passed"
