#!/usr/bin/env bash
# Benchmarks the registry view (cmkfs view) on a tmpfs-backed store: reading a 300 MB gzip layer
# through the view against reading the same blob through the mount (interleaved, REPS times),
# building the layer's index (the first listing of rootfs/; also for a compressible layer, the
# system's /usr/bin), and reading one 1 MiB file of rootfs/ once the index exists. Prints a table; results in build-bench/results/view.txt.
#
#   scripts/bench-view.sh [--reps 3] [--layer-mib 300]
#
# Debian 12, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

REPS=3 LAYER_MIB=300
while [ $# -gt 0 ]; do
  case $1 in
    --reps) REPS=$2; shift ;;
    --layer-mib) LAYER_MIB=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

need_root
install_packages "${BUILD_PACKAGES[@]}" python3
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j "$(nproc)" --target cmkfs | grep -Ev '^\[ *[0-9]+%\]' || true
CMKFS=$PWD/build-bench/bin/cmkfs
OUT=$PWD/build-bench/results
WORK=$(mktemp -d /tmp/cmkfs-bench-view.XXXXXX)
MNT=$WORK/mnt VIEW=$WORK/view
mkdir -p "$OUT" "$WORK/backing" "$MNT" "$VIEW"
export CMKFS_CONFIG_DIR=$WORK/host
cleanup() {
  for m in "$VIEW" "$MNT"; do grep -q " $m " /proc/mounts && { "$CMKFS" umount "$m" >/dev/null 2>&1 || umount -l "$m"; }; done
  grep -q " $WORK/backing " /proc/mounts && umount "$WORK/backing"
  rm -rf "$WORK"
}
trap cleanup EXIT
mount -t tmpfs -o size=$((LAYER_MIB * 3 + 1024))m tmpfs "$WORK/backing"
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# A layer of LAYER_MIB files of 1 MiB (random, so gzip keeps its size), and an image around it.
mkdir -p "$WORK/src/data"
for i in $(seq "$LAYER_MIB"); do head -c 1048576 /dev/urandom >"$WORK/src/data/f$i"; done
tar -C "$WORK/src" -cf - data | gzip -1 >"$WORK/layer.tar.gz"
rm -rf "$WORK/src"
"$CMKFS" init "$WORK/backing/store" --local-key-file "$WORK/key" >/dev/null
"$CMKFS" mount "$WORK/backing/store" "$MNT" --log-file "$WORK/cmkfs.log"
# A second layer as images hold them, compressible: /usr/bin, gzip -6.
tar -C / -cf - usr/bin 2>/dev/null | gzip -6 >"$WORK/usr.tar.gz"
put_image() {  # put_image LAYER REPO -> the layer blob's path in the mount
python3 - "$MNT" "$1" "$2" <<'PY'
import hashlib, json, os, shutil, sys
mnt, layer, repo = sys.argv[1:4]
reg = os.path.join(mnt, "docker/registry/v2")
def put(path, digest):
    d = os.path.join(reg, "blobs/sha256", digest[:2], digest)
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(path, os.path.join(d, "data"))
    return os.path.join(d, "data")
def put_bytes(b):
    h = hashlib.sha256(b).hexdigest()
    open("/tmp/.cmkfs-bench-blob", "wb").write(b)
    put("/tmp/.cmkfs-bench-blob", h)
    os.remove("/tmp/.cmkfs-bench-blob")
    return h
h = hashlib.sha256()
with open(layer, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
lh = h.hexdigest()
blob = put(layer, lh)
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + put_bytes(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + lh,
                "size": os.path.getsize(layer)}]}).encode()
m = put_bytes(manifest)
tag = os.path.join(reg, "repositories", repo, "_manifests/tags/v1/current")
os.makedirs(tag, exist_ok=True)
open(os.path.join(tag, "link"), "w").write("sha256:" + m)
print(blob)
PY
}
BLOB=$(put_image "$WORK/layer.tar.gz" bench/big)
USR_BLOB=$(put_image "$WORK/usr.tar.gz" bench/usr)
SIZE=$(stat -c %s "$BLOB") USR_SIZE=$(stat -c %s "$USR_BLOB") USR_PLAIN=$(gzip -l "$WORK/usr.tar.gz" | awk 'NR==2 {print $2}')
"$CMKFS" view "$MNT" "$VIEW" >/dev/null
IMG=$VIEW/bench/big:v1
LAYER_FILE=$(ls "$IMG/layers/"*)

read_mbps() {  # read_mbps FILE -> MB/s of one cold sequential read
  drop_caches
  local t0=$(date +%s%N)
  dd if="$1" of=/dev/null bs=1M status=none
  python3 -c "print(f'{$SIZE / 1e6 / max(1e-9, ($(date +%s%N) - $t0) / 1e9):.0f}')"
}
first=$(read_mbps "$LAYER_FILE")  # includes checking the blob against its digest, once
rows=()
for rep in $(seq "$REPS"); do
  m=$(read_mbps "$BLOB")
  v=$(read_mbps "$LAYER_FILE")
  rows+=("$rep $m $v")
done

drop_caches
t0=$(date +%s%N)
ls "$IMG/rootfs/data" >/dev/null
index_ms=$(ms_since "$t0")
index_rate=$(python3 -c "print(f'{$SIZE / 1e6 / max(1e-9, $index_ms / 1e3):.0f}')")
drop_caches
t0=$(date +%s%N)
ls "$VIEW/bench/usr:v1/rootfs/usr/bin" >/dev/null
usr_ms=$(ms_since "$t0")
usr_rate=$(python3 -c "print(f'{$USR_SIZE / 1e6 / max(1e-9, $usr_ms / 1e3):.0f}')")
file_ms=()
for i in 7 150 $((LAYER_MIB - 3)); do
  drop_caches
  t0=$(date +%s%N)
  cat "$IMG/rootfs/data/f$i" >/dev/null
  file_ms+=("$(ms_since "$t0")")
done
pid=$(pgrep -f "cmkfs mount $WORK/backing/store" | head -n1)
rss=$(awk '/VmRSS:/ {print $2}' "/proc/$pid/status")

{
  echo "Registry view, $(nproc) cores, tmpfs backing, a ${LAYER_MIB} MiB gzip layer ($SIZE bytes)"
  echo "| rep | layer through the mount (MB/s) | through the view (MB/s) | view / mount |"
  echo "|---|---|---|---|"
  for r in "${rows[@]}"; do
    set -- $r
    echo "| $1 | $2 | $3 | $(python3 -c "print(f'{$3 / $2:.2f}')") |"
  done
  echo "first read through the view, with its digest check: $first MB/s"
  echo "layer index built (first ls of rootfs/): $index_ms ms, $index_rate MB/s of compressed input"
  echo "the same for /usr/bin, gzip -6 ($USR_SIZE bytes, $USR_PLAIN unpacked): $usr_ms ms, $usr_rate MB/s of compressed input"
  echo "one 1 MiB file of rootfs/, cold, index built: ${file_ms[*]} ms"
  echo "daemon RSS with the index held: $((rss / 1024)) MiB"
} | tee "$OUT/view.txt"
