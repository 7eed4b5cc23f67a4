#!/usr/bin/env bash
# The Debian package as `apt install` would get it, made from this build with cpack: what it
# installs (both programs, the systemd units, bash completion, the man page, /etc/cmkfs/mounts), the library
# dependencies dpkg-shlibdeps declared, and that what it holds runs.
#   tests/e2e/package-e2e.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
out=$(mktemp -d /tmp/cmkfs-package.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "package-e2e: $*" >&2; exit 1; }

(cd "$build" && cpack -G DEB -B "$out" >"$out/cpack.log" 2>&1) || { cat "$out/cpack.log" >&2; fail "cpack failed"; }
deb=$(ls "$out"/cmkfs_*.deb)
contents=$(dpkg-deb -c "$deb")
for path in bin/cmkfs bin/cmkfs-console bin/cmkfs-vault lib/systemd/system/cmkfs@.service lib/systemd/system/cmkfs-vault.service \
  share/bash-completion/completions/cmkfs share/man/man1/cmkfs.1 etc/cmkfs/mounts/; do
  grep -q -- "$path\$" <<<"$contents" || fail "the package lacks $path"
done
depends=$(dpkg-deb -f "$deb" Depends)
for lib in fuse3 libfuse3 libssl3 liblmdb0 libcurl libgrpc; do
  grep -q "$lib" <<<"$depends" || fail "the package does not depend on $lib (Depends: $depends)"
done

# apt would install it: every dependency resolves here (a simulation: nothing is installed).
apt-get install -s "$deb" >"$out/apt.log" 2>&1 || { cat "$out/apt.log" >&2; fail "apt install would fail"; }
grep -q "^Inst cmkfs " "$out/apt.log" || fail "apt would not install cmkfs: $(tail -3 "$out/apt.log")"

dpkg-deb -x "$deb" "$out/root"
bin=$(find "$out/root" -path '*/bin/cmkfs' -type f)
"$bin" --version | grep -q "cmkfs 0" || fail "the packaged cmkfs does not run"
unit=$(find "$out/root" -name 'cmkfs@.service')
grep -q '^Type=notify$' "$unit" || fail "cmkfs@.service is not Type=notify"
# systemd would load the units: no unknown key or bad value (the programs are only in the package
# here, so "not executable" is expected for them, and only for them), and they run what it installs.
mkdir "$out/units"
cp "$unit" "$out/units/cmkfs@registry.service"
cp "$(find "$out/root" -name 'cmkfs-vault.service')" "$out/units/"
verify=$(systemd-analyze verify --man=no "$out"/units/*.service 2>&1 |
  grep -Ev "Command /usr/bin/cmkfs(-vault)? is not executable" || true)
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
for exe in $(grep -ho '^Exec[A-Za-z]*=/usr/bin/cmkfs[a-z-]*' "$out"/units/*.service | cut -d= -f2 | sort -u); do
  [ -x "$out/root$exe" ] || fail "a unit runs $exe, which the package does not install"
done
completion=$(find "$out/root" -path '*/completions/cmkfs')
words=$(bash -c "source '$completion'; COMP_WORDS=(cmkfs encr); COMP_CWORD=1; _cmkfs; echo \"\${COMPREPLY[*]}\"")
[ "$words" = encryption ] || fail "the packaged completion offers '$words' for 'encr'"
# man cmkfs: the page made from the parser shows every command, and what --help cannot say.
page=$(MANWIDTH=100 man -l "$(find "$out/root" -name cmkfs.1)" 2>/dev/null)
for want in "cmkfs mount STORE MOUNTPOINT" "cmkfs encryption rotate-key STORE" "--key-check-interval" \
  "EXIT STATUS" "/etc/cmkfs/mounts/"; do
  grep -qF -- "$want" <<<"$page" || fail "man cmkfs does not show '$want'"
done
echo "package-e2e: $(basename "$deb") holds the programs, units, completion and man page; Depends: $depends"
