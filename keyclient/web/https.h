// An HTTPS listener for a console or the vault, and serving it until the process is told to stop.
#pragma once

#include <httplib.h>

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "crypto/base/status.h"

namespace cmkfs::web {

class ConnectionLimit;

struct BoundServer {
  std::shared_ptr<ConnectionLimit> limit;  // what each client's connections count against
  std::unique_ptr<httplib::SSLServer> server;
  int port = 0;  // the one bound (a free one when 0 was asked for)
};

// An HTTPS server with the certificate of `dir` (made 0700, ensure_tls_files with `ca_name`),
// bound to HOST:PORT (0: any free port) with SO_REUSEADDR only: httplib's default SO_REUSEPORT
// would let a second server share the port. Request bodies are capped at `max_body` bytes, and
// one that cannot be bounded before it is read is refused (unbounded_body). Each client's
// connections are limited (connection_limit.h), with threads kept for the `trusted` local users;
// refusals are logged on stderr after `name`. EADDRINUSE when the address cannot be had.
Result<BoundServer> bind_https(const std::string& dir, const std::string& host, int port, const std::string& ca_name,
                               size_t max_body, const std::string& name, const std::set<uid_t>& trusted);

// Why a request's body cannot be bounded before it is read, with the status to answer; nullopt
// when it can. httplib (0.11) caps a body only by its Content-Length: one sent chunked, or with
// neither (read to the connection's end), is read whole whatever its size, and a compressed one
// is inflated without a bound. bind_https refuses these before routing; a server with a
// pre-routing handler of its own calls this first.
std::optional<std::pair<int, std::string>> unbounded_body(const httplib::Request& q, size_t max_body);

// Serves until SIGTERM or SIGINT, taken by one thread with sigwait, which stops the server
// cleanly. `ready` runs once the signals are blocked, before the first request. False when the
// server stopped with an error.
bool serve_until_signalled(httplib::Server& server, const std::function<void()>& ready);

}  // namespace cmkfs::web
