#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <vector>

#include "keyclient/http.h"

namespace cmkfs::keyclient {
namespace {

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

struct Body {
  std::string* out;
  size_t limit;
};

size_t on_body(char* data, size_t size, size_t n, void* arg) {
  auto* body = static_cast<Body*>(arg);
  if (body->out->size() + size * n > body->limit) return 0;  // curl fails with CURLE_WRITE_ERROR
  body->out->append(data, size * n);
  return size * n;
}

size_t on_header(char* data, size_t size, size_t n, void* out) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(out);
  if (headers->size() > 100 || size * n > 16384) return 0;  // curl fails: a reply this odd is garbage
  std::string line(data, size * n);
  if (line.compare(0, 5, "HTTP/") == 0) headers->clear();  // a new response (after a 1xx): its headers only
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    value.erase(0, value.find_first_not_of(" \t"));
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    (*headers)[name] = value;
  }
  return size * n;
}

// Handles are kept between requests (up to kIdleHandles), and with them their connections: an
// S3 object store sends one request per stripe.
class CurlTransport : public HttpTransport {
 public:
  explicit CurlTransport(HttpOptions o) : options_(std::move(o)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  Result<HttpResponse> send(const HttpRequest& req) override {
    std::unique_ptr<CURL, CurlFree> curl = take_handle();
    if (!curl) return Status::IOError(ENOMEM, "curl_easy_init failed");
    CURL* c = curl.get();
    HttpResponse resp;
    Body body{&resp.body, options_.max_reply_bytes};
    std::unique_ptr<curl_slist, SlistFree> headers;
    for (const auto& [k, v] : req.headers) headers.reset(curl_slist_append(headers.release(), (k + ": " + v).c_str()));
    headers.reset(curl_slist_append(headers.release(), "Expect:"));  // no 100-continue round trip
    curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");  // callers decide which (vault_client.h)
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);           // never follow a redirect with a token
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");                 // tokens never go through a proxy
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_seconds * 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(options_.timeout_seconds, 5.0) * 1000));
    if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_NOBODY, req.method == "HEAD" ? 1L : 0L);
    if (req.method != "GET" && req.method != "DELETE" && req.method != "HEAD") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp.headers);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      if (rc == CURLE_WRITE_ERROR) return Status(EBADMSG, "reply from " + host_of(req.url) + " is too large");
      int code = rc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT : EAGAIN;
      return Status(code, std::string(curl_easy_strerror(rc)) + " (" + host_of(req.url) + ")");
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
    give_back(std::move(curl));
    return resp;
  }

 private:
  // For error messages: never the query string (it may carry identities).
  static std::string host_of(const std::string& url) {
    auto start = url.find("://");
    start = start == std::string::npos ? 0 : start + 3;
    return url.substr(0, url.find('/', start));
  }
  std::unique_ptr<CURL, CurlFree> take_handle() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        std::unique_ptr<CURL, CurlFree> c = std::move(idle_.back());
        idle_.pop_back();
        curl_easy_reset(c.get());  // options, not the connection
        return c;
      }
    }
    return std::unique_ptr<CURL, CurlFree>(curl_easy_init());
  }
  // Only a handle whose request completed: a failed one's connection is dropped with it.
  void give_back(std::unique_ptr<CURL, CurlFree> c) {
    std::lock_guard lock(mu_);
    if (idle_.size() < kIdleHandles) idle_.push_back(std::move(c));
  }

  static constexpr size_t kIdleHandles = 8;
  HttpOptions options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<CURL, CurlFree>> idle_;
};

}  // namespace

std::unique_ptr<HttpTransport> make_curl_transport(const HttpOptions& options) {
  return std::make_unique<CurlTransport>(options);
}

}  // namespace cmkfs::keyclient
