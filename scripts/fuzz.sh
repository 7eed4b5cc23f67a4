#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for a while over its seed
# corpus (tests/fuzz/corpus/<target>/), one target per core at a time. A crash fails the run and
# leaves its input as <target>-crash-* in the build directory (add it to the corpus as a test once fixed).
#
#   scripts/fuzz.sh [--seconds 60] [--build-dir build-fuzz] [TARGET...]
#     targets: records json vault_reply vault_request mountinfo oci
#     --build-dir: another build directory; scripts/test.sh passes its sanitizer build, whose
#       libraries are not instrumented for coverage (CMKFS_FUZZ_COVERAGE=OFF stays in its cache)
#
# Idempotent; installs clang and its fuzzing runtime (Debian 12, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SECONDS_EACH=60
BUILD=build-fuzz
TARGETS=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_EACH=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) TARGETS+=("$1") ;;
  esac
  shift
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(records json vault_reply vault_request mountinfo oci)

need_root
install_packages "${BUILD_PACKAGES[@]}" "${CLANG_PACKAGES[@]}"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCMKFS_FUZZ=ON -DCMKFS_TESTS=ON -DCMKFS_BENCHMARKS=OFF \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]/%/_fuzz}" | grep -Ev '^\[ *[0-9]+%\] (Building|Linking|Built)' || true
[ "${PIPESTATUS[0]}" = 0 ]
# One target per core at a time: each gets a whole core for its time, and the run takes
# ceil(targets / cores) rounds instead of one round per target.
fuzz_one() {
  local t=$1 corpus=tests/fuzz/corpus/$1 work
  mkdir -p "$corpus"
  work=$(mktemp -d /tmp/cmkfs-fuzz.XXXXXX)
  # New inputs go to a scratch corpus; the seeds in the tree are not rewritten by every run.
  (cd "$BUILD" && "bin/${t}_fuzz" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 \
     -print_final_stats=1 -artifact_prefix="$t-" "$work" "../$corpus" >"$work.log" 2>&1) || true
  { echo "== fuzz $t for ${SECONDS_EACH}s"; grep -E "^(#[0-9]+ *DONE|stat::|==[0-9]+==ERROR|SUMMARY)" "$work.log"; } || true
  rm -rf "$work" "$work.log"
}
running=0
for t in "${TARGETS[@]}"; do
  fuzz_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$(nproc)" ]; then wait -n; running=$((running - 1)); fi
done
wait
if compgen -G "$BUILD/*-crash-*" >/dev/null || compgen -G "$BUILD/*-leak-*" >/dev/null ||
   compgen -G "$BUILD/*-timeout-*" >/dev/null; then
  echo "a fuzz target found a crash: $(cd "$BUILD" && ls ./*-crash-* ./*-leak-* ./*-timeout-* 2>/dev/null | head -1)" >&2
  exit 1
fi
rm -rf /tmp/cmkfs-fuzz-vault-*
echo "== fuzzing passed"
