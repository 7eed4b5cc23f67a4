#!/usr/bin/env python3
"""Writes an OCI image layout of COUNT different images of about MIB MiB each, for the
concurrent-client benchmark: each image has LAYERS uncompressed tar layers holding random bytes
(so no client spends its time in gzip), a config and a manifest, tagged img1 ... imgCOUNT.

usage: make_oci_images.py LAYOUT COUNT MIB [LAYERS=4]
"""
import hashlib
import io
import json
import os
import sys
import tarfile


def put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def layer(size, seed):
    payload = os.urandom(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/blob-{seed}")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def main():
    layout, count, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    layers = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    manifests = []
    for i in range(1, count + 1):
        descs, diff_ids = [], []
        for k in range(layers):
            data = layer(mib * 1024 * 1024 // layers, f"{i}-{k}")
            d = put_blob(layout, data)
            diff_ids.append(d["digest"])
            descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **d})
        config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "config": {}}
        cfg = put_blob(layout, json.dumps(config).encode())
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg}, "layers": descs}
        m = put_blob(layout, json.dumps(manifest).encode())
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **m,
                          "annotations": {"org.opencontainers.image.ref.name": f"img{i}"}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": manifests}, f)


if __name__ == "__main__":
    main()
