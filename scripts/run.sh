#!/usr/bin/env bash
# The main job: build cmkfs, start the local key vault, create and mount a store encrypted under a
# customer-managed key, show it working, revoke the key (EACCES) and restore it.
#
#   scripts/run.sh             vault key; leaves the vault running and the store mounted at
#                              /tmp/cmkfs-demo/mnt
#   scripts/run.sh --local     the built-in local key instead of the vault
#   scripts/run.sh --registry  also leaves docker-registry serving on the mount at 127.0.0.1:5000,
#                              pushes a small image and shows it through the registry view
#   scripts/run.sh --stop      stops the registry and the vault, and unmounts
#
# Idempotent: each run stops the previous demo and starts a fresh one. Debian 12, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DEMO=${CMKFS_DEMO_DIR:-/tmp/cmkfs-demo}
REGISTRY=0 STOP=0 LOCAL=0
VAULT_ADDR=127.0.0.1:8443
for arg in "$@"; do
  case $arg in
    --registry) REGISTRY=1 ;;
    --local) LOCAL=1 ;;
    --stop) STOP=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
CMKFS=$PWD/build/bin/cmkfs
VAULT="$PWD/build/bin/cmkfs-vault --dir $DEMO/vault"
json_field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }

stop_demo() {
  pkill -f "docker-registry serve $DEMO/" 2>/dev/null || true
  if grep -q " $DEMO/view " /proc/mounts; then "$CMKFS" umount "$DEMO/view" 2>/dev/null || umount -l "$DEMO/view"; fi
  if grep -q " $DEMO/mnt " /proc/mounts; then
    "$CMKFS" umount "$DEMO/mnt" 2>/dev/null || umount -l "$DEMO/mnt"
  fi
  pkill -f "cmkfs-vault --dir $DEMO/vault serve" 2>/dev/null || true
  for _ in $(seq 50); do pgrep -f "cmkfs-vault --dir $DEMO/vault serve" >/dev/null || break; sleep 0.1; done
}

# Waits until `cat FILE` fails (want=fail) or works (want=ok), up to 10 s.
wait_access() {
  for _ in $(seq 100); do
    if cat "$1" >/dev/null 2>&1; then [ "$2" = ok ] && return 0; else [ "$2" = fail ] && return 0; fi
    sleep 0.1
  done
  return 1
}

need_root
if [ $STOP = 1 ]; then stop_demo; echo "stopped"; exit 0; fi

step "install build dependencies (apt) and build"
install_packages "${BUILD_PACKAGES[@]}"
[ $REGISTRY = 1 ] && install_packages docker-registry skopeo umoci curl
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target cmkfs cmkfs-vault | grep -Ev '^\[ *[0-9]+%\]' || true

stop_demo
# The previous demo's store goes, and with it this host's binding of it.
if [ -x "$CMKFS" ] && [ -d "$DEMO/store" ]; then
  old_id=$("$CMKFS" encryption show "$DEMO/store" 2>/dev/null | json_field storeId || true)
  [ -n "$old_id" ] && rm -f "/etc/cmkfs/stores/$old_id.json"
fi
rm -rf "$DEMO"
mkdir -p "$DEMO/mnt"
MOUNT_FLAGS=(--log-file "$DEMO/cmkfs.log" --audit-log "$DEMO/audit.jsonl" --key-check-interval 2s)
if [ $LOCAL = 1 ]; then
  step "a fresh store in $DEMO, under the built-in local key"
  "$CMKFS" init "$DEMO/store" --local-key-file "$DEMO/keys/local.key"
else
  step "start the local key vault (cmkfs-vault) on https://$VAULT_ADDR"
  setsid $VAULT serve --listen "$VAULT_ADDR" >"$DEMO/vault.log" 2>&1 </dev/null &
  for _ in $(seq 100); do [ -f "$DEMO/vault/server.json" ] && break; sleep 0.1; done
  [ -f "$DEMO/vault/server.json" ] || { cat "$DEMO/vault.log"; exit 1; }
  cat "$DEMO/vault.log"

  step "an identity, a key and an access policy (az identity create; az keyvault key create; az keyvault set-policy)"
  IDENTITY=$($VAULT identity create --name registry-identity)
  echo "$IDENTITY"
  CLIENT_ID=$(echo "$IDENTITY" | json_field clientId)
  PRINCIPAL_ID=$(echo "$IDENTITY" | json_field principalId)
  $VAULT key create --name registry-cmk --kty RSA --size 3072 | json_field kid
  $VAULT set-policy --object-id "$PRINCIPAL_ID" --key-permissions get wrapKey unwrapKey >/dev/null
  KEY_ID=https://$VAULT_ADDR/keys/registry-cmk   # no version: automatic rotation
  VAULT_FLAGS=(--identity "$CLIENT_ID" --identity-endpoint "https://$VAULT_ADDR/metadata/identity/oauth2/token"
               --vault-ca "$DEMO/vault/ca.pem")

  step "a fresh store in $DEMO, its data key wrapped by the vault key (az acr create --key-encryption-key)"
  "$CMKFS" init "$DEMO/store" --key-encryption-key "$KEY_ID" "${VAULT_FLAGS[@]}"
fi
STORE_ID=$("$CMKFS" encryption show "$DEMO/store" | json_field storeId)

step "this host's binding of the store: the only place cmkfs takes key settings from"
cat "/etc/cmkfs/stores/$STORE_ID.json"

step "mount it"
"$CMKFS" mount "$DEMO/store" "$DEMO/mnt" "${MOUNT_FLAGS[@]}"
grep " $DEMO/mnt " /proc/mounts

