// An HTTPS listener for a console or the vault, and serving it until the process is told to stop.
#pragma once

#include <httplib.h>

#include <functional>
#include <memory>
#include <string>

#include "crypto/base/status.h"

namespace cmkfs::web {

struct BoundServer {
  std::unique_ptr<httplib::SSLServer> server;
  int port = 0;  // the one bound (a free one when 0 was asked for)
};

// An HTTPS server with the certificate of `dir` (made 0700, ensure_tls_files with `ca_name`),
// bound to HOST:PORT (0: any free port) with SO_REUSEADDR only: httplib's default SO_REUSEPORT
// would let a second server share the port. Request bodies are capped at `max_body` bytes.
// EADDRINUSE when the address cannot be had.
Result<BoundServer> bind_https(const std::string& dir, const std::string& host, int port, const std::string& ca_name,
                               size_t max_body);

// Serves until SIGTERM or SIGINT, taken by one thread with sigwait, which stops the server
// cleanly. `ready` runs once the signals are blocked, before the first request. False when the
// server stopped with an error.
bool serve_until_signalled(httplib::Server& server, const std::function<void()>& ready);

}  // namespace cmkfs::web
