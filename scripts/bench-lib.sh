# Shared by the benchmark scripts: mounting each target over its own directory of the backing
# store, a registry on one, and what the scripts read of a daemon. Source it after setting WORK (the scratch root),
# BACKING (tmpfs, or a directory on the disk) and CMKFS (the binary).

backing_dir() { if [ "$BACKING" = tmpfs ]; then echo "$WORK/backing/$1"; else echo "$WORK/backing-disk/$1"; fi; }

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# mount_target NAME -> prints the directory to benchmark in
# NAME-ref: a second mount of the same kind (the scale curve's reference store).
mount_target() {
  local t=$1 b m
  b=$(backing_dir "$t")
  m=$WORK/mnt/$t
  rm -rf "$b"
  mkdir -p "$b" "$m"
  case ${t%-ref} in
    raw) echo "$b"; return ;;
    # Daemons must not keep this function's stdout (a command substitution) open: logs go to files.
    mergerfs) mergerfs -o cache.files=auto-full,cache.writeback=true,category.create=ff "$b" "$m" >"$WORK/$t.log" 2>&1 ;;
    bindfs) bindfs --multithreaded "$b" "$m" >"$WORK/$t.log" 2>&1 ;;
    gocryptfs)
      mkdir -p "$b/c"
      gocryptfs -q -init -extpass "echo benchpass" -scryptn 10 "$b/c" >"$WORK/$t.log" 2>&1
      attach_target "$t" ;;
    securefs)
      securefs create --pass benchpass "$b/c" >"$WORK/$t.log" 2>&1
      securefs mount -b --pass benchpass "$b/c" "$m" >>"$WORK/$t.log" 2>&1 ;;
    cryfs)
      mkdir -p "$b/c"
      echo benchpass | CRYFS_FRONTEND=noninteractive CRYFS_NO_UPDATE_CHECK=true \
        cryfs --cipher aes-256-gcm --allow-replaced-filesystem "$b/c" "$m" >"$WORK/$t.log" 2>&1 ;;
    cmkfs|cmkfs-direct)
      "$CMKFS" init "$b/store" --local-key-file "$b/key" >"$WORK/$t.log" 2>&1
      attach_target "$t" ;;
  esac
  for _ in $(seq 600); do grep -q " $m " /proc/mounts && break; sleep 0.1; done
  grep -q " $m " /proc/mounts || { echo "could not mount $t:" >&2; cat "$WORK/$t.log" >&2; exit 1; }
  echo "$m"
}

# attach_target NAME: mounts what NAME's backing directory holds (cmkfs, gocryptfs) again.
attach_target() {
  local t=$1 b m=$WORK/mnt/$1
  b=$(backing_dir "$t")
  case ${t%-ref} in
    gocryptfs) gocryptfs -q -nosyslog -extpass "echo benchpass" "$b/c" "$m" >>"$WORK/$t.log" 2>&1 ;;
    cmkfs|cmkfs-direct)
      local flags=()
      [ "${t%-ref}" = cmkfs-direct ] && flags=(--direct-reads)
      "$CMKFS" mount "$b/store" "$m" "${flags[@]}" --log-file "$b/cmkfs.log" >>"$WORK/$t.log" 2>&1 ;;
  esac
}

# detach_target NAME: unmounts NAME, keeping its data.
detach_target() {
  local t=$1 m=$WORK/mnt/$1
  if [[ ${t%-ref} = cmkfs* ]]; then "$CMKFS" umount "$m" >/dev/null
  elif [ "$t" != raw ]; then fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; fi
}

umount_target() {
  detach_target "$1"
  rm -rf "$(backing_dir "$1")"
}

cmkfs_pid() { pgrep -f "cmkfs mount $(backing_dir cmkfs)/store" | head -n1; }
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }


# start_registry DIR: docker-registry with its filesystem driver on DIR, on a free loopback port;
# sets REG_PORT and REG_PID, and returns once it answers.
start_registry() {
  start_registry_with "$(printf '  filesystem:\n    rootdirectory: %s' "$1")"
}
# start_registry_with STORAGE_YAML: the same with the config's storage section given (indented).
# AWS_CA_BUNDLE is unset for it: the registry's S3 client panics when it is set and the endpoint
# is plain HTTP.
start_registry_with() {
  REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n%s\nhttp:\n  addr: 127.0.0.1:%s\n' "$1" "$REG_PORT" \
    >"$WORK/registry.yml"
  env -u AWS_CA_BUNDLE docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$REG_PORT/v2/" >/dev/null && break; sleep 0.05; done
}
stop_registry() {
  kill "$REG_PID"
  wait "$REG_PID" 2>/dev/null || true
}

# run_phase push|pull PORT -> seconds for CLIENTS skopeo copies at once, of the images in
# WORK/src/images (scripts/make_oci_images.py) or back into WORK/src/pulled; every one must succeed.
run_phase() {
  local phase=$1 port=$2 pids=() start i failed=0
  mkdir -p "$WORK/src/pulled"
  start=$(date +%s.%N)
  for i in $(seq "$CLIENTS"); do
    if [ "$phase" = push ]; then
      skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/src/images:img$i" "docker://127.0.0.1:$port/bench/img$i:v1" &
    else
      skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$port/bench/img$i:v1" "oci:$WORK/src/pulled/$i:img$i" &
    fi
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ $failed = 0 ] || { echo "a $phase failed" >&2; exit 1; }
  echo "$(date +%s.%N) - $start" | bc
}

# Unmounts everything under WORK (lazily) and stops its registries.
bench_cleanup() {
  for m in $(awk -v w="$WORK" '$2 ~ "^"w {print $2}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
  pkill -f "docker-registry serve $WORK" 2>/dev/null || true
}

# prepare_backing TMPFS_SIZE: a fresh WORK, with the backing store on a tmpfs of that size or in
# BACKING's directory; sets BACKING_DESC.
prepare_backing() {
  bench_cleanup
  rm -rf "$WORK"
  mkdir -p "$WORK/backing"
  if [ "$BACKING" = tmpfs ]; then
    mount -t tmpfs -o "size=$1" tmpfs "$WORK/backing"
    BACKING_DESC="tmpfs"
  else
    local dir
    dir=$(realpath "$BACKING")/cmkfs-bench-backing
    rm -rf "$dir"
    mkdir -p "$dir"
    ln -sfn "$dir" "$WORK/backing-disk"
    BACKING_DESC="disk ($(df -T "$dir" | awk 'NR==2 {print $2}'), $dir)"
  fi
}
