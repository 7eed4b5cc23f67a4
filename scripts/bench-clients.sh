#!/usr/bin/env bash
# Many registry clients at once: CLIENTS skopeo pushes of different images of IMAGE_MIB MiB each
# (scripts/make_oci_images.py: uncompressed layers of random bytes) into docker-registry, all at
# once, then CLIENTS concurrent pulls of them; on a plain directory of the same backing store,
# through cmkfs and through cmkfs mounted with --direct-reads, in turns, REPS times (each
# repetition starts with the next of the three). The images and the pulled copies live on a tmpfs of
# their own, so only the registry's storage differs. Aggregate seconds per phase, ratios inside
# each repetition. Results: build-bench/results/clients-<backing>.{csv,md}.
#
#   scripts/bench.sh --clients [--count 32] [--image-mib 100] [--reps 3] [--backing tmpfs|DIR]
#
# Debian 12, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/bench-lib.sh

CLIENTS=32 IMAGE_MIB=100 REPS=3 BACKING=tmpfs
while [ $# -gt 0 ]; do
  case $1 in
    --clients) ;;
    --count) CLIENTS=$2; shift ;;
    --image-mib) IMAGE_MIB=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --backing) BACKING=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

need_root
install_packages "${BUILD_PACKAGES[@]}" docker-registry skopeo curl python3 bc
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j "$(nproc)" --target cmkfs | grep -Ev '^\[ *[0-9]+%\]' || true
CMKFS=$PWD/build-bench/bin/cmkfs
OUT=$PWD/build-bench/results
WORK=/tmp/cmkfs-bench-clients
mkdir -p "$OUT"
trap bench_cleanup EXIT
prepare_backing $((IMAGE_MIB * CLIENTS * 2 + 2048))m
KIND=$([ "$BACKING" = tmpfs ] && echo tmpfs || echo disk)
mkdir -p "$WORK/src"
mount -t tmpfs -o size=$((IMAGE_MIB * CLIENTS * 2 + 2048))m tmpfs "$WORK/src"
python3 scripts/make_oci_images.py "$WORK/src/images" "$CLIENTS" "$IMAGE_MIB"

CSV=$OUT/clients-$KIND.csv
echo "rep,target,push_s,pull_s" >"$CSV"
for rep in $(seq "$REPS"); do
  case $((rep % 3)) in
    1) order="raw cmkfs cmkfs-direct" ;;
    2) order="cmkfs cmkfs-direct raw" ;;
    0) order="cmkfs-direct raw cmkfs" ;;
  esac
  for t in $order; do
    d=$(mount_target "$t")
    start_registry "$d"
    push=$(run_phase push "$REG_PORT")
    rm -rf "$WORK/src/pulled"
    drop_caches
    pull=$(run_phase pull "$REG_PORT")
    # Every pulled layer is the one pushed (skopeo verified its digest; this checks the count).
    n=$(find "$WORK/src/pulled" -path '*/blobs/sha256/*' -type f | wc -l)
    [ "$n" -ge $((CLIENTS * 6)) ] || { echo "pulled only $n blobs" >&2; exit 1; }
    rm -rf "$WORK/src/pulled"
    stop_registry
    umount_target "$t"
    echo "$rep,$t,$push,$pull" | tee -a "$CSV"
  done
done

python3 scripts/bench_phases.py "$CSV" "$OUT/clients-$KIND.md" \
  "$CLIENTS concurrent skopeo clients, images of $IMAGE_MIB MiB, docker-registry on $BACKING_DESC:" raw "plain directory" 1.1
