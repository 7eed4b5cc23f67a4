#!/usr/bin/env bash
# End-to-end: one encrypted store served by two nodes, its metadata in PostgreSQL
# (scripts/pg-cluster.sh) and its objects in Ceph RADOS (scripts/ceph-cluster.sh), both real and
# on this host. Node A mounts it and runs a docker-registry that takes pushes; node B, another
# store directory of the same store, follows it (`cmkfs mount --follow`) under a read-only
# docker-registry that serves pulls. Images pushed through A pull through B with every digest
# verified, and B's registry view shows them; the vault key revoked, every access through both mounts is EACCES, and restored, both
# serve again without a remount; a manifest deleted and garbage-collected through A is gone
# through B while the rest still pull; A killed in the middle of a push leaves B serving what was committed, and A's next
# mount repairs what the kill left (fsck clean).
#
# With `s3`, the objects are in an S3 bucket of the cluster's gateway (radosgw) instead.
#
# usage: tests/e2e/cluster-e2e.sh [path/to/cmkfs] [rados|s3]     (default: build/bin/cmkfs rados)
# Needs root, /dev/fuse, postgresql, ceph-mon, ceph-osd, ceph-mgr, radosgw, docker-registry, skopeo, umoci.
set -euo pipefail

CMKFS=$(realpath "${1:-build/bin/cmkfs}")
OBJECTS=${2:-rados}
[ "$OBJECTS" = rados ] || [ "$OBJECTS" = s3 ] || { echo "usage: $0 [cmkfs] [rados|s3]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/cmkfs-e2e-cluster.XXXXXX) TAG=cluster-$OBJECTS
. "$(dirname "$0")/lib.sh"
# A running cluster (with its gateway) in $CMKFS_TEST_CEPH_DIR, as ctest's `ceph` fixture gives,
# is used and left running; otherwise one is started here.
CEPH=${CMKFS_TEST_CEPH_DIR:-$WORK/ceph} PG=$WORK/pg
STORE_A=$WORK/a/store MNT_A=$WORK/a/mnt STORE_B=$WORK/b/store MNT_B=$WORK/b/mnt
# Each node has its own host configuration (its bindings), as two machines would.
node_a() { CMKFS_CONFIG_DIR=$WORK/host-a "$CMKFS" "$@"; }
node_b() { CMKFS_CONFIG_DIR=$WORK/host-b "$CMKFS" "$@"; }
VAULT="$(dirname "$CMKFS")/cmkfs-vault --dir $WORK/vault"
B_PID="" VAULT_PID=""

cleanup() {
  local rc=$?
  stop_registry
  { [ -n "$B_PID" ] && kill "$B_PID" 2>/dev/null && wait "$B_PID" 2>/dev/null; } || true
  unmount_all "$WORK/b/view" "$MNT_B" "$MNT_A"
  { [ -n "$VAULT_PID" ] && kill "$VAULT_PID" 2>/dev/null && wait "$VAULT_PID" 2>/dev/null; } || true
  [ -n "${CMKFS_TEST_CEPH_DIR:-}" ] || "$ROOT/scripts/ceph-cluster.sh" stop "$CEPH" >/dev/null 2>&1 || true
  "$ROOT/scripts/pg-cluster.sh" stop "$PG" >/dev/null 2>&1 || true
  if [ $rc -eq 0 ]; then rm -rf "$WORK"; else
    log "kept $WORK for inspection"; tail -n 20 "$WORK"/*.log 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'printf "[cluster] FAIL: line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

log "starting PostgreSQL and a single-host Ceph cluster"
"$ROOT/scripts/pg-cluster.sh" start "$PG"
if [ -z "${CMKFS_TEST_CEPH_DIR:-}" ]; then
  if [ "$OBJECTS" = s3 ]; then "$ROOT/scripts/ceph-cluster.sh" start "$CEPH" cmkfs --rgw >/dev/null
  else "$ROOT/scripts/ceph-cluster.sh" start "$CEPH" cmkfs >/dev/null; fi
fi

log "a key vault (cmkfs-vault): an identity, a key and its access policy"
VAULT_ADDR=127.0.0.1:$(free_port)
$VAULT serve --listen "$VAULT_ADDR" >"$WORK/vault.log" 2>&1 &
VAULT_PID=$!
for _ in $(seq 100); do [ -f "$WORK/vault/server.json" ] && break; sleep 0.1; done
identity=$($VAULT identity create --name node-identity)
client=$(echo "$identity" | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientId"])')
principal=$(echo "$identity" | python3 -c 'import json,sys; print(json.load(sys.stdin)["principalId"])')
$VAULT key create --name cmk --kty RSA --size 2048 >/dev/null
$VAULT set-policy --object-id "$principal" --key-permissions get wrapKey unwrapKey >/dev/null

mkdir -p "$WORK/a" "$WORK/b" "$MNT_A" "$MNT_B"
# Each node's way to the objects: the cluster's config, or the gateway and a copy of the S3 keys.
if [ "$OBJECTS" = s3 ]; then
  . "$CEPH/rgw.env"
  for n in a b; do
    (umask 077; printf 'access_key = %s\nsecret_key = %s\n' "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY" >"$WORK/$n/s3.keys")
  done
  OBJ_A=(--objects s3://cmkfs-cluster --s3-endpoint "$RGW_ENDPOINT" --s3-credentials "$WORK/a/s3.keys")
  REACH_B=(--s3-endpoint "$RGW_ENDPOINT" --s3-credentials "$WORK/b/s3.keys")
else
  OBJ_A=(--objects rados://cmkfs --ceph-conf "$CEPH/ceph.conf")
  REACH_B=(--ceph-conf "$CEPH/ceph.conf")
fi
log "init: metadata in PostgreSQL, objects in ${OBJ_A[1]}, the data key wrapped by the vault key"
node_a init "$STORE_A" --meta postgres --pg-conninfo "$PG/conninfo" "${OBJ_A[@]}" --key-encryption-key "https://$VAULT_ADDR/keys/cmk" --identity "$client" \
  --identity-endpoint "https://$VAULT_ADDR/metadata/identity/oauth2/token" --vault-ca "$WORK/vault/ca.pem" \
  >"$WORK/init.out"
grep -q "metadata:   postgres" "$WORK/init.out" || die "init does not say where the metadata is: $(cat "$WORK/init.out")"
KEY_FLAGS=(--key-encryption-key "https://$VAULT_ADDR/keys/cmk" --identity "$client"
  --identity-endpoint "https://$VAULT_ADDR/metadata/identity/oauth2/token" --vault-ca "$WORK/vault/ca.pem")
show=$(node_a encryption show "$STORE_A")
schema=$(echo "$show" | python3 -c 'import json,sys; print(json.load(sys.stdin)["engines"]["metadata"]["schema"])')
fingerprint=$(echo "$show" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hostBinding"]["dataKeyFingerprint"])')

log "node B: its own directory of the store, made and bound by cmkfs trust"
cp "$PG/conninfo" "$WORK/b/conninfo"  # node B's copy of the connection file
node_b trust "$STORE_B" --meta "postgres://$schema" --pg-conninfo "$WORK/b/conninfo" "${REACH_B[@]}" \
  --fingerprint "$fingerprint" "${KEY_FLAGS[@]}" >"$WORK/trust.out"
[ -f "$STORE_B/meta/engine.json" ] && [ ! -e "$STORE_B/meta/data.mdb" ] || die "trust made no store directory"

node_a mount "$STORE_A" "$MNT_A" --log-file "$WORK/a.log" --key-check-interval 1s
node_b mount "$STORE_B" "$MNT_B" --follow --log-file "$WORK/b.log" --key-check-interval 1s
mkdir -p "$WORK/b/mnt2"
out=$(node_b mount "$STORE_B" "$WORK/b/mnt2" 2>&1) && die "a second writer mounted"
[[ $out == *"mounted (or checked) by another cmkfs"* ]] || die "a second writer: $out"

# registry_config FILE ROOTDIR ADDR [readonly]
registry_config() {
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: %s\nhttp:\n  addr: %s\n' \
    "$2" "${4:-false}" "$3" >"$1"
}
wait_answers() {
  for _ in $(seq 100); do curl -fs "http://$1/v2/" >/dev/null && return 0; sleep 0.1; done
  die "docker-registry on $1 did not start"
}
REG_A=127.0.0.1:$(free_port) REG_B=127.0.0.1:$(free_port)
registry_config "$WORK/registry.yml" "$MNT_A/registry" "$REG_A"
registry_config "$WORK/registry-b.yml" "$MNT_B/registry" "$REG_B" true
start_registry "$REG_A"  # lib.sh: $WORK/registry.yml

log "two images pushed through node A"
umoci init --layout "$WORK/oci" >/dev/null
for img in one two; do
  umoci new --image "$WORK/oci:$img" >/dev/null
  umoci unpack --image "$WORK/oci:$img" "$WORK/bundle-$img" >/dev/null
  head -c $((5 << 20)) /dev/urandom >"$WORK/bundle-$img/rootfs/payload"
  umoci repack --image "$WORK/oci:$img" "$WORK/bundle-$img" >/dev/null
  skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:$img" "docker://$REG_A/apps/$img:v1"
done
digest_of() { python3 -c 'import json,sys; print([m["digest"] for m in json.load(open(sys.argv[1]))["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == sys.argv[2]][0])' "$WORK/oci/index.json" "$1"; }

log "pulled through node B, every digest verified"
docker-registry serve "$WORK/registry-b.yml" >>"$WORK/registry-b.log" 2>&1 &
B_PID=$!
wait_answers "$REG_B"
for img in one two; do
  got="sha256:$(skopeo inspect --raw --tls-verify=false "docker://$REG_B/apps/$img:v1" | sha256sum | cut -d' ' -f1)"
  [ "$got" = "$(digest_of "$img")" ] || die "node B serves $img with manifest digest $got"
  skopeo copy --quiet --src-tls-verify=false "docker://$REG_B/apps/$img:v1" "oci:$WORK/pulled:$img"  # verifies every blob
done
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://$REG_B/v2/apps/x/blobs/uploads/") || true
[ "$code" != 202 ] || die "node B's read-only registry took an upload"

log "the registry view of node B's mount: an image's manifest and its files"
mkdir -p "$WORK/b/view"
node_b view "$MNT_B" "$WORK/b/view" --registry-root /registry >/dev/null
skopeo inspect --raw --tls-verify=false "docker://$REG_B/apps/two:v1" | cmp -s - "$WORK/b/view/apps/two:v1/manifest.json" ||
  die "the view's manifest differs from the registry's"
cmp "$WORK/bundle-two/rootfs/payload" "$WORK/b/view/apps/two:v1/rootfs/payload" || die "the view's rootfs reads wrong"
node_b umount "$WORK/b/view" >/dev/null

log "the key revoked: both nodes answer EACCES; restored: both serve again, no remount"
blob=$(find "$MNT_B/registry/docker/registry/v2/blobs" -name data | head -1)
blob_a=$MNT_A/${blob#"$MNT_B/"}
$VAULT delete-policy --object-id "$principal" >/dev/null
for f in "$blob_a" "$blob"; do
  for _ in $(seq 100); do cat "$f" >/dev/null 2>"$WORK/err" || break; sleep 0.1; done
  grep -q "Permission denied" "$WORK/err" || die "$f still reads after the revocation: $(cat "$WORK/err")"
done
$VAULT set-policy --object-id "$principal" --key-permissions get wrapKey unwrapKey >/dev/null
for f in "$blob_a" "$blob"; do
  for _ in $(seq 100); do cat "$f" >/dev/null 2>&1 && break; sleep 0.1; done
  cat "$f" >/dev/null || die "$f does not read after the restore"
done

log "a file node B has open while node A deletes it reads whole through B; its objects go once B closes it"
head -c $((24 << 20)) /dev/urandom >"$WORK/held"
cp "$WORK/held" "$MNT_A/held"
for _ in $(seq 100); do [ -e "$MNT_B/held" ] && break; sleep 0.05; done
# This store's objects only: the pool is shared with the tests that run beside this one.
STORE_NS=$(sed -n 's|^ *objects: *rados://cmkfs/\([0-9a-z_]*\).*|\1|p' "$WORK/init.out")
objects_now() { if [ "$OBJECTS" = rados ]; then rados -c "$CEPH/ceph.conf" -p cmkfs -N "$STORE_NS" ls | wc -l; else echo 0; fi; }
before=$(objects_now)
python3 - "$MNT_B/held" "$WORK/held" "$MNT_A/held" <<'EOF' || die "node B's open file did not read whole after node A deleted it"
import os, sys, time
f = open(sys.argv[1], "rb", buffering=0)
first = f.read(1 << 20)
os.unlink(sys.argv[3])
time.sleep(1.5)  # node A's removal, had it not waited
with open("/proc/sys/vm/drop_caches", "w") as d:
    d.write("3")  # what node B cached goes: the rest is read from the objects
data = first + f.read()
sys.exit(0 if data == open(sys.argv[2], "rb").read() else 1)
EOF
if [ "$OBJECTS" = rados ]; then
  for _ in $(seq 100); do [ "$(objects_now)" -lt "$before" ] && break; sleep 0.1; done
  [ "$(objects_now)" -lt "$before" ] || die "the deleted file's objects stayed after node B closed it"
fi

log "a manifest deleted and garbage-collected through node A is gone through node B"
curl -fs -X DELETE "http://$REG_A/v2/apps/one/manifests/$(digest_of one)" >/dev/null
stop_registry
docker-registry garbage-collect "$WORK/registry.yml" >>"$WORK/gc.log" 2>&1
start_registry "$REG_A"
for _ in $(seq 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REG_B/v2/apps/one/manifests/$(digest_of one)")
  [ "$code" = 404 ] && break
  sleep 0.1
done
[ "$code" = 404 ] || die "node B still serves the deleted manifest (HTTP $code)"
skopeo copy --quiet --src-tls-verify=false "docker://$REG_B/apps/two:v1" "oci:$WORK/pulled2:two"

log "node A killed in the middle of a push: node B serves what was committed"
# A blob pushed at a bounded rate (the registry API's monolithic upload, as a client on a slow link
# would): a fast machine cannot finish it before the kill, which lands once A has part of it.
head -c $((96 << 20)) /dev/urandom >"$WORK/blob-three"
blob=sha256:$(sha256sum "$WORK/blob-three" | cut -d' ' -f1)
loc=$(curl -fsS -X POST -D - -o /dev/null "http://$REG_A/v2/apps/three/blobs/uploads/" |
  tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
[ -n "$loc" ] || die "the registry gave no upload location"
[[ $loc == http* ]] || loc="http://$REG_A$loc"
(curl -s -o /dev/null -w '%{http_code}' --limit-rate 8M -X PUT -H 'Content-Type: application/octet-stream' \
  --data-binary @"$WORK/blob-three" "$loc&digest=$blob" >"$WORK/push.code" 2>/dev/null || true) &
push=$!
uploaded=0
for _ in $(seq 300); do
  size=$(stat -c %s "$MNT_A"/registry/docker/registry/v2/repositories/apps/three/_uploads/*/data 2>/dev/null | head -1)
  [ "${size:-0}" -ge $((8 << 20)) ] && { uploaded=$size; break; }
  sleep 0.05
done
[ "$uploaded" -gt 0 ] || die "the upload never reached node A's mount"
pid=$(pgrep -f "^$CMKFS mount $STORE_A " | head -1)
[ -n "$pid" ] || die "no daemon for node A"
kill -9 "$pid"
log "killed node A with $((uploaded >> 20)) MiB of the 96 MiB blob uploaded"
stop_registry
wait "$push" || true
[ "$(cat "$WORK/push.code")" != 201 ] || die "the push finished before node A was killed"
umount -l "$MNT_A"
skopeo copy --quiet --src-tls-verify=false "docker://$REG_B/apps/two:v1" "oci:$WORK/pulled3:two"
code=$(curl -s -o /dev/null -w '%{http_code}' -I "http://$REG_B/v2/apps/three/blobs/$blob")
[ "$code" = 404 ] || die "node B serves a blob whose push was killed (HTTP $code)"

log "node A mounts again and repairs; fsck is clean"
kill "$B_PID"; wait "$B_PID" 2>/dev/null || true; B_PID=""
node_b umount "$MNT_B" >/dev/null
node_a mount "$STORE_A" "$MNT_A" --log-file "$WORK/a.log"
node_a umount "$MNT_A" >/dev/null
node_a fsck "$STORE_A" >"$WORK/fsck.out" 2>&1 || die "fsck: $(cat "$WORK/fsck.out")"
grep -q "^clean" "$WORK/fsck.out" || die "fsck: $(cat "$WORK/fsck.out")"
errors=$(grep " error " "$WORK/b.log" | grep -v "key access lost" || true)
[ -z "$errors" ] || die "node B logged errors: $errors"
log "passed"
