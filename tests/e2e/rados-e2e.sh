#!/usr/bin/env bash
# End-to-end: a store whose objects are in Ceph RADOS, on a real single-host cluster
# (scripts/ceph-cluster.sh: a monitor, a manager, one OSD in memory). Files written through the
# mount read back equal, after a remount too (one larger than RADOS's largest object, one
# sparse, cut and extended); the pool holds only sealed chunks under random
# names, in the store's own namespace; docker-registry serves an image from it (pushed and pulled
# back with skopeo, digests verified) and the registry view shows it; an object changed in RADOS reads EIO and fsck names it; a
# namespace already in use is refused at init; stripes planted in the pool are ignored or make
# EIO, never a hang; a host without the binding cannot reach the
# cluster, and `cmkfs trust --ceph-conf` gives it the way; with the OSD gone a read fails with
# EIO instead of hanging, and the mount still unmounts.
#
# usage: tests/e2e/rados-e2e.sh [path/to/cmkfs]     (default: build/bin/cmkfs)
# Needs root, /dev/fuse, ceph-mon, ceph-osd, ceph-mgr, docker-registry, skopeo, umoci, curl.
set -euo pipefail

CMKFS=$(realpath "${1:-build/bin/cmkfs}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/cmkfs-e2e-rados.XXXXXX) TAG=rados
. "$(dirname "$0")/lib.sh"
CEPH=$WORK/ceph MNT=$WORK/mnt STORE=$WORK/store VIEW=$WORK/view
CONF=$CEPH/ceph.conf
export CMKFS_CONFIG_DIR=$WORK/host
rados_() { rados -c "$CONF" -p cmkfs "$@"; }

cleanup() {
  local rc=$?
  stop_registry
  unmount_all "$VIEW" "$MNT"
  "$ROOT/scripts/ceph-cluster.sh" stop "$CEPH" >/dev/null 2>&1 || true
  if [ $rc -eq 0 ]; then rm -rf "$WORK"; else
    log "kept $WORK for inspection"; tail -n 20 "$WORK/cmkfs.log" "$WORK/registry.log" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'printf "[rados] FAIL: line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

log "starting a single-host Ceph cluster"
"$ROOT/scripts/ceph-cluster.sh" start "$CEPH" cmkfs >/dev/null

log "init with objects in rados://cmkfs"
"$CMKFS" init "$STORE" --objects rados://cmkfs --ceph-conf "$CONF" >"$WORK/init.out"
grep -q "objects:    rados://cmkfs/" "$WORK/init.out" || die "init does not say where the objects are: $(cat "$WORK/init.out")"
[ ! -e "$STORE/objects" ] || die "a RADOS store has a local objects directory"
id=$("$CMKFS" encryption show "$STORE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["storeId"])')
"$CMKFS" encryption show "$STORE" | python3 -c '
import json, sys
o = json.load(sys.stdin)["engines"]["objects"]
assert o["kind"] == "rados" and o["pool"] == "cmkfs" and o["namespace"] == sys.argv[1] and o["cephConf"] == sys.argv[2], o
' "$id" "$CONF"

mkdir -p "$MNT"
"$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log"
log "writing files"
secret="cmkfs-rados-plaintext-$RANDOM$RANDOM"
for i in $(seq 20); do echo "$secret $i" >"$MNT/small-$i"; done
head -c $((150 << 20)) /dev/urandom >"$WORK/big"  # RADOS refuses objects over 128 MiB: striped
cp "$WORK/big" "$MNT/big"
mkdir -p "$MNT/dir/sub" && echo "$secret moved" >"$MNT/dir/sub/a" && mv "$MNT/dir/sub/a" "$MNT/dir/b"
ln "$MNT/big" "$MNT/dir/big-link"
cmp "$WORK/big" "$MNT/dir/big-link"
rm "$MNT/small-20"
[ "$(cat "$MNT/dir/b")" = "$secret moved" ] || die "a renamed file reads wrong before the remount"
python3 - "$MNT/sparse" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "wb") as f:
    f.write(b"A" * 100); f.seek(21 << 20); f.write(b"B" * 10); f.seek(9 << 20); f.write(b"C" * 5)
os.truncate(p, 30 << 20)
os.truncate(p, (21 << 20) + 5)
PY
sparse_ok() {
  python3 - "$1" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
want = bytearray((21 << 20) + 5)
want[:100] = b"A" * 100; want[9 << 20:(9 << 20) + 5] = b"C" * 5; want[21 << 20:] = b"B" * 5
sys.exit(0 if d == want else "[rados] FAIL: the sparse file reads wrong")
PY
}
sparse_ok "$MNT/sparse"

log "docker-registry on the mount: push and pull back an image"
umoci init --layout "$WORK/oci" >/dev/null
umoci new --image "$WORK/oci:img" >/dev/null
b=$WORK/bundle
umoci unpack --image "$WORK/oci:img" "$b" >/dev/null
head -c $((3 << 20)) /dev/urandom >"$b/rootfs/payload" && echo "$secret layer" >"$b/rootfs/note"
umoci repack --image "$WORK/oci:img" "$b" >/dev/null
PORT=$(free_port) REG=127.0.0.1:$(free_port)
write_registry_config "$MNT/registry" "$REG"
start_registry "$REG"
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:img" "docker://$REG/apps/img:v1"
want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/oci/index.json")
got="sha256:$(skopeo inspect --raw --tls-verify=false "docker://$REG/apps/img:v1" | sha256sum | cut -d' ' -f1)"
[ "$want" = "$got" ] || die "manifest digest $got, pushed $want"
skopeo copy --quiet --src-tls-verify=false "docker://$REG/apps/img:v1" "oci:$WORK/pulled:img"  # verifies every blob
log "the registry view of the same store"
mkdir -p "$VIEW"
"$CMKFS" view "$MNT" "$VIEW" --registry-root /registry >/dev/null
skopeo inspect --raw --tls-verify=false "docker://$REG/apps/img:v1" | cmp -s - "$VIEW/apps/img:v1/manifest.json" ||
  die "the view's manifest differs from the registry's"
[ "$(cat "$VIEW/apps/img:v1/rootfs/note")" = "$secret layer" ] || die "the view's rootfs reads wrong"
cmp "$b/rootfs/payload" "$VIEW/apps/img:v1/rootfs/payload"
"$CMKFS" umount "$VIEW" >/dev/null
stop_registry

log "remount: everything reads back"
"$CMKFS" umount "$MNT" >/dev/null
"$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log"
for i in $(seq 19); do [ "$(cat "$MNT/small-$i")" = "$secret $i" ] || die "small-$i reads wrong"; done
[ ! -e "$MNT/small-20" ] || die "a removed file came back"
cmp "$WORK/big" "$MNT/big"
[ "$(cat "$MNT/dir/b")" = "$secret moved" ] || die "a renamed file reads wrong: $(od -c "$MNT/dir/b" | head -n 3)"
[ "$(stat -c %h "$MNT/big")" = 2 ] || die "the hard link count is wrong"
sparse_ok "$MNT/sparse"
"$CMKFS" umount "$MNT" >/dev/null

log "the pool holds only sealed chunks, under random names, in the store's namespace"
rados_ ls --all >"$WORK/objects.txt"
n=$(wc -l <"$WORK/objects.txt")
[ "$n" -ge 60 ] || die "expected at least 60 objects, found $n"
grep -qv "^$id	" "$WORK/objects.txt" && die "objects outside the store's namespace: $(grep -v "^$id	" "$WORK/objects.txt")"
grep -Eqv "	[0-9a-f]{32}(\.[1-9][0-9]*)?$" "$WORK/objects.txt" && die "an object name is not a random id (and stripe)"
mkdir "$WORK/dump"
cut -f2 "$WORK/objects.txt" | while read -r o; do rados_ -N "$id" get "$o" "$WORK/dump/$o"; done
# Stripes: 4 MiB at most, and every one but a file's last exactly 4 MiB (so a short one ends it).
python3 - "$WORK/dump" <<'PY'
import collections, os, sys
files = collections.defaultdict(dict)
for name in os.listdir(sys.argv[1]):
    base, _, k = name.partition(".")
    files[base][int(k or 0)] = os.path.getsize(os.path.join(sys.argv[1], name))
for base, stripes in files.items():
    n = len(stripes)
    if sorted(stripes) != list(range(n)):
        sys.exit(f"[rados] FAIL: {base} has stripes {sorted(stripes)}")
    if any(stripes[k] != 4 << 20 for k in range(n - 1)) or stripes[n - 1] > 4 << 20:
        sys.exit(f"[rados] FAIL: {base} has stripes of {[stripes[k] for k in range(n)]} bytes")
PY
python3 - "$WORK/dump" "$secret" "$WORK/big" "$want" <<'PY'
import os, sys
dump, secret, big, digest = sys.argv[1:]
needles = [secret.encode(), open(big, "rb").read()[1000:1064], digest.split(":")[1].encode(), b"apps/img", b"_manifests"]
for name in os.listdir(dump):
    data = open(os.path.join(dump, name), "rb").read()
    for n in needles:
        if n in data:
            sys.exit(f"[rados] FAIL: object {name} holds plaintext {n[:20]!r}")
PY
"$CMKFS" fsck "$STORE" >"$WORK/fsck.out" || die "fsck of a clean store failed: $(cat "$WORK/fsck.out")"

log "an object changed in RADOS reads EIO, and fsck names it"
victim=$(grep -o "[0-9a-f]\{32\}\.30$" "$WORK/objects.txt" | head -n 1)  # a stripe only the 150 MiB file has
[ -n "$victim" ] || die "no 31st stripe of the 150 MiB file"
python3 -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,"rb").read()); d[5000] ^= 1; open(p,"wb").write(d)' "$WORK/dump/$victim"
rados_ -N "$id" put "$victim" "$WORK/dump/$victim"
"$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log"
if out=$(cat "$MNT/big" 2>&1 >/dev/null); then die "a tampered object read back without error"; fi
grep -q "Input/output error" <<<"$out" || die "tampered read failed with: $out"
"$CMKFS" umount "$MNT" >/dev/null
if "$CMKFS" fsck "$STORE" >"$WORK/fsck.out" 2>&1; then die "fsck passed a tampered object"; fi
grep -q "/big" "$WORK/fsck.out" || die "fsck does not name the tampered file: $(cat "$WORK/fsck.out")"

