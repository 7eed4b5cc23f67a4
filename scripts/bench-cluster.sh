#!/usr/bin/env bash
# A registry on Ceph: CLIENTS skopeo pushes of different images of IMAGE_MIB MiB at once, then
# CLIENTS concurrent pulls, through docker-registry (a) on a cmkfs mount whose objects are in
# RADOS (filesystem driver), (b) on a cmkfs mount whose objects are in an S3 bucket of the
# cluster's gateway (radosgw), and (c) with the registry's own S3 driver on that gateway: the
# choice a user would make without cmkfs. One single-host cluster
# (scripts/ceph-cluster.sh: one OSD in memory) serves all three, alternating, REPS times; a fresh
# store and bucket each time. Aggregate seconds per phase, ratios inside each repetition.
# Results: build-bench/results/cluster.{csv,md} and README.md's section (unless --no-readme).
#
# Then metadata operations per second with two nodes against one (PostgreSQL metadata, FILES
# files): cluster-nodes.{csv,md}.
#
#   scripts/bench.sh --cluster [--count 8] [--image-mib 50] [--reps 2] [--files 3000] [--no-readme]
#
# Debian 12, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/bench-lib.sh

CLIENTS=8 IMAGE_MIB=50 REPS=2 README=1 FILES=3000
while [ $# -gt 0 ]; do
  case $1 in
    --cluster) ;;
    --count) CLIENTS=$2; shift ;;
    --image-mib) IMAGE_MIB=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --files) FILES=$2; shift ;;
    --no-readme) README=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

