#!/usr/bin/env bash
# End-to-end: the registry view. Images built with umoci (several layers with whiteouts, an
# opaque directory, hard links, symlinks, long names, owners, a FIFO; and a two-platform index)
# are pushed with skopeo to docker-registry on a cmkfs mount; `cmkfs view` shows them as
# files, which must equal what skopeo reads over HTTP and what umoci wrote (rootfs/ equals
# `umoci unpack`); a push and a delete
# show up live; writes are EROFS; a blob changed behind the registry's back reads EIO; and
# `cmkfs view --store` shows the same offline.
#
# usage: tests/e2e/view-e2e.sh [path/to/cmkfs]     (default: build/bin/cmkfs)
# Needs root, /dev/fuse, docker-registry, skopeo, umoci, curl, python3.
set -euo pipefail

CMKFS=$(realpath "${1:-build/bin/cmkfs}")
WORK=$(mktemp -d /tmp/cmkfs-view.XXXXXX) TAG=view
. "$(dirname "$0")/lib.sh"
PORT=$(free_port)
MNT=$WORK/mnt STORE=$WORK/store VIEW=$WORK/view
export CMKFS_CONFIG_DIR=$WORK/host

cleanup() {
  local rc=$?
  stop_registry
  unmount_all "$VIEW" "$MNT"
  if [ $rc -eq 0 ]; then rm -rf "$WORK"; else
    log "kept $WORK for inspection"; tail -n 20 "$WORK/cmkfs.log" "$WORK/view.log" "$WORK/registry.log" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'printf "[view] FAIL: line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

# add_layer FROM TO CHANGE...: unpack FROM, run the change in its rootfs, repack as TO.
add_layer() {
  local from=$1 to=$2 b=$WORK/bundle-$RANDOM
  shift 2
  umoci unpack --image "$WORK/oci:$from" "$b" >/dev/null
  (cd "$b/rootfs" && eval "$*")
  umoci repack --image "$WORK/oci:$to" "$b"
  rm -rf "$b"
}
ref_digest() { python3 -c 'import json,sys; print([m["digest"] for m in json.load(open(sys.argv[1]))["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"]==sys.argv[2]][0])' "$WORK/oci/index.json" "$1"; }
blob() { echo "$WORK/oci/blobs/sha256/${1#sha256:}"; }

# --- images: app (3 layers: files, a whiteout, a hard link, a symlink), and a two-platform index ---
log "building images with umoci"
umoci init --layout "$WORK/oci"
umoci new --image "$WORK/oci:base"
add_layer base app 'mkdir -p etc data var/cache; echo hello >etc/motd; head -c 3000000 /dev/urandom >data/blob.bin; echo gone >data/old; echo a >var/cache/a; echo b >var/cache/b'
add_layer app app 'rm data/old; ln data/blob.bin data/hard.bin; ln -s ../etc/motd data/motd.link'
add_layer app app 'echo v2 >etc/motd; chmod 0600 etc/motd'
# A layer written by hand, for what umoci repack does not make: an opaque directory, PAX long
# names, other owners, set-id bits, a FIFO, a hard link inside the layer.
python3 - "$WORK/layer4.tar" <<'PY'
import io, sys, tarfile
t = tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT)
def add(name, type=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, link=""):
    i = tarfile.TarInfo(name); i.type = type; i.mode = mode; i.uid = uid; i.gid = gid; i.mtime = 1700000000
    i.linkname = link; i.size = len(data) if type == tarfile.REGTYPE else 0
    t.addfile(i, io.BytesIO(data) if type == tarfile.REGTYPE else None)
