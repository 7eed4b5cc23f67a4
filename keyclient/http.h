// HTTP(S) for the vault client: one small interface, so tests can put a scripted transport in
// place of the network (timeouts, garbage, 5xx) and the client can be tested without a server.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "crypto/base/status.h"

namespace cmkfs::keyclient {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Any HTTP status is a response; only a failure to get one (refused, timeout, TLS) is an
  // error: EAGAIN, or ETIMEDOUT for a timeout.
  virtual Result<HttpResponse> send(const HttpRequest& request) = 0;
};

struct HttpOptions {
  std::string ca_file;        // extra CA for the server certificate; empty: the system's
  double timeout_seconds = 10;
};

std::unique_ptr<HttpTransport> make_curl_transport(const HttpOptions& options);

}  // namespace cmkfs::keyclient