need_root
install_packages "${BUILD_PACKAGES[@]}" docker-registry skopeo curl python3 bc ceph-mon ceph-osd ceph-mgr ceph-common radosgw postgresql
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j "$(nproc)" --target cmkfs | grep -Ev '^\[ *[0-9]+%\]' || true
CMKFS=$PWD/build-bench/bin/cmkfs
OUT=$PWD/build-bench/results
WORK=/tmp/cmkfs-bench-cluster
CEPH=$WORK/ceph
export CMKFS_CONFIG_DIR=$WORK/host
mkdir -p "$OUT"
cleanup() {
  bench_cleanup
  scripts/ceph-cluster.sh stop "$CEPH" >/dev/null 2>&1 || true
  scripts/pg-cluster.sh stop "$WORK/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/mnt"
mount -t tmpfs -o size=$((IMAGE_MIB * CLIENTS * 2 + 1024))m tmpfs "$WORK/src"
python3 scripts/make_oci_images.py "$WORK/src/images" "$CLIENTS" "$IMAGE_MIB"
# Room for one repetition's images twice over (each is removed before the next).
CEPH_MEMSTORE_BYTES=$(((IMAGE_MIB * CLIENTS * 3 + 1024) << 20)) scripts/ceph-cluster.sh start "$CEPH" cmkfs --rgw
. "$CEPH/rgw.env"
(umask 077; printf 'access_key = %s\nsecret_key = %s\n' "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY" >"$WORK/s3.keys")
s3() { curl -fs --aws-sigv4 "aws:amz:us-east-1:s3" --user "$RGW_ACCESS_KEY:$RGW_SECRET_KEY" \
  -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" "$@"; }

# start_target cmkfs|cmkfs-s3|s3 REP: the registry on a fresh store or bucket.
start_target() {
  if [ "$1" != s3 ]; then
    rm -rf "$WORK/store"
    if [ "$1" = cmkfs ]; then
      "$CMKFS" init "$WORK/store" --objects "rados://cmkfs" --ceph-conf "$CEPH/ceph.conf" >/dev/null
    else
      "$CMKFS" init "$WORK/store" --objects "s3://cmkfs$2" --s3-endpoint "$RGW_ENDPOINT" --s3-credentials "$WORK/s3.keys" >/dev/null
    fi
    "$CMKFS" mount "$WORK/store" "$WORK/mnt" --log-file "$WORK/cmkfs.log"
    start_registry "$WORK/mnt/registry"
  else
    s3 -X PUT "$RGW_ENDPOINT/bench$2" >/dev/null
    start_registry_with "$(printf '  s3:\n    region: us-east-1\n    regionendpoint: %s\n    bucket: bench%s\n    accesskey: %s\n    secretkey: %s\n    secure: false\n    v4auth: true' \
      "$RGW_ENDPOINT" "$2" "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY")"
  fi
}
# stop_target cmkfs|cmkfs-s3|s3 REP: and frees what it stored.
stop_target() {
  stop_registry
  if [ "$1" = cmkfs-s3 ]; then
    "$CMKFS" umount "$WORK/mnt" >/dev/null
    radosgw-admin -c "$CEPH/ceph.conf" bucket rm --bucket "cmkfs$2" --purge-objects >/dev/null 2>&1
  elif [ "$1" = cmkfs ]; then
    local ns
    ns=$("$CMKFS" encryption show "$WORK/store" | python3 -c 'import json,sys; print(json.load(sys.stdin)["storeId"])')
    "$CMKFS" umount "$WORK/mnt" >/dev/null
    rados -c "$CEPH/ceph.conf" -p cmkfs -N "$ns" ls | xargs -r -n 200 rados -c "$CEPH/ceph.conf" -p cmkfs -N "$ns" rm
  else
    radosgw-admin -c "$CEPH/ceph.conf" bucket rm --bucket "bench$2" --purge-objects >/dev/null 2>&1
  fi
}

CSV=$OUT/cluster.csv
echo "rep,target,push_s,pull_s" >"$CSV"
for rep in $(seq "$REPS"); do
  order="s3 cmkfs cmkfs-s3"
  [ $((rep % 2)) = 0 ] && order="cmkfs-s3 cmkfs s3"
  for t in $order; do
    start_target "$t" "$rep"
    push=$(run_phase push "$REG_PORT")
    drop_caches
    pull=$(run_phase pull "$REG_PORT")
    n=$(find "$WORK/src/pulled" -path '*/blobs/sha256/*' -type f | wc -l)
    [ "$n" -ge $((CLIENTS * 6)) ] || { echo "pulled only $n blobs" >&2; exit 1; }
    rm -rf "$WORK/src/pulled"
    stop_target "$t" "$rep"
    echo "$rep,$t,$push,$pull" | tee -a "$CSV"
  done
done

# The issue's target is the round trip (push+pull); each phase is shown too.
BENCH_PHASES=push,pull,push+pull python3 scripts/bench_phases.py "$CSV" "$OUT/cluster.md" \
  "$CLIENTS concurrent skopeo clients, images of $IMAGE_MIB MiB, docker-registry on one single-host Ceph cluster (one OSD in memory):" \
  s3 "S3 driver on radosgw" 1.2 "$([ "$README" = 1 ] && echo cluster)"

# Metadata operations per second on one store whose metadata is in PostgreSQL (scripts/pg-cluster.sh)
# and whose objects are in the cluster: FILES creates through the writer, then cold stats of all
# of them through the writer alone, and through the writer and a follower (`mount --follow`, a
# second host configuration) at once.
echo "== metadata operations: one node against two"
scripts/pg-cluster.sh start "$WORK/pg" >/dev/null
NODES_CSV=$OUT/cluster-nodes.csv
echo "rep,create_s,stat_one_node_s,stat_two_nodes_s" >"$NODES_CSV"
A=$WORK/node-a B=$WORK/node-b
node_a() { CMKFS_CONFIG_DIR=$A/host "$CMKFS" "$@"; }
node_b() { CMKFS_CONFIG_DIR=$B/host "$CMKFS" "$@"; }
for rep in $(seq "$REPS"); do
  rm -rf "$A" "$B"
  mkdir -p "$A/mnt" "$B/mnt"
  node_a init "$A/store" --meta "postgres://bench_nodes_$rep" --pg-conninfo "$WORK/pg/conninfo" \
    --objects rados://cmkfs --ceph-conf "$CEPH/ceph.conf" --local-key-file "$A/key" >/dev/null
  fp=$(node_a encryption show "$A/store" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hostBinding"]["dataKeyFingerprint"])')
  (umask 077; cp "$WORK/pg/conninfo" "$B/conninfo")
  node_b trust "$B/store" --meta "postgres://bench_nodes_$rep" --pg-conninfo "$B/conninfo" --ceph-conf "$CEPH/ceph.conf" \
    --local-key-file "$A/key" --fingerprint "$fp" >/dev/null
  node_a mount "$A/store" "$A/mnt" --log-file "$A/log"
  node_b mount "$B/store" "$B/mnt" --follow --log-file "$B/log"
  create=$(python3 scripts/bench_meta_ops.py create "$A/mnt" "$FILES")
  sync -f "$A/mnt"
  drop_caches
  one=$(python3 scripts/bench_meta_ops.py stat "$A/mnt" "$FILES")
  drop_caches
  python3 scripts/bench_meta_ops.py stat "$A/mnt" "$FILES" >"$WORK/stat-a" &
  python3 scripts/bench_meta_ops.py stat "$B/mnt" "$FILES" >"$WORK/stat-b"
  wait
  two=$(sort -g "$WORK/stat-a" "$WORK/stat-b" | tail -1)
  node_b umount "$B/mnt" >/dev/null
  node_a umount "$A/mnt" >/dev/null
  echo "$rep,$create,$one,$two" | tee -a "$NODES_CSV"
done
scripts/pg-cluster.sh stop "$WORK/pg" >/dev/null
python3 scripts/bench_meta_ops.py report "$NODES_CSV" "$OUT/cluster-nodes.md" "$FILES" "$([ "$README" = 1 ] && echo cluster-nodes)"
