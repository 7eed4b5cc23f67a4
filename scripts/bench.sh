#!/usr/bin/env bash
# Benchmarks cmkfs against the raw backing directory, unencrypted FUSE passthroughs (mergerfs,
# bindfs) and the encrypted FUSE filesystems in Debian (gocryptfs, securefs, cryfs), side by side:
# targets are interleaved within each repetition, and ratios are computed per repetition.
#
#   scripts/bench.sh [--reps 3] [--targets raw,mergerfs,bindfs,gocryptfs,securefs,cryfs,cmkfs]
#                    [--size 1G] [--files 3000] [--backing tmpfs|DIR] [--rand-seconds 8]
#                    [--no-registry] [--no-readme] [--no-view]
#   scripts/bench.sh --scale [...]   the scale curve to a million files: scripts/bench-scale.sh
#   scripts/bench.sh --clients [...] 32 registry clients at once: scripts/bench-clients.sh
#   scripts/bench.sh --cluster [...] a registry on Ceph, cmkfs on RADOS vs the S3 driver: scripts/bench-cluster.sh
#
# Workloads (fio, psync): sequential 1 MiB writes of SIZE with a final fsync; sequential 1 MiB
# reads after dropping caches; random 4 KiB reads for 8 s, by one reader and (its p99 latency)
# by eight; then FILES files of 4 KiB in 50
# directories created and synced, stat'ed after dropping caches, and removed. Also the cmkfs
# daemon's RSS (idle, and peak over the run) and a registry round trip (skopeo push and pull
# through docker-registry) on cmkfs vs. on a plain directory; then scripts/bench-view.sh.
# Results: build-bench/results/ (CSV, table, PNG) and, unless --no-readme, README.md's
# "Performance" section. Debian 12, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = --scale ] && exec scripts/bench-scale.sh "$@"
[ "${1:-}" = --clients ] && exec scripts/bench-clients.sh "$@"
[ "${1:-}" = --cluster ] && exec scripts/bench-cluster.sh "$@"
. scripts/lib.sh
. scripts/bench-lib.sh

REPS=3 TARGETS=raw,mergerfs,bindfs,gocryptfs,securefs,cryfs,cmkfs SIZE=1G FILES=3000 BACKING=tmpfs
REGISTRY=1 README=1 RAND_SECONDS=8 VIEW=1
while [ $# -gt 0 ]; do
  case $1 in
    --reps) REPS=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --files) FILES=$2; shift ;;
    --backing) BACKING=$2; shift ;;
    --rand-seconds) RAND_SECONDS=$2; shift ;;
    --no-registry) REGISTRY=0 ;;
    --no-readme) README=0 ;;
    --no-view) VIEW=0 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

need_root
install_packages "${BUILD_PACKAGES[@]}" fio gocryptfs securefs cryfs bindfs mergerfs gnuplot-nox python3 bc openssl \
  docker-registry skopeo umoci curl
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCMKFS_TESTS=ON -DCMKFS_BENCHMARKS=ON >/dev/null
cmake --build build-bench -j "$(nproc)" --target cmkfs smallfiles chunk_codec_bench | grep -Ev '^\[ *[0-9]+%\]' || true
CMKFS=$PWD/build-bench/bin/cmkfs
SMALL=$PWD/build-bench/bin/smallfiles
OUT=$PWD/build-bench/results
WORK=/tmp/cmkfs-bench
mkdir -p "$OUT"

trap bench_cleanup EXIT
prepare_backing 12g