log "stripes planted past a gap: ignored past a short stripe; past full ones EIO, not a hang; fsck names them"
size=$(( ${#secret} + 7 + 28 ))  # "$secret moved\n" in one sealed chunk: only dir/b's object
small=$(find "$WORK/dump" -type f -size "${size}c" -printf '%f\n')
[ "$(wc -w <<<"$small")" = 1 ] || die "cannot tell dir/b's object: '$small'"
sparse=$(grep -o "[0-9a-f]\{32\}\.5$" "$WORK/objects.txt" | cut -d. -f1 | while read -r b; do
  grep -q "^$b\.6$" <(cut -f2 "$WORK/objects.txt") || echo "$b"; done)  # 6 stripes: only the sparse file
[ "$(wc -w <<<"$sparse")" = 1 ] || die "cannot tell the sparse file's object: '$sparse'"
for j in $(seq 3 20); do
  rados_ -N "$id" put "$small.$(((1 << j) - 1))" /dev/null
  rados_ -N "$id" put "$sparse.$(((1 << j) - 1))" /dev/null
done
"$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log"
[ "$(cat "$MNT/dir/b")" = "$secret moved" ] || die "stripes planted past a file's short last stripe changed it"
if timeout 60 cat "$MNT/sparse" >/dev/null 2>"$WORK/planted.err"; then die "a file with planted stripes read back"; fi
grep -q "Input/output error" "$WORK/planted.err" || die "planted stripes: $(cat "$WORK/planted.err")"
"$CMKFS" umount "$MNT" >/dev/null
if "$CMKFS" fsck "$STORE" >"$WORK/fsck.out" 2>&1; then die "fsck passed planted stripes"; fi
grep -q "$small.1023" "$WORK/fsck.out" || die "fsck does not name the planted stripes: $(cat "$WORK/fsck.out")"

log "a namespace that holds objects is refused at init"
"$CMKFS" init "$WORK/second" --objects "rados://cmkfs/$id" --ceph-conf "$CONF" >"$WORK/second.out" 2>&1 &&
  die "init into a used namespace succeeded"
grep -q "already holds objects" "$WORK/second.out" || die "init into a used namespace: $(cat "$WORK/second.out")"
[ ! -e "$WORK/second" ] || die "a refused init left $WORK/second"

log "another host: no binding, no cluster; trust --ceph-conf binds it"
fp=$("$CMKFS" encryption show "$STORE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hostBinding"]["dataKeyFingerprint"])')
key=$CMKFS_CONFIG_DIR/keys/$id.key
if CMKFS_CONFIG_DIR=$WORK/host2 "$CMKFS" mount "$STORE" "$MNT" >"$WORK/host2.out" 2>&1; then die "an unbound host mounted"; fi
grep -q "not bound to this host" "$WORK/host2.out" || die "unbound mount: $(cat "$WORK/host2.out")"
CMKFS_CONFIG_DIR=$WORK/host2 "$CMKFS" trust "$STORE" --local-key-file "$key" --fingerprint "$fp" --ceph-conf "$CONF" >/dev/null
CMKFS_CONFIG_DIR=$WORK/host2 "$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log"
[ "$(cat "$MNT/small-1")" = "$secret 1" ] || die "the newly bound host reads wrong"

log "the OSD gone: a read fails with EIO, not a hang, and the mount unmounts"
osd=$(cat "$CEPH"/run/osd.0.pid)
kill -9 "$osd"
while kill -0 "$osd" 2>/dev/null; do sleep 0.1; done
start=$(date +%s)
if timeout 120 cat "$MNT/small-2" >/dev/null 2>"$WORK/down.err"; then die "a read with the OSD gone succeeded"; fi
took=$(($(date +%s) - start))
grep -q "Input/output error" "$WORK/down.err" || die "read with the OSD gone: $(cat "$WORK/down.err")"
[ "$took" -lt 60 ] || die "the read took $took s to fail"
CMKFS_CONFIG_DIR=$WORK/host2 "$CMKFS" umount "$MNT" >/dev/null
log "ok (the failed read took $took s)"
