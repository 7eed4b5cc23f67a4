// HTTP(S) for the vault client and the S3 object store: one small interface, so tests can put a
// scripted transport in place of the network (timeouts, garbage, 5xx) and the clients can be
// tested without a server. Bodies are bytes (a std::string may hold any).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
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
  size_t max_reply_bytes = 1 << 20;  // a larger reply body is refused (EBADMSG), not buffered
};

std::unique_ptr<HttpTransport> make_curl_transport(const HttpOptions& options);

// A query or form value: everything but RFC 3986's unreserved characters (and `also_plain`) as
// %XX; with `every_byte`, every byte (a binary value such as a PKCS#11 id).
inline std::string percent_encode(std::string_view s, std::string_view also_plain = {}, bool every_byte = false) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    bool plain = !every_byte && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                 c == '-' || c == '_' || c == '.' || c == '~' || also_plain.find(char(c)) != std::string_view::npos);
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace cmkfs::keyclient
