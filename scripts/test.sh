#!/usr/bin/env bash
# Builds cmkfs and runs every test: unit tests, tests that really mount, the registry end-to-end,
# then all of it again built with AddressSanitizer and UndefinedBehaviorSanitizer.
# Idempotent; installs what it needs (Debian 12, as root).
#   CMKFS_SKIP_SANITIZERS=1  skip the sanitizer pass
#   CMKFS_SKIP_FUZZ=1        skip the short fuzzing run (scripts/fuzz.sh runs longer ones)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
install_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
# The browser tests' driver (playwright-core) runs on Node.js: the machine's, or Debian's.
command -v npm >/dev/null || install_packages nodejs npm
trap cleanup_test_mounts EXIT
cleanup_test_mounts

echo "== build (RelWithDebInfo) and test"
# Line tables only (-g1): backtraces keep their files and lines, and the build takes a quarter less.
build build RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG"
# One test more than cores: most of them wait on daemons, vaults and clusters (at -j2 the
# sanitizer run used 114% of two cores). On two cores a third slot took the runs from 337 to 265 s
# and from 389 to 324 s.
JOBS=$(($(nproc) + 1))
(cd build && ctest --output-on-failure -j "$JOBS")

if [ "${CMKFS_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== build with ASan+UBSan (clang) and test"
  # clang: it builds this in two thirds of gcc's time, and its warnings are a second compiler's.
  # Line tables only: the reports keep their files and lines, and the build takes a quarter less.
  # With the fuzz targets too: the short fuzzing below runs them from this build instead of
  # compiling the libraries a third time (4m20 here). Their coverage comes from the targets' own
  # code only (docs/performance.md: instrumenting every library changed the tests' time little).
  build build-asan Debug -DCMKFS_SANITIZE=ON -DCMKFS_FUZZ=ON -DCMKFS_FUZZ_COVERAGE=OFF -DCMKFS_TESTS=ON \
    -DCMKFS_BENCHMARKS=OFF -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only
  reports=$(mktemp -d /tmp/cmkfs-sanitizer.XXXXXX)
  # Daemons log to files, not stderr: sanitizer reports go to $reports and fail the run.
  export ASAN_OPTIONS="log_path=$reports/asan:abort_on_error=1:detect_leaks=1"
  export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
  # All but the package test (a package of sanitizer builds is not what anyone installs), the
  # second runs of the core and POSIX suites on PostgreSQL metadata (pg.*), and the cluster
  # end-to-end scripts: their daemons run the same engine and object-store code that the unit
  # and mount tests run here, and each would add a minute of cluster start-up under ASan.
  (cd build-asan && ctest --output-on-failure -j "$JOBS" -E '^(package_e2e|cluster_e2e|cluster_s3_e2e|rados_e2e)$|^pg\.')
  if compgen -G "$reports/*" >/dev/null; then
    echo "sanitizer reports:" >&2
    cat "$reports"/* >&2
    exit 1
  fi
  rm -rf "$reports"
  unset ASAN_OPTIONS UBSAN_OPTIONS  # a fuzzer's report goes to its own log
fi
if [ "${CMKFS_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz every parser of untrusted bytes briefly (clang, libFuzzer)"
  fuzz_build=build-fuzz
  [ "${CMKFS_SKIP_SANITIZERS:-0}" = 1 ] || fuzz_build=build-asan
  scripts/fuzz.sh --seconds "${CMKFS_FUZZ_SECONDS:-10}" --build-dir "$fuzz_build"
fi
echo "== all tests passed"
