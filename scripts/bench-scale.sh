#!/usr/bin/env bash
# The scale curve: cmkfs and gocryptfs filled with a registry-shaped tree (tests/bench/
# registry_tree.cc: blobs of 100 B to 4 MiB, link files of 71 bytes, each in a directory of its
# own) to each size of LEVELS in turn, one target after the other (a million files of each do not
# fit in this machine's memory together). At each size:
# unmount and mount times; a `find` over the whole store and an `ls -f` of its largest directory
# (a ninth of the links) after dropping caches, and the daemon's RSS after the find; then the
# per-file cost of creating SAMPLE more files (synced), of stat'ing SAMPLE files spread over the
# whole store after dropping caches, and of removing the new ones; and `cmkfs fsck`'s rate.
# The same three costs are then measured again side by side with a store of the smallest size
# mounted beside it (same target), alternating, --side-reps rounds: the growth targets compare
# those medians, since measurements twenty minutes apart differ by more than the growth.
# Results: build-bench/results/scale.{csv,md,png}, scale-side.csv, and unless --no-readme,
# README.md's "Scale".
#
#   scripts/bench.sh --scale [--levels 3000,100000,1000000] [--targets cmkfs,gocryptfs]
#                            [--sample 3000] [--side-reps 5] [--backing tmpfs|DIR] [--no-readme]
#
# Debian 12, as root. A million files take about 20 minutes per target on tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/bench-lib.sh

LEVELS=3000,100000,1000000 TARGETS=cmkfs,gocryptfs SAMPLE=3000 SIDE_REPS=5 BACKING=tmpfs README=1
while [ $# -gt 0 ]; do
  case $1 in
    --scale) ;;
    --levels) LEVELS=$2; shift ;;
    --targets) TARGETS=$2; shift ;;
    --sample) SAMPLE=$2; shift ;;
    --side-reps) SIDE_REPS=$2; shift ;;
    --backing) BACKING=$2; shift ;;
    --no-readme) README=0 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

need_root
install_packages "${BUILD_PACKAGES[@]}" gocryptfs gnuplot-nox python3 bc
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCMKFS_TESTS=ON -DCMKFS_BENCHMARKS=ON >/dev/null
cmake --build build-bench -j "$(nproc)" --target cmkfs registry_tree | grep -Ev '^\[ *[0-9]+%\]' || true
CMKFS=$PWD/build-bench/bin/cmkfs
TREE=$PWD/build-bench/bin/registry_tree
OUT=$PWD/build-bench/results
WORK=/tmp/cmkfs-bench-scale
mkdir -p "$OUT"
trap bench_cleanup EXIT
prepare_backing 20g

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
per_file_us() { echo "scale=2; $1 * 1000000 / $2" | bc; }

# The seconds a command takes (unmounting, and mounting again with the daemon's start).
timed() {
  local s
  s=$(now)
  "$@"
  since "$s"
}
rss_kB() { [ "$1" = cmkfs ] && vm "$(cmkfs_pid)" "$2" || echo ""; }

# Stat'ing SAMPLE files spread over a store of N: every step-th of them.
stat_step() { echo $(( $1 > SAMPLE ? $1 / SAMPLE : 1 )); }
stat_count() { local step; step=$(stat_step "$1"); echo $(( ($1 + step - 1) / step )); }

SIDE=$OUT/scale-side.csv
echo "files,target,round,stat_ref_us,stat_us,create_ref_us,create_us,unlink_ref_us,unlink_us" >"$SIDE"
# side_by_side T DIR LEVEL REF_DIR REF_LEVEL: SIDE_REPS rounds of the three costs, each on the
# reference store then on DIR.
side_by_side() {
  local t=$1 d=$2 level=$3 ref=$4 lo=$5 rep sr sb cr cb rr rb
  for rep in $(seq "$SIDE_REPS"); do
    drop_caches
    sr=$("$TREE" stat "$ref" 0 "$lo" "$(stat_step "$lo")")
    drop_caches
    sb=$("$TREE" stat "$d" 0 "$level" "$(stat_step "$level")")
    cr=$("$TREE" create "$ref" "$lo" $((lo + SAMPLE)))
    cb=$("$TREE" create "$d" "$level" $((level + SAMPLE)))
    rr=$("$TREE" remove "$ref" "$lo" $((lo + SAMPLE)))
    rb=$("$TREE" remove "$d" "$level" $((level + SAMPLE)))
    echo "$level,$t,$rep,$(per_file_us "$sr" "$(stat_count "$lo")"),$(per_file_us "$sb" "$(stat_count "$level")"),$(per_file_us "$cr" "$SAMPLE"),$(per_file_us "$cb" "$SAMPLE"),$(per_file_us "$rr" "$SAMPLE"),$(per_file_us "$rb" "$SAMPLE")" >>"$SIDE"
  done
}

