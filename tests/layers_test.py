#!/usr/bin/env python3
"""The layering of cmkfs, checked on every source file's includes.

Each folder is one library with one job. A library may include only the libraries below it
(LAYERS), and from the fs/ libraries only their public header (PUBLIC). Nothing but crypto/
includes OpenSSL. Prints every violation and exits 1; with --graph prints the library graph
(DOT) as the includes draw it.

usage: layers_test.py REPO [--graph]
"""
import pathlib
import re
import sys

# library -> the libraries it builds on directly (what its CMake target links).
LAYERS = {
    "base": [],
    "crypto": ["base"],
    "meta": ["crypto"],
    "keyclient": ["crypto"],
    "web": ["crypto"],
    "devvault": ["keyclient", "web"],
    "store": ["meta", "keyclient"],
    "core": ["store"],
    "oci": ["crypto"],
    "view": ["core", "oci"],
    "fuse": ["view"],
    "daemon": ["fuse"],
    "admin": ["core", "oci"],
    "console": ["admin", "daemon", "web"],
    "cli": ["admin", "daemon", "console"],
}
# Folder of each library, most specific first.
FOLDERS = [
    ("crypto/base", "base"), ("crypto", "crypto"), ("meta", "meta"),
    ("keyclient/devvault", "devvault"), ("keyclient/web", "web"), ("keyclient", "keyclient"),
    ("fs/store", "store"), ("fs/core", "core"), ("fs/oci", "oci"), ("fs/view", "view"), ("fs/fuse", "fuse"),
    ("fs/daemon", "daemon"), ("fs/admin", "admin"), ("fs/console", "console"), ("fs/cli", "cli"),
]
# The contract of each fs/ library: the only header other libraries may include.
PUBLIC = {
    "store": "fs/store/store.h", "core": "fs/core/filesystem.h", "oci": "fs/oci/oci.h",
    "view": "fs/view/view.h", "fuse": "fs/fuse/fuse.h",
    "daemon": "fs/daemon/daemon.h", "admin": "fs/admin/admin.h", "console": "fs/console/console.h",
    "cli": "fs/cli/cli.h",
}
# Headers that no other library may include.
PRIVATE = {"crypto/evp_internal.h", "meta/records.h", "meta/lmdb_handles.h", "meta/batcher.h"}
# OpenSSL stays inside crypto/ (the consoles' frame also makes TLS certificates with it).
OPENSSL_ALLOWED = {"crypto", "devvault", "web"}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]', re.M)


def library_of(path):
    for folder, lib in FOLDERS:
        if path == folder or path.startswith(folder + "/"):
            return lib
    return None


def below(lib):
    """Every library `lib` may use: its layers, transitively."""
    seen, todo = set(), list(LAYERS[lib])
    while todo:
        l = todo.pop()
        if l not in seen:
            seen.add(l)
            todo.extend(LAYERS[l])
    return seen


def main():
    repo = pathlib.Path(sys.argv[1])
    problems, edges = [], set()
    sources = [p for d in ("crypto", "meta", "keyclient", "fs") for p in (repo / d).rglob("*")
               if p.suffix in (".h", ".cc")]
    for path in sorted(sources):
        rel = path.relative_to(repo).as_posix()
        lib = library_of(rel)
        if lib is None:
            problems.append(f"{rel}: in no library folder")
            continue
        for kind, inc in INCLUDE.findall(path.read_text()):
            if kind == "<":
                if inc.startswith("openssl/") and lib not in OPENSSL_ALLOWED:
                    problems.append(f"{rel}: includes <{inc}>; only crypto/ uses OpenSSL")
                continue
            target = library_of(inc)
            if target is None:
                problems.append(f'{rel}: includes "{inc}", which is in no library')
                continue
            if target == lib:
                continue
            edges.add((lib, target))
            if target not in below(lib):
                problems.append(f'{rel}: {lib} includes "{inc}" of {target}, which is not below it')
            elif target in PUBLIC and inc != PUBLIC[target]:
                problems.append(f'{rel}: includes "{inc}"; outside {target}, include {PUBLIC[target]}')
            elif inc in PRIVATE:
                problems.append(f'{rel}: includes "{inc}", internal to {target}')
    if "--graph" in sys.argv:
        print("digraph cmkfs {")
        for a, b in sorted(edges):
            print(f'  "{a}" -> "{b}";')
        print("}")
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} layering problem(s)")
        return 1
    print(f"{len(sources)} files, {len(edges)} library edges, all pointing down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