add("var/cache/", tarfile.DIRTYPE, mode=0o755)
add("var/cache/.wh..wh..opq")
add("var/cache/c", data=b"only c survives the opaque directory\n")
long = "deep/" + "d" * 120 + "/" + "f" * 150
add("deep/", tarfile.DIRTYPE, mode=0o755)
add("deep/" + "d" * 120 + "/", tarfile.DIRTYPE, mode=0o750, uid=1234, gid=5678)
add(long, data=b"a file with a name longer than ustar holds\n" * 1000, mode=0o4755, uid=1234, gid=5678)
add("deep/hard-to-long", tarfile.LNKTYPE, link=long)
add("deep/fifo", tarfile.FIFOTYPE, mode=0o600)
t.close()
PY
umoci raw add-layer --image "$WORK/oci:app" "$WORK/layer4.tar"
umoci config --image "$WORK/oci:app" --config.env APP_MODE=view --config.label org.example.purpose=test
add_layer base arm 'mkdir -p etc; echo arm >etc/arch'
umoci config --image "$WORK/oci:app" --os linux --architecture amd64
umoci config --image "$WORK/oci:arm" --os linux --architecture arm64
# The index: both images, by platform, written as a blob and tagged "multi".
python3 - "$WORK/oci" "$(ref_digest app)" "$(ref_digest arm)" <<'PY'
import hashlib, json, os, sys
oci, amd, arm = sys.argv[1:4]
def desc(d, os_, arch, variant=None):
    size = os.path.getsize(f"{oci}/blobs/sha256/{d[7:]}")
    p = {"os": os_, "architecture": arch}
    if variant: p["variant"] = variant
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": size, "platform": p}
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [desc(amd, "linux", "amd64"), desc(arm, "linux", "arm64", "v8")]}).encode()
h = hashlib.sha256(index).hexdigest()
open(f"{oci}/blobs/sha256/{h}", "wb").write(index)
top = json.load(open(f"{oci}/index.json"))
top["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + h,
                         "size": len(index), "annotations": {"org.opencontainers.image.ref.name": "multi"}})
json.dump(top, open(f"{oci}/index.json", "w"))
PY

# --- a store, a mount, a registry on it, the pushes ----------------------------------------------
mkdir -p "$MNT" "$VIEW"
"$CMKFS" init "$STORE" --local-key-file "$WORK/key" >/dev/null
"$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log"
write_registry_config "$MNT/registry" "127.0.0.1:$PORT"
start_registry "127.0.0.1:$PORT"
REG=127.0.0.1:$PORT
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:app" "docker://$REG/library/app:1.0"
skopeo copy --quiet --all --dest-tls-verify=false "oci:$WORK/oci:multi" "docker://$REG/team/tools/multi:latest"
log "pushed library/app:1.0 and the index team/tools/multi:latest"

