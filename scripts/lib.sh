# Shared by the scripts: package installation, building, and cleaning up test mounts.
# Source it from the repository root.

BUILD_PACKAGES=(build-essential cmake pkg-config libssl-dev libfuse3-dev fuse3 liblmdb-dev libspdlog-dev
  nlohmann-json3-dev libcurl4-openssl-dev libcpp-httplib-dev libcli11-dev libgtest-dev libbenchmark-dev liburing-dev zlib1g-dev libzstd-dev
  libsystemd-dev libp11-kit-dev librados-dev libpq-dev libpugixml-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc)
# clang and its sanitizer and fuzzing runtimes: the sanitizer build (test.sh) and the fuzzers.
CLANG_PACKAGES=(clang libclang-rt-14-dev)
TEST_PACKAGES=(docker-registry skopeo umoci curl python3 procps util-linux zstd softhsm2 opensc python3-grpcio
  python3-grpc-tools python3-protobuf dpkg-dev systemd man-db chromium ceph-mon ceph-osd ceph-mgr ceph-common radosgw postgresql
  "${CLANG_PACKAGES[@]}")

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$0: run as root: it installs packages and mounts filesystems" >&2
    exit 1
  fi
}

# Installs whichever of the given Debian packages are missing (idempotent).
install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build DIR BUILD_TYPE [cmake args...]; BUILD_TARGET=name builds one target only.
build() {
  local dir=$1 type=$2
  shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)" ${BUILD_TARGET:+--target "$BUILD_TARGET"} | grep -Ev '^\[ *[0-9]+%\] (Building|Linking|Built)' || true
  [ "${PIPESTATUS[0]}" = 0 ]
}

# Lazily unmounts every FUSE mount under the test roots and stops stray daemons and registries.
cleanup_test_mounts() {
  local m
  for m in $(awk '$2 ~ "^/tmp/cmkfs-(it|e2e)" {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
  done
  pkill -f "^[^ ]*cmkfs mount /tmp/cmkfs-(it|e2e)" 2>/dev/null || true
}
