#!/usr/bin/env bash
# End-to-end: the CNCF distribution registry (docker-registry) stores its data on a cmkfs mount.
# Pushes several multi-layer images built locally with umoci, pulls them back with digests
# verified, reads a layer with HTTP Range requests, deletes a manifest, garbage-collects, and
# finally scans the backing store for any plaintext: content, digests, registry path names.
#
# usage: tests/e2e/registry-e2e.sh [path/to/cmkfs]     (default: build/bin/cmkfs)
# Needs root, /dev/fuse, docker-registry, skopeo, umoci, curl, python3.
set -euo pipefail

CMKFS=$(realpath "${1:-build/bin/cmkfs}")
WORK=$(mktemp -d /tmp/cmkfs-e2e.XXXXXX) TAG=e2e
. "$(dirname "$0")/lib.sh"
# A free port, so that a registry left running elsewhere cannot answer in our place.
PORT=${CMKFS_E2E_PORT:-$(free_port)}
MNT=$WORK/mnt STORE=$WORK/store
export CMKFS_CONFIG_DIR=$WORK/host  # this run's host bindings, not /etc/cmkfs

cleanup() {
  local rc=$?
  stop_registry
  unmount_all "$MNT"
  if [ $rc -eq 0 ]; then rm -rf "$WORK"; else
    log "kept $WORK for inspection"; tail -n 20 "$WORK/cmkfs.log" "$WORK/registry.log" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'printf "[e2e] FAIL: line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR


# --- images: img1 (2 layers), img2 = img1 + 1 layer, img3 (its own 2 layers) --------------------
build_images() {
  local oci=$WORK/oci
  umoci init --layout "$oci"
  umoci new --image "$oci:base"
  add_layer base img1 "MARKER-IMG1-A" 3000000
  add_layer img1 img1 "MARKER-IMG1-B" 500000
  add_layer img1 img2 "MARKER-IMG2-C" 1500000
  umoci new --image "$oci:empty3"
  add_layer empty3 img3 "MARKER-IMG3-A" 2000000
  add_layer img3 img3 "MARKER-IMG3-B" 100000
}
# add_layer FROM TO MARKER SIZE: unpack FROM, add a file with MARKER and SIZE random bytes, repack as TO.
add_layer() {
  local b=$WORK/bundle-$RANDOM
  umoci unpack --image "$WORK/oci:$1" "$b" >/dev/null
  mkdir -p "$b/rootfs/data"
  { echo "$3"; head -c "$4" /dev/urandom; echo "$3"; } >"$b/rootfs/data/$3.bin"
  umoci repack --image "$WORK/oci:$2" "$b"
  rm -rf "$b"
}
manifest_digest() { python3 -c 'import json,sys; print([m["digest"] for m in json.load(open(sys.argv[1]))["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"]==sys.argv[2]][0])' "$WORK/oci/index.json" "$1"; }
layers_of() { python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(open(sys.argv[1]))["layers"]))' "$WORK/oci/blobs/sha256/${1#sha256:}"; }

# --- set up ------------------------------------------------------------------------------------
log "building images with umoci"
build_images
log "creating and mounting a store"
mkdir -p "$MNT"
"$CMKFS" init "$STORE" --local-key-file "$WORK/key" >/dev/null
# The first data key's wrapped copy, as LMDB holds it: it must be gone after the rotation.
OLD_WRAPPED=$(grep -ao '"blob":"[0-9a-f]*"' "$STORE/meta/data.mdb" | head -n 1)
[ -n "$OLD_WRAPPED" ] || die "no wrapped data key found in data.mdb"
"$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log" --key-check-interval 500ms
write_registry_config "$MNT" "127.0.0.1:$PORT"
start_registry "127.0.0.1:$PORT"

REG=127.0.0.1:$PORT
# A data-key rotation starts after the first push and runs under the next ones.
for img in img1 img2 img3; do
  log "push $img"
  skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:$img" "docker://$REG/apps/$img:v1"
  if [ $img = img1 ]; then
    "$CMKFS" encryption rotate-data-key "$MNT" >/dev/null
    log "data-key rotation started under the pushes"
  fi
done
live_state() {
  "$CMKFS" encryption show "$STORE" 2>/dev/null |
    python3 -c 'import json,sys; l=json.load(sys.stdin).get("liveKeyState",{}); print(l.get("dataKeyGeneration"), "rotating" if "dataKeyRotation" in l else "settled")'
}
for _ in $(seq 300); do [ "$(live_state)" = "2 settled" ] && break; sleep 0.2; done
[ "$(live_state)" = "2 settled" ] || die "the data-key rotation did not finish: $(live_state)"
log "data-key rotation to generation 2 finished"

# --- pull back bit-exact -------------------------------------------------------------------------
for img in img1 img2 img3; do
  want=$(manifest_digest $img)
  got="sha256:$(skopeo inspect --raw --tls-verify=false "docker://$REG/apps/$img:v1" | sha256sum | cut -d' ' -f1)"
  [ "$want" = "$got" ] || die "$img manifest digest $got, pushed $want"
  # skopeo verifies every blob digest while copying.
  skopeo copy --quiet --src-tls-verify=false "docker://$REG/apps/$img:v1" "oci:$WORK/pulled:$img"
  for l in $(layers_of "$want"); do
    cmp -s "$WORK/oci/blobs/sha256/${l#sha256:}" "$WORK/pulled/blobs/sha256/${l#sha256:}" || die "$img layer $l differs"
  done
  log "pulled $img bit-exact ($want)"