# --- the view of the running mount ---------------------------------------------------------------
"$CMKFS" view "$MNT" "$VIEW" >/dev/null
grep -q " $VIEW fuse.cmkfs-view " /proc/mounts || die "the view is not mounted"
check_image() {  # DIR REF: every file of the view's image equals skopeo's and umoci's bytes
  local dir=$1 ref=$2
  skopeo inspect --raw --tls-verify=false "docker://$REG/$ref" >"$WORK/want.manifest"
  cmp -s "$dir/manifest.json" "$WORK/want.manifest" || die "$dir/manifest.json differs from the registry's"
  skopeo inspect --config --raw --tls-verify=false "docker://$REG/$ref" >"$WORK/want.config"
  cmp -s "$dir/config.json" "$WORK/want.config" || die "$dir/config.json differs from the registry's"
  local n=0
  for l in $(python3 -c 'import json,sys; print(" ".join(l["digest"][7:] for l in json.load(open(sys.argv[1]))["layers"]))' "$WORK/want.manifest"); do
    local f=("$dir/layers/$n-$l".tar*)
    [ -f "${f[0]}" ] || die "no layer $n ($l) in $dir/layers: $(ls "$dir/layers")"
    cmp -s "${f[0]}" "$(blob "sha256:$l")" || die "${f[0]} differs from the layer umoci wrote"
    n=$((n + 1))
  done
  [ "$(ls "$dir/layers" | wc -l)" = $n ] || die "$dir/layers holds $(ls "$dir/layers" | wc -l) files, the manifest $n layers"
  echo $n
}
n=$(check_image "$VIEW/library/app:1.0" library/app:1.0)
app=$(ref_digest app)
check_image "$VIEW/library/app@$app" "library/app@$app" >/dev/null
log "library/app:1.0 and library/app@$app: manifest.json, config.json and $n layers equal the registry's"
# rootfs/ equals what umoci unpacks: names, types, modes, owners, sizes, bytes, links, file times.
umoci unpack --image "$WORK/oci:app" "$WORK/unpacked" >/dev/null
cat >"$WORK/compare.py" <<'PY'
import hashlib, os, stat, sys
def scan(root):
    out, inodes = {}, {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel, st = os.path.relpath(p, root), os.lstat(p)
            info = [stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid]
            if stat.S_ISREG(st.st_mode):
                info += [st.st_size, hashlib.sha256(open(p, "rb").read()).hexdigest(), st.st_nlink, int(st.st_mtime)]
                inodes.setdefault(st.st_ino, []).append(rel)
            if stat.S_ISLNK(st.st_mode):
                info += [os.readlink(p)]
            out[rel] = info
    return out, sorted(sorted(v) for v in inodes.values() if len(v) > 1)
(want, want_links), (got, got_links) = scan(sys.argv[1]), scan(sys.argv[2])
bad = [f"{k}: umoci {want.get(k)} view {got.get(k)}" for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
if want_links != got_links:
    bad.append(f"hard links: umoci {want_links} view {got_links}")
if bad:
    sys.exit(f"[view] FAIL: {sys.argv[2]} differs from {sys.argv[1]}:\n  " + "\n  ".join(bad[:20]))
print(f"[view] {sys.argv[2]} equals {sys.argv[1]}: {len(want)} entries, {len(want_links)} hard-link groups")
PY
python3 "$WORK/compare.py" "$WORK/unpacked/rootfs" "$VIEW/library/app:1.0/rootfs"
# The same image with its layers recompressed as zstd (two frames each, as seekable zstd makes):
# layers/ holds .tar.zst, rootfs/ the same tree.
python3 - "$WORK/oci" app app-zstd <<'PY'
import gzip, hashlib, json, os, subprocess, sys
oci, src, dst = sys.argv[1:4]
def blob(d): return os.path.join(oci, "blobs/sha256", d[7:])
def put(b):
    h = "sha256:" + hashlib.sha256(b).hexdigest()
    open(blob(h), "wb").write(b)
    return h
index = json.load(open(os.path.join(oci, "index.json")))
desc = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == src][0]
m = json.load(open(blob(desc["digest"])))
for l in m["layers"]:
    tar = gzip.decompress(open(blob(l["digest"]), "rb").read())
    half = len(tar) // 2
    z = b"".join(subprocess.run(["zstd", "-q", "-c"], input=part, capture_output=True, check=True).stdout
                 for part in (tar[:half], tar[half:]))
    l["digest"], l["size"], l["mediaType"] = put(z), len(z), "application/vnd.oci.image.layer.v1.tar+zstd"
mb = json.dumps(m).encode()
index["manifests"].append({"mediaType": desc["mediaType"], "digest": put(mb), "size": len(mb),
                           "annotations": {"org.opencontainers.image.ref.name": dst}})
json.dump(index, open(os.path.join(oci, "index.json"), "w"))
PY
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:app-zstd" "docker://$REG/library/app:zstd"
t0=$(date +%s%N)
until [ -d "$VIEW/library/app:zstd/layers" ]; do
  [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 5000 ] || die "library/app:zstd did not show"
  sleep 0.05
done
[ "$(ls "$VIEW/library/app:zstd/layers" | grep -c '\.tar\.zst$')" -ge 1 ] || die "no .tar.zst layer: $(ls "$VIEW/library/app:zstd/layers")"
python3 "$WORK/compare.py" "$WORK/unpacked/rootfs" "$VIEW/library/app:zstd/rootfs"
root=$VIEW/library/app:1.0/rootfs
[ "$(ls "$root/var/cache")" = c ] || die "the opaque directory var/cache holds $(ls "$root/var/cache")"
[ ! -e "$root/data/old" ] && [ "$(cat "$root/etc/motd")" = v2 ] || die "a whiteout or an overwrite was not applied"
[ "$(stat -c '%h %i' "$root/data/blob.bin")" = "$(stat -c '%h %i' "$root/data/hard.bin")" ] || die "hard links differ"
[ -d "$VIEW/team/tools/multi:latest/linux-amd64" ] && [ -d "$VIEW/team/tools/multi:latest/linux-arm64-v8" ] ||
  die "the index shows $(ls "$VIEW/team/tools/multi:latest")"
skopeo inspect --raw --tls-verify=false "docker://$REG/team/tools/multi:latest" | cmp -s - "$VIEW/team/tools/multi:latest/index.json" ||
  die "index.json differs from the registry's"
check_image "$VIEW/team/tools/multi:latest/linux-arm64-v8" "team/tools/multi@$(ref_digest arm)" >/dev/null
log "team/tools/multi:latest: index.json and the linux-arm64-v8 image equal the registry's"

# --- read-only ---------------------------------------------------------------------------------
for op in "touch $VIEW/library/new" "cp /etc/hostname $VIEW/library/app:1.0/manifest.json" "rm $VIEW/library/app:1.0/config.json" "mkdir $VIEW/x"; do
  if out=$(eval "$op" 2>&1); then die "'$op' succeeded on the view"; fi
  case "$out" in *"Read-only file system"*) ;; *) die "'$op': $out (want EROFS)" ;; esac
