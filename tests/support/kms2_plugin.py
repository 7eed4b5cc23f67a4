"""A Kubernetes KMS v2 plugin for tests, from keyclient/kms2/api.proto (Debian's python3-grpcio).

    /usr/bin/python3 kms2_plugin.py --socket PATH --control FILE --stubs DIR

Its keys are derived from their ids, so a restarted plugin decrypts what it encrypted before. The
control file (JSON, read on every call) says what the KMS behind it does now:
  key_id            the current key (default "kek-1")
  healthz           what Status reports (default "ok")
  revoked           key ids whose Decrypt is refused with PERMISSION_DENIED
  hang              every call waits without answering (a plugin that stops answering)
  bad_annotation    Encrypt returns an annotation key that is not a domain name
  long_key_id       Encrypt and Status return a key id over 1024 bytes
Each Decrypt must bring back the annotations its Encrypt gave, or it is refused.
"""
import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from concurrent import futures

import grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--stubs", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    import api_pb2 as pb
    import api_pb2_grpc as rpc

    def control():
        try:
            with open(args.control) as f:
                c = json.load(f)
        except (OSError, ValueError):
            c = {}
        if not isinstance(c, dict):
            c = {}
        if c.get("hang"):
            time.sleep(3600)
        key_id = c.get("key_id", "kek-1")
        if c.get("long_key_id"):
            key_id = "k" * 1025
        return c, key_id

    def stream(key_id, nonce, n):
        key = hashlib.sha256(b"test-kek:" + key_id.encode()).digest()
        return hashlib.sha256(key + nonce).digest()[:n], key

    class Plugin(rpc.KeyManagementServiceServicer):
        def Status(self, request, context):
            c, key_id = control()
            return pb.StatusResponse(version="v2", healthz=c.get("healthz", "ok"), key_id=key_id)

        def Encrypt(self, request, context):
            c, key_id = control()
            nonce = os.urandom(16)
            pad, key = stream(key_id, nonce, len(request.plaintext))
            body = nonce + bytes(a ^ b for a, b in zip(request.plaintext, pad))
            tag = hmac.new(key, body, hashlib.sha256).digest()
            name = "Bad/Annotation" if c.get("bad_annotation") else "kek.kms.cmkfs.test"
            return pb.EncryptResponse(ciphertext=body + tag, key_id=key_id, annotations={name: b"v1"})

        def Decrypt(self, request, context):
            c, _ = control()
            if request.key_id in c.get("revoked", []):
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "key " + request.key_id + " is disabled")
            if request.annotations.get("kek.kms.cmkfs.test") != b"v1":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "annotations missing")
            body, tag = request.ciphertext[:-32], request.ciphertext[-32:]
            pad, key = stream(request.key_id, body[:16], len(body) - 16)
            if not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), tag):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not encrypted by key " + request.key_id)
            return pb.DecryptResponse(plaintext=bytes(a ^ b for a, b in zip(body[16:], pad)))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rpc.add_KeyManagementServiceServicer_to_server(Plugin(), server)
    server.add_insecure_port("unix://" + args.socket)
    server.start()
    print("listening", flush=True)
    try:
        server.wait_for_termination()
    finally:
        try:
            os.unlink(args.socket)
        except OSError:
            pass


if __name__ == "__main__":
    main()