done

# --- HTTP Range requests on a layer ----------------------------------------------------------------
layer=$(layers_of "$(manifest_digest img1)" | cut -d' ' -f1)
blob=$WORK/oci/blobs/sha256/${layer#sha256:}
for range in 0-99 65530-65545 1000000-1999999 $(( $(stat -c %s "$blob") - 10 ))-; do
  curl -fsS -r "$range" "http://$REG/v2/apps/img1/blobs/$layer" -o "$WORK/range.out"
  start=${range%-*} end=${range#*-}
  [ -n "$end" ] || end=$(( $(stat -c %s "$blob") - 1 ))
  dd if="$blob" of="$WORK/range.want" iflag=skip_bytes,count_bytes skip="$start" count=$((end - start + 1)) status=none
  cmp -s "$WORK/range.out" "$WORK/range.want" || die "range $range of $layer differs"
done
log "HTTP Range reads of $layer match"

# --- delete a manifest, garbage-collect ------------------------------------------------------------
img3_digest=$(manifest_digest img3)
img3_only=$(layers_of "$img3_digest" | cut -d' ' -f1)
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$REG/v2/apps/img3/manifests/$img3_digest")
[ "$code" = 202 ] || die "DELETE manifest answered $code"
stop_registry
log "garbage-collect"
docker-registry garbage-collect "$WORK/registry.yml" >>"$WORK/registry.log" 2>&1
start_registry "$REG"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REG/v2/apps/img3/manifests/$img3_digest")
[ "$code" = 404 ] || die "deleted manifest answers $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -I "http://$REG/v2/apps/img1/blobs/$img3_only")
[ "$code" = 404 ] || die "blob only img3 used still served after garbage-collect ($code)"
for img in img1 img2; do
  rm -rf "$WORK/pulled2"
  skopeo copy --quiet --src-tls-verify=false "docker://$REG/apps/$img:v1" "oci:$WORK/pulled2:$img"
done
log "after delete and garbage-collect, img1 and img2 still pull bit-exact"

# --- the backing store holds no plaintext ----------------------------------------------------------
stop_registry
"$CMKFS" umount "$MNT" >/dev/null
! grep -qaF "$OLD_WRAPPED" "$STORE/meta/data.mdb" || die "the old wrapped data key survives in data.mdb"
log "the old wrapped data key is gone from data.mdb (compacted at unmount)"
python3 - "$STORE" "$WORK/oci" <<'PY'
import os, sys
store, oci = sys.argv[1], sys.argv[2]
needles = [b"sha256", b"_manifests", b"_uploads", b"_layers", b"repositories", b"docker/registry",
           b"application/vnd.oci", b"MARKER-IMG"]
for name in os.listdir(os.path.join(oci, "blobs", "sha256")):
    needles.append(name.encode())                      # every digest, as text
    data = open(os.path.join(oci, "blobs", "sha256", name), "rb").read()
    for off in range(0, len(data) - 48, max(1, len(data) // 8)):
        needles.append(data[off:off + 48])             # windows of every blob's bytes
found = 0
for root, dirs, files in os.walk(store):
    for n in dirs + files:
        for needle in needles[:8]:
            if needle in n.encode():
                print(f"plaintext name in {os.path.join(root, n)}"); found += 1
    for f in files:
        blob = open(os.path.join(root, f), "rb").read()
        for needle in needles:
            if needle in blob:
                print(f"plaintext {needle[:40]!r} in {os.path.join(root, f)}"); found += 1
print(f"[e2e] scanned the backing store for {len(needles)} plaintext needles: {found} found")
sys.exit(1 if found else 0)
PY

# --- and it checks clean offline: every record, link count and chunk ------------------------------
"$CMKFS" fsck "$STORE" | sed 's/^/[e2e] fsck: /'  # pipefail: a problem found fails the run

# --- and cmkfs inspect reads the registry's tags back through the encryption ---------------------
"$CMKFS" inspect "$STORE" >"$WORK/inspect.json"
python3 - "$WORK/inspect.json" "$(manifest_digest img1)" "$(manifest_digest img2)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
repos = {r["name"]: r for r in j["registry"]["repositories"]}
for name, digest in (("apps/img1", sys.argv[2]), ("apps/img2", sys.argv[3])):
    got = repos.get(name, {}).get("tags", {}).get("v1")
    if got != digest:
        sys.exit(f"[e2e] inspect shows {name}:v1 -> {got}, pushed {digest}")
blobs = j["registry"]["blobs"]
gen = j['protection']['dataKeyGeneration']
if gen != 2:
    sys.exit(f"[e2e] inspect shows data key generation {gen}, 2 after the rotation")
print(f"[e2e] inspect: {len(repos)} repositories, {blobs['count']} blobs ({blobs['bytes']} bytes), "
      f"sealed under data key generation {gen}")
PY
log "PASS"