step "write and read through the mount"
mkdir -p "$DEMO/mnt/docker/registry/v2/blobs/sha256/ab"
echo "hello from cmkfs: this sentence is stored encrypted" >"$DEMO/mnt/hello.txt"
head -c 5000000 /dev/urandom >"$DEMO/demo.bin"
cp "$DEMO/demo.bin" "$DEMO/mnt/docker/registry/v2/blobs/sha256/ab/data"
cat "$DEMO/mnt/hello.txt"
cmp "$DEMO/demo.bin" "$DEMO/mnt/docker/registry/v2/blobs/sha256/ab/data" && echo "5 MB blob reads back identical"
find "$DEMO/mnt" | head -8

step "what the backing store holds: random object names, no plaintext"
find "$DEMO/store" -type f -size +0 | head -5
if grep -rqa -e "hello from cmkfs" -e "sha256" -e "docker" "$DEMO/store"; then
  echo "PLAINTEXT FOUND in the backing store" >&2; exit 1
fi
echo "grep for 'hello from cmkfs', 'sha256', 'docker' in $DEMO/store: nothing found"

step "encryption settings (az acr encryption show)"
"$CMKFS" encryption show "$DEMO/store"

step "unmount, mount again: same bytes"
"$CMKFS" umount "$DEMO/mnt"
"$CMKFS" mount "$DEMO/store" "$DEMO/mnt" "${MOUNT_FLAGS[@]}"
cmp "$DEMO/demo.bin" "$DEMO/mnt/docker/registry/v2/blobs/sha256/ab/data" && echo "identical after remount"

step "rotate the data key while mounted: everything re-encrypted in the background"
"$CMKFS" encryption rotate-data-key "$DEMO/mnt"
live_rotation() {
  "$CMKFS" encryption show "$DEMO/store" | python3 -c 'import json,sys; l=json.load(sys.stdin).get("liveKeyState",{})
print(l.get("dataKeyGeneration"), "rotating" if "dataKeyRotation" in l else "settled")'
}
for _ in $(seq 150); do [ "$(live_rotation)" = "2 settled" ] && break; sleep 0.2; done
[ "$(live_rotation)" = "2 settled" ] || { echo "the data-key rotation did not finish" >&2; exit 1; }
"$CMKFS" encryption show "$DEMO/store" | sed -n '/liveKeyState/,/}/p'
cmp "$DEMO/demo.bin" "$DEMO/mnt/docker/registry/v2/blobs/sha256/ab/data" && echo "the blob reads back identical under the new data key"

if [ $LOCAL = 0 ]; then
  step "revoke the key: remove the identity's access (az keyvault delete-policy)"
  $VAULT delete-policy --object-id "$PRINCIPAL_ID" >/dev/null
  wait_access "$DEMO/mnt/hello.txt" fail || { echo "still readable after revocation" >&2; exit 1; }
  cat "$DEMO/mnt/hello.txt" || true
  ls "$DEMO/mnt" || true
  "$CMKFS" encryption show "$DEMO/store" | sed -n '/liveKeyState/,/}/p'

  step "restore the access policy: the mount serves again, no remount"
  $VAULT set-policy --object-id "$PRINCIPAL_ID" --key-permissions get wrapKey unwrapKey >/dev/null
  wait_access "$DEMO/mnt/hello.txt" ok || { echo "not restored" >&2; exit 1; }
  cat "$DEMO/mnt/hello.txt"
  echo "key audit log: $DEMO/audit.jsonl"; tail -n 3 "$DEMO/audit.jsonl"
fi

if [ $REGISTRY = 1 ]; then
  step "docker-registry on the mount"
  cat >"$DEMO/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DEMO/mnt
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
  setsid docker-registry serve "$DEMO/registry.yml" >"$DEMO/registry.log" 2>&1 < /dev/null &
  for _ in $(seq 50); do curl -fs http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
  curl -fsS http://127.0.0.1:5000/v2/ >/dev/null && echo "registry serving at 127.0.0.1:5000 (log: $DEMO/registry.log)"
  echo "push with: skopeo copy --dest-tls-verify=false oci:LAYOUT:TAG docker://127.0.0.1:5000/NAME:TAG"

  step "push an image, and browse it through the registry view"
  rm -rf "$DEMO/oci" "$DEMO/bundle"
  umoci init --layout "$DEMO/oci" && umoci new --image "$DEMO/oci:base"
  umoci unpack --image "$DEMO/oci:base" "$DEMO/bundle" >/dev/null
  mkdir -p "$DEMO/bundle/rootfs/etc" && echo "hello from an encrypted image" >"$DEMO/bundle/rootfs/etc/motd"
  umoci repack --image "$DEMO/oci:hello" "$DEMO/bundle" && rm -rf "$DEMO/bundle"
  skopeo copy --quiet --dest-tls-verify=false "oci:$DEMO/oci:hello" docker://127.0.0.1:5000/demo/hello:1.0
  mkdir -p "$DEMO/view"
  "$CMKFS" view "$DEMO/mnt" "$DEMO/view"
  ( set -x; ls "$DEMO/view/demo" "$DEMO/view/demo/hello:1.0"; cat "$DEMO/view/demo/hello:1.0/rootfs/etc/motd" )
  "$CMKFS" inspect "$DEMO/mnt" --image demo/hello:1.0
fi

step "done"
echo "the store stays mounted at $DEMO/mnt; stop with: scripts/run.sh --stop"
[ $LOCAL = 0 ] && echo "the vault keeps running: $VAULT key rotate --name registry-cmk, delete-policy, ..."
exit 0
