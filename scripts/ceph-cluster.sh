#!/usr/bin/env bash
# A single-host Ceph cluster for trying and testing cmkfs on RADOS: one monitor, one manager and
# one OSD keeping its objects in memory (memstore), all under one directory, with a config and an
# admin keyring of their own (nothing in /etc/ceph is read or written).
#   scripts/ceph-cluster.sh start DIR [POOL] [--rgw]  starts it (idempotent), creates POOL (default
#                             cmkfs); --rgw also starts an S3 gateway (radosgw) and writes its
#                             endpoint and a user's keys to DIR/rgw.env (mode 0600)
#   scripts/ceph-cluster.sh stop DIR          stops its daemons; DIR is left for `rm -rf`
# Then: cmkfs init STORE --objects rados://POOL --ceph-conf DIR/ceph.conf
# Everything listens on 127.0.0.1 only, on free ports chosen at start. Data lives in memory:
# stopping the OSD loses it (CEPH_MEMSTORE_BYTES: its size, 2 GiB by default). Needs root and
# Debian's ceph-mon, ceph-osd, ceph-mgr (and radosgw).
set -euo pipefail

cmd=${1:-} dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,12p' "$0" >&2; exit 2; }
conf=$dir/ceph.conf

# Its daemons: by pid file, and by command line (the pid files may be gone with a deleted DIR).
daemon_pids() {
  cat "$dir"/run/*.pid 2>/dev/null || true
  pgrep -f -- "^(ceph-mon|ceph-mgr|ceph-osd|radosgw) -c $dir/ceph.conf " || true
}

stop() {
  local p
  dir=$(cd "$dir" 2>/dev/null && pwd || echo "$dir")
  for p in $(daemon_pids); do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in $(daemon_pids); do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for p in $(daemon_pids); do kill -9 "$p" 2>/dev/null || true; done
  rm -f "$dir"/run/*.pid
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {
  local pool=cmkfs rgw=0
  for a in "$@"; do
    case $a in --rgw) rgw=1 ;; *) pool=$a ;; esac
  done
  mkdir -p "$dir"/run "$dir"/log
  dir=$(cd "$dir" && pwd)
  conf=$dir/ceph.conf
  if [ -f "$conf" ] && ceph -c "$conf" --connect-timeout 5 health >/dev/null 2>&1; then
    ensure_pool "$pool"
    [ $rgw = 0 ] || ensure_rgw
    return
  fi
  stop
  rm -rf "$dir"/mon "$dir"/osd "$dir"/mgr
  mkdir -p "$dir"/mon "$dir"/osd "$dir"/mgr/ceph-x
  local fsid port
  fsid=$(cat /proc/sys/kernel/random/uuid)
  port=$(free_port)
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
mon data = $dir/mon/\$cluster-\$id
mgr data = $dir/mgr/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-2147483648}
osd memory target = 939524096
mgr initial modules =
EOF
  # The daemons' pid files, sockets, logs and keyrings; clients (cmkfs, rados) keep Ceph's defaults.
  local section
  for section in mon mgr osd; do
    printf '[%s]\npid file = %s\nadmin socket = %s\nlog file = %s\n' "$section" "$dir/run/\$name.pid" \
      "$dir/run/\$name.asok" "$dir/log/\$name.log" >>"$conf"
    [ $section = mon ] || printf 'keyring = %s\n' "$dir/$section/\$cluster-\$id/keyring" >>"$conf"
  done
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  chmod 600 "$dir/keyring"
  monmaptool --create --addv a "[v2:127.0.0.1:$port]" --fsid "$fsid" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
  ceph-mon -c "$conf" -i a
  ceph -c "$conf" --connect-timeout 30 mon enable-msgr2 >/dev/null 2>&1 || true

  ceph -c "$conf" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
    >"$dir/mgr/ceph-x/keyring"
  ceph-mgr -c "$conf" -i x

  local uuid secret id
  uuid=$(cat /proc/sys/kernel/random/uuid)
  secret=$(ceph-authtool --gen-print-key)
  id=$(echo "{\"cephx_secret\": \"$secret\"}" | ceph -c "$conf" osd new "$uuid" -i -)
  mkdir -p "$dir/osd/ceph-$id"
  ceph-authtool --create-keyring "$dir/osd/ceph-$id/keyring" --name "osd.$id" --add-key "$secret" >/dev/null
  ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
  ceph-osd -c "$conf" -i "$id" 2>>"$dir/log/osd.$id.log"
  for _ in $(seq 120); do
    ceph -c "$conf" osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && break
    sleep 0.5
  done
  ensure_pool "$pool"
  [ $rgw = 0 ] || ensure_rgw
  echo "ceph cluster up: $conf (pool $pool)${rgw/#1/, S3 gateway in $dir/rgw.env}"
}

# radosgw as client.rgw.x on a free port, and an S3 user whose keys go to rgw.env.
ensure_rgw() {
  if [ -s "$dir/rgw.env" ] && kill -0 "$(cat "$dir/run/client.rgw.x.pid" 2>/dev/null)" 2>/dev/null; then return; fi
  local port
  port=$(free_port)
  mkdir -p "$dir/rgw"
  ceph -c "$conf" auth get-or-create client.rgw.x mon 'allow rw' osd 'allow rwx' >"$dir/rgw/keyring"
  grep -q '^\[client.rgw.x\]' "$conf" || printf '[client.rgw.x]\nkeyring = %s\nrgw data = %s\nrgw frontends = beast endpoint=127.0.0.1:%s\npid file = %s\nadmin socket = %s\nlog file = %s\n' \
    "$dir/rgw/keyring" "$dir/rgw" "$port" "$dir/run/\$name.pid" "$dir/run/\$name.asok" "$dir/log/\$name.log" >>"$conf"
  port=$(sed -n 's/^rgw frontends = beast endpoint=127.0.0.1:\([0-9]*\)$/\1/p' "$conf")
  radosgw -c "$conf" -n client.rgw.x
  for _ in $(seq 120); do
    curl -fs "http://127.0.0.1:$port/" >/dev/null && break
    sleep 0.5
  done
  curl -fs "http://127.0.0.1:$port/" >/dev/null || { echo "radosgw did not start" >&2; return 1; }
  local keys
  keys=$(radosgw-admin -c "$conf" user info --uid cmkfs 2>/dev/null ||
    radosgw-admin -c "$conf" user create --uid cmkfs --display-name cmkfs 2>/dev/null)
  (umask 077; python3 -c '
import json, sys
k = json.loads(sys.argv[1])["keys"][0]
print("RGW_ENDPOINT=http://127.0.0.1:" + sys.argv[2])
print("RGW_ACCESS_KEY=" + k["access_key"])
print("RGW_SECRET_KEY=" + k["secret_key"])
' "$keys" "$port" >"$dir/rgw.env")
}

ensure_pool() {
  local pool=$1
  ceph -c "$conf" osd pool ls | grep -qx "$pool" && return
  ceph -c "$conf" osd pool create "$pool" 8 >/dev/null 2>&1
  ceph -c "$conf" osd pool application enable "$pool" cmkfs >/dev/null 2>&1
  # Writes block until the pool's placement groups are active.
  for _ in $(seq 120); do
    timeout 5 rados -c "$conf" -p "$pool" put cmkfs-probe /dev/null 2>/dev/null && break
    sleep 0.5
  done
  rados -c "$conf" -p "$pool" rm cmkfs-probe
}

case $cmd in
  start) shift 2; start "$@" ;;
  stop) stop ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
