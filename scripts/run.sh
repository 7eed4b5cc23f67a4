#!/usr/bin/env bash
# The main job: build cmkfs, create and mount an encrypted store, and show it working.
#
#   scripts/run.sh             local (built-in) key; leaves the store mounted at /tmp/cmkfs-demo/mnt
#   scripts/run.sh --registry  also leaves docker-registry serving on the mount at 127.0.0.1:5000
#   scripts/run.sh --stop      stops the registry and unmounts
#
# Idempotent: each run unmounts the previous demo and starts a fresh one. Debian 12, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DEMO=${CMKFS_DEMO_DIR:-/tmp/cmkfs-demo}
REGISTRY=0 STOP=0
for arg in "$@"; do
  case $arg in
    --registry) REGISTRY=1 ;;
    --stop) STOP=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
CMKFS=$PWD/build/fs/cmkfs

stop_demo() {
  pkill -f "docker-registry serve $DEMO/" 2>/dev/null || true
  if grep -q " $DEMO/mnt " /proc/mounts; then
    "$CMKFS" umount "$DEMO/mnt" 2>/dev/null || umount -l "$DEMO/mnt"
  fi
}

need_root
if [ $STOP = 1 ]; then stop_demo; echo "stopped"; exit 0; fi

step "install build dependencies (apt) and build"
install_packages "${BUILD_PACKAGES[@]}"
[ $REGISTRY = 1 ] && install_packages docker-registry skopeo curl
BUILD_TARGET=cmkfs build build Release

step "a fresh store in $DEMO"
stop_demo
rm -rf "$DEMO"
mkdir -p "$DEMO/mnt"
"$CMKFS" init "$DEMO/store" --local-key-file "$DEMO/keys/local.key"

step "mount it"
"$CMKFS" mount "$DEMO/store" "$DEMO/mnt" --log-file "$DEMO/cmkfs.log"
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

step "encryption settings"
"$CMKFS" encryption show "$DEMO/store"

step "unmount, mount again: same bytes"
"$CMKFS" umount "$DEMO/mnt"
"$CMKFS" mount "$DEMO/store" "$DEMO/mnt" --log-file "$DEMO/cmkfs.log"
cmp "$DEMO/demo.bin" "$DEMO/mnt/docker/registry/v2/blobs/sha256/ab/data" && echo "identical after remount"

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
fi

step "done"
echo "the store stays mounted at $DEMO/mnt; stop with: scripts/run.sh --stop"