done
log "writes to the view fail with EROFS"

# --- live: a push and a delete show within a second ------------------------------------------------
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:arm" "docker://$REG/library/app:arm"
t0=$(date +%s%N)
until [ -f "$VIEW/library/app:arm/manifest.json" ]; do
  [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 5000 ] || die "the pushed tag library/app:arm did not show in 5 s"
  sleep 0.05
done
log "a pushed tag showed in the view after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
arm=$(ref_digest arm)
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$REG/v2/library/app/manifests/$arm")
[ "$code" = 202 ] || die "DELETE manifest answered $code"
t0=$(date +%s%N)
while [ -e "$VIEW/library/app@$arm" ] || [ -e "$VIEW/library/app:arm" ]; do
  [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 5000 ] || die "the deleted manifest still shows after 5 s"
  sleep 0.05
done
log "a deleted manifest left the view after $(( ($(date +%s%N) - t0) / 1000000 )) ms"

# --- a blob that does not match its digest reads EIO ---------------------------------------------
cfg=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["digest"][7:])' "$(blob "$app")")
data=$MNT/registry/docker/registry/v2/blobs/sha256/${cfg:0:2}/$cfg/data
cp "$data" "$WORK/config.saved"
printf 'X' | dd of="$data" bs=1 seek=5 conv=notrunc status=none
sleep 1  # the kernel's attribute cache of the view
if out=$(cat "$VIEW/library/app:1.0/config.json" 2>&1 >/dev/null); then die "a tampered config read without error"; fi
case "$out" in *"Input/output error"*) ;; *) die "tampered config: $out (want EIO)" ;; esac
cp "$WORK/config.saved" "$data"
log "a blob changed behind the registry's back reads EIO"

# --- skopeo and umoci write and read OCI image layouts on the mount ------------------------------
mkdir -p "$MNT/layouts"
skopeo copy --quiet "oci:$WORK/oci:app" "oci:$MNT/layouts/app:1.0"
umoci unpack --image "$MNT/layouts/app:1.0" "$WORK/unpacked-mnt" >/dev/null
python3 "$WORK/compare.py" "$WORK/unpacked/rootfs" "$WORK/unpacked-mnt/rootfs"
log "skopeo copied the image into an OCI layout on the mount; umoci unpacked it from there, identical"
t0=$(date +%s%N)
until [ -f "$VIEW/oci/layouts/app:1.0/manifest.json" ]; do
  [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 5000 ] || die "the OCI layout did not show as oci/layouts/app:1.0: $(ls -R "$VIEW/oci" 2>&1 | head)"
  sleep 0.05
done
layout_manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$MNT/layouts/app/index.json")
cmp -s "$VIEW/oci/layouts/app:1.0/manifest.json" "$MNT/layouts/app/blobs/sha256/${layout_manifest#sha256:}" ||
  die "oci/layouts/app:1.0/manifest.json differs from the layout's blob"
python3 "$WORK/compare.py" "$WORK/unpacked/rootfs" "$VIEW/oci/layouts/app:1.0/rootfs"
log "the OCI layout shows in the view as oci/layouts/app:1.0, its rootfs/ equal to umoci unpack"

# --- inspect --image and cat on the mounted store ----------------------------------------------------
"$CMKFS" inspect "$MNT" --registry-root /registry --image library/app:1.0 --json >"$WORK/inspect-live.json"
skopeo inspect --tls-verify=false "docker://$REG/library/app:1.0" >"$WORK/skopeo.json"
python3 - "$WORK/inspect-live.json" "$WORK/skopeo.json" "$WORK/oci/blobs/sha256" <<'PY'
import json, os, sys
got, want = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ("Digest", "Layers", "Architecture", "Os", "Labels", "Env", "Created"):
    if got.get(k) != want.get(k):
        sys.exit(f"[view] FAIL: inspect --image {k}: {got.get(k)!r}, skopeo inspect {want.get(k)!r}")
sizes = [os.path.getsize(os.path.join(sys.argv[3], d[7:])) for d in want["Layers"]]
if [l["Size"] for l in got["LayersData"]] != sizes:
    sys.exit(f"[view] FAIL: inspect --image layer sizes {got['LayersData']}, blobs {sizes}")
