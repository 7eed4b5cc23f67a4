#!/usr/bin/env bash
# Builds the Debian package: cmkfs and cmkfs-vault, systemd units (cmkfs@.service,
# cmkfs-vault.service), man pages (cmkfs(1) made from its parser, cmkfs-vault(1) from --help),
# bash completion, /etc/cmkfs/mounts; library dependencies
# declared by dpkg-shlibdeps. Install it with: apt install ./build-package/cmkfs_*.deb
#
#   scripts/package.sh        (Debian 12, as root; idempotent)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_root
install_packages "${BUILD_PACKAGES[@]}" help2man dpkg-dev
cmake -S . -B build-package -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DCMKFS_TESTS=OFF \
  -DCMKFS_BENCHMARKS=OFF -DCMKFS_MAN=ON >/dev/null
cmake --build build-package -j "$(nproc)" | grep -Ev '^\[ *[0-9]+%\]' || true
[ "${PIPESTATUS[0]}" = 0 ]
(cd build-package && cpack -G DEB >/dev/null)
ls build-package/cmkfs_*.deb
