#!/usr/bin/env bash
# Soak: 8 clients push and pull images through docker-registry on a mount under a vault key, for
# MINUTES, with a data-key rotation, a key-version rotation and a revoke/restore in the middle.
# Afterwards every image pulls with its digests verified and fsck is clean; prints the daemon's
# peak RSS. Not part of the test command (too long); run it as:
#
#   tests/e2e/soak.sh [--minutes 10] [--clients 8] [path/to/build/bin]     (default: build/bin)
#
# Needs root, /dev/fuse, docker-registry, skopeo, umoci, curl, python3.
set -euo pipefail

MINUTES=10 CLIENTS=8 BIN=build/bin
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) MINUTES=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) BIN=$1 ;;
  esac
  shift
done
CMKFS=$(realpath "$BIN/cmkfs") VAULT_BIN=$(realpath "$BIN/cmkfs-vault")
WORK=$(mktemp -d /tmp/cmkfs-e2e-soak.XXXXXX) TAG=soak
. "$(dirname "$0")/lib.sh"
PORT=$(free_port)
MNT=$WORK/mnt STORE=$WORK/store REG=127.0.0.1:$PORT
VAULT="$VAULT_BIN --dir $WORK/vault"
export CMKFS_CONFIG_DIR=$WORK/host
PIDS=()

cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "cmkfs-vault --dir $WORK/vault" 2>/dev/null || true  # before wait: it is a job too
  wait 2>/dev/null || true
  unmount_all "$MNT"
  if [ $rc -eq 0 ]; then rm -rf "$WORK"; else log "kept $WORK for inspection"; fi
}
trap cleanup EXIT

log "vault, identity, key"
setsid $VAULT serve --listen 127.0.0.1:0 >"$WORK/vault.log" 2>&1 </dev/null &
for _ in $(seq 100); do [ -f "$WORK/vault/server.json" ] && break; sleep 0.1; done
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$WORK/vault/server.json")
ID=$($VAULT identity create --name soak)
CLIENT_ID=$(echo "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientId"])')
PRINCIPAL=$(echo "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["principalId"])')
$VAULT set-policy --object-id "$PRINCIPAL" --key-permissions get wrapKey unwrapKey >/dev/null
$VAULT key create --name soak >/dev/null
"$CMKFS" init "$STORE" --key-encryption-key "$URL/keys/soak" --identity "$CLIENT_ID" \
  --identity-endpoint "$URL/metadata/identity/oauth2/token" --vault-ca "$WORK/vault/ca.pem" >/dev/null
mkdir -p "$MNT"
"$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log" --key-check-interval 1s --rotation-poll-interval 5s
write_registry_config "$MNT" "$REG"
start_registry "$REG"
PIDS+=("$REG_PID")

log "one image per client (umoci)"
umoci init --layout "$WORK/oci"
for c in $(seq "$CLIENTS"); do
  umoci new --image "$WORK/oci:c$c"
  b=$WORK/bundle$c
  umoci unpack --image "$WORK/oci:c$c" "$b" >/dev/null
  head -c $((2000000 + c * 300000)) /dev/urandom >"$b/rootfs/blob$c"
  umoci repack --image "$WORK/oci:c$c" "$b"
  rm -rf "$b"
done

# Each client pushes and pulls its image in a loop until the end, checking what it pulls.
END=$(( $(date +%s) + MINUTES * 60 ))
client() {
  local c=$1 n=0
  while [ "$(date +%s)" -lt "$END" ]; do
    skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:c$c" "docker://$REG/soak/c$c:$n" 2>>"$WORK/client$c.log" || true
    rm -rf "$WORK/pull$c"
    if skopeo copy --quiet --src-tls-verify=false "docker://$REG/soak/c$c:$n" "oci:$WORK/pull$c:x" 2>>"$WORK/client$c.log"; then
      n=$((n + 1))
    fi
  done
  echo "$n" >"$WORK/rounds$c"
}
for c in $(seq "$CLIENTS"); do client "$c" & PIDS+=($!); done

live_state() {
  "$CMKFS" encryption show "$STORE" | python3 -c 'import json,sys; l=json.load(sys.stdin)["liveKeyState"]; print(l["state"], l["dataKeyGeneration"])'
}
peak=0
sample_rss() {
  local pid kb
  pid=$(pgrep -f "cmkfs mount $STORE" | head -1)
  kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ "$kb" -gt "$peak" ] && peak=$kb
  return 0
}
third=$(( MINUTES * 20 ))
for phase in "data-key rotation" "key-version rotation" "revoke and restore"; do
  for _ in $(seq "$third"); do sample_rss; sleep 1; done
  log "$phase"
  case $phase in
    "data-key rotation") "$CMKFS" encryption rotate-data-key "$MNT" >/dev/null ;;
    "key-version rotation") $VAULT key rotate --name soak >/dev/null ;;
    "revoke and restore")
      $VAULT delete-policy --object-id "$PRINCIPAL" >/dev/null
      sleep 5
      $VAULT set-policy --object-id "$PRINCIPAL" --key-permissions get wrapKey unwrapKey >/dev/null
      for _ in $(seq 100); do live_state | grep -q '^available' && break; sleep 0.2; done ;;
  esac
done
while [ "$(date +%s)" -lt "$END" ]; do sample_rss; sleep 1; done
for p in "${PIDS[@]:1}"; do wait "$p" || true; done
rounds=$(cat "$WORK"/rounds* | paste -sd+ | bc)

log "every tag names the image pushed, and every image pulls with its digests verified"
tags=0
for c in $(seq "$CLIENTS"); do
  want=$(python3 -c 'import json,sys; print([m["digest"] for m in json.load(open(sys.argv[1]))["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"]==sys.argv[2]][0])' "$WORK/oci/index.json" "c$c")
  for t in $(curl -fsS "http://$REG/v2/soak/c$c/tags/list" | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin).get("tags") or []))'); do
    got=$(curl -fsSI -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://$REG/v2/soak/c$c/manifests/$t" |
          tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}')
    [ "$got" = "$want" ] || die "soak/c$c:$t names $got, pushed $want"
    tags=$((tags + 1))
  done
  rm -rf "$WORK/check"
  skopeo copy --quiet --src-tls-verify=false "docker://$REG/soak/c$c:0" "oci:$WORK/check:x" || die "soak/c$c does not pull"
done
[ "$tags" -gt 0 ] || die "no tag pulled back"
state=$(live_state)
kill "${PIDS[0]}"
"$CMKFS" umount "$MNT" >/dev/null
"$CMKFS" fsck "$STORE" | tail -n 1 | grep -qx clean || die "fsck: $("$CMKFS" fsck "$STORE" | tail -n 3)"
log "PASS: $MINUTES min, $CLIENTS clients, $rounds push+pull rounds, $tags tags checked; key $state; fsck clean; daemon peak RSS $((peak / 1024)) MiB"
