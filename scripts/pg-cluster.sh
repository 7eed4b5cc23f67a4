#!/usr/bin/env bash
# A PostgreSQL cluster for trying and testing cmkfs with its metadata in PostgreSQL: Debian's
# pg_createcluster (its data in /var/lib/postgresql, as Debian keeps it), listening on localhost
# on a free port, with a role and a database for cmkfs whose connection string (password
# included) goes to DIR/conninfo (mode 0600).
#   scripts/pg-cluster.sh start DIR   starts it (idempotent)
#   scripts/pg-cluster.sh stop DIR    stops and drops it (its /etc/postgresql entry too)
# Then: cmkfs init STORE --meta postgres --pg-conninfo DIR/conninfo
# Needs root and Debian's postgresql.
set -euo pipefail

cmd=${1:-} dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,9p' "$0" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
# One cluster per directory, named after it.
name=cmkfs_$(printf %s "$dir" | cksum | cut -d' ' -f1)

running() { pg_lsclusters -h 2>/dev/null | awk -v n="$name" '$2 == n && $4 == "online"' | grep -q .; }

stop() {
  if pg_lsclusters -h 2>/dev/null | awk -v n="$name" '$2 == n' | grep -q .; then
    pg_dropcluster "$version" "$name" --stop
  fi
}

start() {
  if running && [ -s "$dir/conninfo" ]; then return; fi
  stop
  local port password
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  pg_createcluster -q "$version" "$name" -p "$port" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  pg_conftool "$version" "$name" set listen_addresses localhost
  pg_conftool "$version" "$name" set max_connections 300  # several mounts, each a few connections
  pg_ctlcluster "$version" "$name" start
  for _ in $(seq 100); do pg_isready -q -h localhost -p "$port" && break; sleep 0.1; done
  runuser -u postgres -- psql -q -p "$port" -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE cmkfs LOGIN PASSWORD '$password'" -c "CREATE DATABASE cmkfs OWNER cmkfs" >/dev/null
  (umask 077; echo "host=127.0.0.1 port=$port dbname=cmkfs user=cmkfs password=$password" >"$dir/conninfo")
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
