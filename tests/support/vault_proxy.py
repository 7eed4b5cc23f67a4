#!/usr/bin/env python3
"""A TLS proxy between cmkfs and cmkfs-vault that misbehaves on demand, for fault tests.

It serves the vault's own certificate (valid for 127.0.0.1), forwards each request to the vault
and answers according to the mode in CONTROL (a file, read at every request):
  pass          forward                          latency SECONDS   forward after a delay
  stall SECONDS answer nothing for that long     reset             half a reply, then a TCP reset
  truncate      a reply shorter than it says     garbage           200 with a body that is not JSON
  429           Too Many Requests, Retry-After 1 500               a 503 with Azure's error JSON
Prints its port on stdout once listening.

usage: vault_proxy.py UPSTREAM_PORT VAULT_DIR CONTROL
"""
import http.client
import http.server
import socket
import ssl
import struct
import sys
import time

UPSTREAM, VAULT_DIR, CONTROL = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def mode():
    try:
        words = open(CONTROL).read().split()
    except OSError:
        words = []
    return (words[0] if words else "pass"), (float(words[1]) if len(words) > 1 else 0.0)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        what, arg = mode()
        if what == "stall":
            time.sleep(arg)
            self.close_connection = True
            return
        if what == "429":
            return self.reply(429, b'{"error":{"code":"Throttled","message":"slow down"}}', {"Retry-After": "1"})
        if what == "500":
            return self.reply(503, b'{"error":{"code":"ServiceUnavailable","message":"down"}}')
        if what == "garbage":
            return self.reply(200, b"{\"value\": \"not base64!!\", \"kid\": 12, ")
        if what == "latency":
            time.sleep(arg)
        ctx = ssl.create_default_context(cafile=VAULT_DIR + "/ca.pem")
        up = http.client.HTTPSConnection("127.0.0.1", UPSTREAM, context=ctx, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        up.request(self.command, self.path, body=body or None, headers=headers)
        r = up.getresponse()
        data = r.read()
        extra = {k: v for k, v in r.getheaders() if k.lower() in ("www-authenticate", "retry-after")}
        if what == "truncate":
            return self.reply(r.status, data[: len(data) // 2], extra, claimed=len(data))
        if what == "reset":
            raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
            self.wfile.write(raw + data[: len(data) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        self.reply(r.status, data, extra)

    def reply(self, status, data, headers=None, claimed=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(claimed if claimed is not None else len(data)))
        if claimed is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(VAULT_DIR + "/server.pem", VAULT_DIR + "/server.key")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
