# What the end-to-end scripts share: a free port, docker-registry on a directory, cleanup.
# Sourced after WORK, CMKFS and TAG (the log prefix) are set.

log() { printf '[%s] %s\n' "$TAG" "$*"; }
die() { printf '[%s] FAIL: %s\n' "$TAG" "$*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# write_registry_config ROOTDIR ADDR: $WORK/registry.yml for docker-registry, deletes enabled.
write_registry_config() {
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n' \
    "$1" "$2" >"$WORK/registry.yml"
}

REG_PID=""
# start_registry ADDR: serves $WORK/registry.yml, returns once it answers.
start_registry() {
  docker-registry serve "$WORK/registry.yml" >>"$WORK/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do
    kill -0 "$REG_PID" 2>/dev/null || die "docker-registry exited: $(tail -n 1 "$WORK/registry.log")"
    curl -fs "http://$1/v2/" >/dev/null && return 0
    sleep 0.1
  done
  die "docker-registry did not start"
}
stop_registry() { { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null; } || true; REG_PID=""; }

# unmount_all MOUNTPOINT...: for cleanup, whatever state they are in.
unmount_all() {
  for m in "$@"; do
    if grep -q " $m " /proc/mounts; then "$CMKFS" umount "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true; fi
  done
}