CSV=$OUT/scale.csv
echo "files,target,fill_us,create_us,stat_us,unlink_us,ls_s,ls_entries,find_s,umount_s,umount_all_s,mount_s,rss_kB,rss_anon_kB,rss_file_kB,fsck_s,fsck_MBps" >"$CSV"
IFS=, read -ra TLIST <<<"$TARGETS"
IFS=, read -ra LLIST <<<"$LEVELS"
for t in "${TLIST[@]}"; do
  mount_target "$t" >/dev/null
  ref=$(mount_target "$t-ref")
  "$TREE" create "$ref" 0 "${LLIST[0]}" >/dev/null
  prev=0
  for level in "${LLIST[@]}"; do
    d=$WORK/mnt/$t
    fill=$("$TREE" create "$d" "$prev" "$level")
    s=$(now)
    detach_target "$t"
    um=$(since "$s")
    # `cmkfs umount` returns once the daemon has flushed and exited; the kernel then frees what it
    # cached for the mount in the process that unmounted it (same command line), timed to its end.
    while pgrep -f "umount $d\$" >/dev/null; do sleep 0.05; done
    um_all=$(since "$s")
    mo=$(timed attach_target "$t")
    drop_caches
    s=$(now)
    find "$d" >/dev/null
    find_s=$(since "$s")
    rss=$(rss_kB "$t" VmRSS) anon=$(rss_kB "$t" RssAnon) file=$(rss_kB "$t" RssFile)
    drop_caches
    s=$(now)
    entries=$(ls -f "$d/repositories/repo0/_layers/sha256" | wc -l)
    ls_s=$(since "$s")
    c=$("$TREE" create "$d" "$level" $((level + SAMPLE)))
    drop_caches
    st=$("$TREE" stat "$d" 0 "$level" "$(stat_step "$level")")
    st_n=$(stat_count "$level")
    rm_s=$("$TREE" remove "$d" "$level" $((level + SAMPLE)))
    fsck_s="" fsck_rate=""
    if [ "$t" = cmkfs ]; then
      detach_target cmkfs
      drop_caches
      # Its own time: reading every record and chunk (the key's unwrap and the process's start aside).
      read -r fsck_s fsck_rate < <("$CMKFS" fsck --json "$(backing_dir cmkfs)/store" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); s=j["seconds"]; print("%.3f %.1f" % (s, j["bytes"] / 1e6 / s))')
      attach_target cmkfs
    fi
    printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n" "$level" "$t" \
      "$(per_file_us "$fill" $((level - prev)))" "$(per_file_us "$c" "$SAMPLE")" "$(per_file_us "$st" "$st_n")" \
      "$(per_file_us "$rm_s" "$SAMPLE")" "$ls_s" "$entries" "$find_s" "$um" "$um_all" "$mo" "$rss" "$anon" "$file" \
      "$fsck_s" "$fsck_rate" | tee -a "$CSV"
    [ "$level" != "${LLIST[0]}" ] && side_by_side "$t" "$d" "$level" "$ref" "${LLIST[0]}"
    prev=$level
  done
  umount_target "$t-ref"
  umount_target "$t"  # and its data: two stores of a million files do not fit in memory at once
done

MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r); backing: $BACKING_DESC; $SAMPLE files sampled per size"
python3 scripts/bench_scale_report.py "$OUT" "$MACHINE" $([ $README = 1 ] && echo README.md)