PY
"$CMKFS" cat "$MNT" "registry/docker/registry/v2/repositories/library/app/_manifests/tags/1.0/current/link" |
  grep -qx "$app" || die "cmkfs cat of a tag link on the mount"
log "inspect --image on the mount agrees with skopeo inspect (digest, layers and sizes, platform, labels, env, created)"

# --- detach; the store serves on; then the same view offline ---------------------------------------
"$CMKFS" umount "$VIEW" >/dev/null
! grep -q " $VIEW " /proc/mounts || die "the view is still mounted"
[ -f "$MNT/registry/docker/registry/v2/blobs/sha256/${app:7:2}/${app:7}/data" ] || die "the mount stopped with its view"
stop_registry
"$CMKFS" umount "$MNT" >/dev/null
"$CMKFS" view --store "$STORE" "$VIEW" --log-file "$WORK/view.log"
cmp -s "$VIEW/library/app:1.0/manifest.json" "$(blob "$app")" || die "the offline view's manifest.json differs"
[ "$(ls "$VIEW/library/app:1.0/layers" | wc -l)" = "$n" ] || die "the offline view shows other layers"
"$CMKFS" umount "$VIEW" >/dev/null
"$CMKFS" fsck "$STORE" >/dev/null
log "cmkfs view --store shows the same images offline; fsck clean afterwards"

# --- offline: inspect --image, cat, export ----------------------------------------------------------
"$CMKFS" inspect "$STORE" --registry-root registry --image "library/app@$app" >"$WORK/inspect.txt"
grep -q "^Digest: *$app" "$WORK/inspect.txt" && grep -q "^Tags: *1.0" "$WORK/inspect.txt" &&
  grep -q "data key generation 1" "$WORK/inspect.txt" && grep -q "^Label: *org.example.purpose=test" "$WORK/inspect.txt" ||
  die "inspect --image offline: $(cat "$WORK/inspect.txt")"
"$CMKFS" inspect "$STORE" --registry-root registry --image team/tools/multi:latest --json |
  python3 -c 'import json,sys; j=json.load(sys.stdin); assert sorted(m["Platform"] for m in j["Manifests"]) == ["linux-amd64", "linux-arm64-v8"], j' ||
  die "inspect --image of the index"
"$CMKFS" cat "$STORE" "registry/docker/registry/v2/blobs/sha256/${app:7:2}/${app:7}/data" | cmp -s - "$(blob "$app")" ||
  die "cmkfs cat of the manifest blob, offline"
"$CMKFS" export "$STORE" / "$WORK/exported" >/dev/null
python3 - "$WORK/exported/registry/docker/registry/v2/blobs/sha256" <<'PY'
import hashlib, os, sys
n = 0
for d, _, files in os.walk(sys.argv[1]):
    if "data" in files:
        h = hashlib.sha256(open(os.path.join(d, "data"), "rb").read()).hexdigest()
        if h != os.path.basename(d):
            sys.exit(f"[view] FAIL: exported blob {d} hashes to {h}")
        n += 1
if n < 6:
    sys.exit(f"[view] FAIL: only {n} blobs exported")
print(f"[view] export: {n} blobs, each matching its digest")
PY
umoci unpack --image "$WORK/exported/layouts/app:1.0" "$WORK/unpacked-exported" >/dev/null
python3 "$WORK/compare.py" "$WORK/unpacked/rootfs" "$WORK/unpacked-exported/rootfs"
log "offline inspect --image, cat and export read the unmounted store"

# --- a view in use does not hold up the mount's unmount ----------------------------------------------
"$CMKFS" mount "$STORE" "$MNT" --log-file "$WORK/cmkfs.log"
"$CMKFS" view "$MNT" "$VIEW" >/dev/null
(cd "$VIEW/library" && exec sleep 60) &
SLEEPER=$!
sleep 0.5
t0=$(date +%s%N)
"$CMKFS" umount "$MNT" >/dev/null
took=$(( ($(date +%s%N) - t0) / 1000000 ))
kill "$SLEEPER" 2>/dev/null; wait "$SLEEPER" 2>/dev/null || true
[ "$took" -lt 10000 ] || die "unmounting the store with a process inside its view took $took ms"
! grep -q " $VIEW " /proc/mounts || die "the view outlived its mount"
log "the mount unmounted in $took ms with a process inside its view; the view went with it"
log "PASS"