fio_run() {  # fio_run DIR RW BS [extra...] -> JSON on stdout
  local dir=$1 rw=$2 bs=$3
  shift 3
  fio --name=bench --directory="$dir" --filename=fio.dat --rw="$rw" --bs="$bs" --size="$SIZE" \
    --ioengine=psync --numjobs=1 --output-format=json "$@"
}
json_get() { python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print($1)"; }

CSV=$OUT/results.csv
echo "rep,target,write_MBps,read_MBps,randread_iops,create_s,stat_s,rm_s,rss_idle_kB,rss_peak_kB,randread8_p99_us" >"$CSV"
IFS=, read -ra TLIST <<<"$TARGETS"
for rep in $(seq "$REPS"); do
  # Rotate the order each repetition so no target always runs first or last.
  n=${#TLIST[@]}
  for i in $(seq 0 $((n - 1))); do
    t=${TLIST[$(( (i + rep - 1) % n ))]}
    d=$(mount_target "$t")
    rss_idle=""
    [ "$t" = cmkfs ] && rss_idle=$(vm "$(cmkfs_pid)" VmRSS)
    w=$(fio_run "$d" write 1M --end_fsync=1 | json_get "j['write']['bw_bytes']/1e6")
    drop_caches
    r=$(fio_run "$d" read 1M | json_get "j['read']['bw_bytes']/1e6")
    drop_caches
    rr=$(fio_run "$d" randread 4k --runtime="$RAND_SECONDS" --time_based | json_get "j['read']['iops']")
    drop_caches
    p99=$(fio_run "$d" randread 4k --numjobs=8 --group_reporting --runtime="$RAND_SECONDS" --time_based |
      json_get "j['read']['clat_ns']['percentile']['99.000000'] / 1000")
    rm -f "$d/fio.dat"
    c=$("$SMALL" create "$d" "$FILES" 50 4096)
    drop_caches
    s=$("$SMALL" stat "$d" "$FILES" 50 4096)
    x=$("$SMALL" remove "$d" "$FILES" 50 4096)
    rss_peak=""
    [ "$t" = cmkfs ] && rss_peak=$(vm "$(cmkfs_pid)" VmHWM)
    umount_target "$t"
    printf "%s,%s,%.1f,%.1f,%.0f,%s,%s,%s,%s,%s,%.0f\n" "$rep" "$t" "$w" "$r" "$rr" "$c" "$s" "$x" "$rss_idle" "$rss_peak" "$p99" |
      tee -a "$CSV"
  done
done

# --- the registry round trip: skopeo push + pull through docker-registry, cmkfs vs plain dir ---
REG_CSV=$OUT/registry.csv
echo "rep,target,seconds" >"$REG_CSV"
if [ $REGISTRY = 1 ]; then
  OCI=$WORK/oci
  umoci init --layout "$OCI"
  umoci new --image "$OCI:base"
  for img in 1 2 3; do
    b=$WORK/bundle
    umoci unpack --image "$OCI:base" "$b" >/dev/null
    for layer in 1 2 3; do
      mkdir -p "$b/rootfs/l$layer"
      head -c 20000000 /dev/urandom >"$b/rootfs/l$layer/blob-$img"
      umoci repack --image "$OCI:img$img" "$b"
    done
    rm -rf "$b"
  done
  for rep in $(seq "$REPS"); do
    for t in raw cmkfs; do
      d=$(mount_target "$t")
      start_registry "$d"
      start=$(date +%s.%N)
      for img in 1 2 3; do
        skopeo copy --quiet --dest-tls-verify=false "oci:$OCI:img$img" "docker://127.0.0.1:$REG_PORT/bench/img$img:v1"
      done
      for img in 1 2 3; do
        rm -rf "$WORK/pulled"
        skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$REG_PORT/bench/img$img:v1" "oci:$WORK/pulled:img$img"
      done
      end=$(date +%s.%N)
      stop_registry
      umount_target "$t"
      echo "$rep,$t,$(echo "$end - $start" | bc)" | tee -a "$REG_CSV"
    done
  done
fi

# --- the codec alone, and openssl speed on the same machine ---
"$PWD/build-bench/bin/chunk_codec_bench" --benchmark_filter='Seal|Open|Bare' --benchmark_min_time=0.2 \
  --benchmark_format=csv 2>/dev/null >"$OUT/codec.csv" || true
openssl speed -evp aes-256-gcm -seconds 1 2>/dev/null | tail -n 1 >"$OUT/openssl-speed.txt" || true

MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r); backing: $BACKING_DESC; $REPS repetitions, file size $SIZE, $FILES small files"
python3 scripts/bench_report.py "$OUT" "$MACHINE" $([ $README = 1 ] && echo README.md)
# The registry view's numbers (build-bench/results/view.txt).
[ $VIEW = 0 ] || scripts/bench-view.sh --reps "$REPS"
