// S3 objects for striped_object_store.cc. An S3 object is written whole, so a stripe is one
// PUT: the store's stripe is a whole number of sealed chunks (store.cc), and a chunk-aligned
// write of a whole stripe, what a sequential writer sends, is one PUT with no read. Anything
// else (a partial last chunk, a cut, an extension) reads the stripe, changes it and puts it
// back, which one writer per store (the store's lock) makes safe.
//
// No multipart uploads: a stripe is at most 64 MiB, far under a single PUT's 5 GiB, and an object
// per stripe lets a file grow, shrink and be rewritten in place. Deletes are not conditional:
// only the store's one writer deletes, and RGW (Debian's Ceph 16) has no If-Match on DELETE.
#include "fs/store/s3_object_store.h"

#include <arpa/inet.h>

#include <array>
#include <chrono>
#include <mutex>
#include <cstring>
#include <thread>

#include <pugixml.hpp>

#include "crypto/crypto.h"
#include "fs/store/private_fs.h"
#include "fs/store/s3_signer.h"
#include "fs/store/striped_object_store.h"
#include "keyclient/http.h"

namespace cmkfs::fs {
namespace {

constexpr double kTimeoutSeconds = 20;
constexpr int kAttempts = 3;
// The S3 error code of an error reply (<Error><Code>...), if it has one that reads as a code.
std::string error_code(const std::string& body) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return "";
  std::string code = doc.child("Error").child_value("Code");
  if (code.size() > 64 || code.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") !=
                              std::string::npos) {
    return "";
  }
  return code;
}

struct Endpoint {
  std::string scheme, host;  // host: the Host header, host[:port]
};

// http(s)://HOST[:PORT], HOST a DNS name (letters, digits, '-', '.'), an IPv4 address or a
// bracketed IPv6 one. The string itself is never repeated in an error: it could hold userinfo.
Result<Endpoint> parse_endpoint(const std::string& e) {
  const Status bad = Status::InvalidArgument("the S3 endpoint is not http(s)://HOST[:PORT]");
  Endpoint ep;
  size_t colon = e.find("://");
  if (colon == std::string::npos) return bad;
  ep.scheme = e.substr(0, colon);
  ep.host = e.substr(colon + 3);
  if (!ep.host.empty() && ep.host.back() == '/') ep.host.pop_back();
  if ((ep.scheme != "http" && ep.scheme != "https") || ep.host.empty() || ep.host.size() > 255) return bad;
  std::string name, port;
  if (ep.host.front() == '[') {
    size_t close = ep.host.find(']');
    if (close == std::string::npos) return bad;
    name = ep.host.substr(1, close - 1);
    in6_addr a6{};
    if (inet_pton(AF_INET6, name.c_str(), &a6) != 1) return bad;
    std::string rest = ep.host.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return bad;
    if (!rest.empty()) port = rest.substr(1);
    if (rest == ":") return bad;
  } else {
    size_t c = ep.host.find(':');
    name = ep.host.substr(0, c);
    if (c != std::string::npos) {
      port = ep.host.substr(c + 1);
      if (port.empty()) return bad;
    }
    bool ldh = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.';
    });
    if (!ldh || name.front() == '-' || name.front() == '.') return bad;
  }
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return bad;
    int p = std::stoi(port);
    if (p < 1 || p > 65535) return bad;
  }
  if (ep.scheme == "http") {
    in_addr a4{};
    in6_addr a6{};
    bool loopback = name == "localhost" || (inet_pton(AF_INET, name.c_str(), &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
                    (inet_pton(AF_INET6, name.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
    if (!loopback) return Status::InvalidArgument("plain http to an S3 endpoint only on this host (127.0.0.1, ::1); use https");
  }
  return ep;
}

class S3Client {
 public:
  S3Client(Endpoint ep, std::string region, S3Keys keys, std::string bucket, std::unique_ptr<keyclient::HttpTransport> http)
      : ep_(std::move(ep)), region_(std::move(region)), keys_(std::move(keys)), bucket_(std::move(bucket)), http_(std::move(http)) {}

  // `key` empty: the bucket itself. Retries what may pass a second time (a 5xx, a dropped
  // connection); every request here is idempotent. The body (a stripe) is moved in, not copied.
  Result<keyclient::HttpResponse> send(const std::string& method, const std::string& key,
                                       std::vector<std::pair<std::string, std::string>> query = {},
                                       std::vector<std::pair<std::string, std::string>> headers = {},
                                       std::string body = {}) {
    S3SignedRequest r{.method = method,
                      .host = ep_.host,
                      .path = "/" + bucket_ + (key.empty() ? "" : "/" + s3_uri_encode(key, true)),
                      .query = std::move(query),
                      .headers = std::move(headers),
                      .payload_sha256 = s3_payload_sha256(body)};
    keyclient::HttpRequest req{.method = method, .url = ep_.scheme + "://" + ep_.host + r.path, .headers = {},
                               .body = std::move(body)};
    for (size_t i = 0; i < r.query.size(); ++i) {
      req.url += (i == 0 ? "?" : "&") + s3_uri_encode(r.query[i].first, false) + "=" + s3_uri_encode(r.query[i].second, false);
    }
    Status last;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 << (2 * attempt)));
      req.headers = r.headers;  // signed again: the date moves
      req.headers.emplace_back("Host", ep_.host);
      for (auto& h : s3_sign(r, keys_, region_, std::time(nullptr))) req.headers.push_back(std::move(h));
      auto resp = http_->send(req);
      if (resp.ok() && resp->status < 500) return resp;
      bool again = resp.ok() || resp.status().code() != EBADMSG;  // too large: the same again
      last = resp.ok() ? failure(*resp, method, key)
                       : Status::IOError(again ? EIO : EBADMSG, "S3 " + method + " " + shown(key) + ": " + resp.status().message());
      if (!again) break;
    }
    return last;
  }

  // A reply that is no success: EACCES for a refusal, EIO otherwise, with S3's error code.
  Status failure(const keyclient::HttpResponse& resp, const std::string& method, const std::string& key) const {
    std::string code = error_code(resp.body);
    std::string what = "S3 " + method + " " + shown(key) + ": HTTP " + std::to_string(resp.status) + (code.empty() ? "" : " " + code);
    if (resp.status == 403) return Status::IOError(EACCES, what);
    return Status::IOError(EIO, what);
  }

  const std::string& bucket() const { return bucket_; }

  // HEAD of the bucket: its HTTP status (200: there, 404: missing).
  Result<long> head_bucket() {
    auto r = send("HEAD", "");
    if (!r.ok()) return Status(r.status().code(), "cannot reach S3 bucket " + bucket_ + ": " + r.status().message());
    if (r->status != 200 && r->status != 404) return failure(*r, "HEAD", "");
    return r->status;
  }

 private:
  std::string shown(const std::string& key) const { return bucket_ + (key.empty() ? "" : "/" + key); }

  Endpoint ep_;
  std::string region_;
  S3Keys keys_;
  std::string bucket_;
  std::unique_ptr<keyclient::HttpTransport> http_;
};

class S3Backend : public StripeBackend {
 public:
  S3Backend(std::unique_ptr<S3Client> client, std::string prefix, uint64_t stripe)
      : s3_(std::move(client)), prefix_(std::move(prefix)), stripe_(stripe) {}

  Result<std::optional<uint64_t>> stat(const std::string& name) override {
    auto r = s3_->send("HEAD", key(name));
    if (!r.ok()) return r.status();
    if (r->status == 404) return std::optional<uint64_t>();
    if (r->status != 200) return s3_->failure(*r, "HEAD", key(name));
    auto len = r->headers.find("content-length");
    uint64_t n = 0;
    if (len == r->headers.end() || !parse_u64(len->second, &n)) {
      return Status::IOError(EIO, "S3 HEAD " + key(name) + ": no length in the reply");
    }
    return std::optional<uint64_t>(n);
  }

  Result<size_t> read(const std::string& name, uint64_t offset, crypto::MutableBytes buf) override {
    if (buf.empty()) return size_t{0};
    std::string range = "bytes=" + std::to_string(offset) + "-" + std::to_string(offset + buf.size() - 1);
    auto r = s3_->send("GET", key(name), {}, {{"Range", range}});
    if (!r.ok()) return r.status();
    if (r->status == 404) return Status::NotFound("S3 object " + key(name) + " is missing");
    if (r->status == 416) return size_t{0};  // at or past its end
    std::string_view got = r->body;
    if (r->status == 200) {  // the range ignored: the whole object
      if (got.size() > stripe_) return Status::IOError(EIO, "S3 GET " + key(name) + ": longer than a stripe");
      got = offset < got.size() ? got.substr(offset) : std::string_view();
    } else if (r->status == 206) {
      // bytes FIRST-LAST/TOTAL: exactly what was asked, or up to the end of the object.
      uint64_t first = 0, last = 0, total = 0;
      auto cr = r->headers.find("content-range");
      bool ok = cr != r->headers.end() && parse_content_range(cr->second, &first, &last, &total) && first == offset &&
                last >= first && last - first + 1 == got.size() && got.size() <= buf.size() && total <= stripe_ &&
                (got.size() == buf.size() || last + 1 == total);
      if (!ok) return Status::IOError(EIO, "S3 GET " + key(name) + ": the reply is not the range asked for");
    } else {
      return s3_->failure(*r, "GET", key(name));
    }
    size_t n = std::min(got.size(), buf.size());
    std::memcpy(buf.data(), got.data(), n);
    return n;
  }

  Status write(const std::string& name, uint64_t offset, crypto::Bytes data, bool must_exist) override {
    std::lock_guard lock(lock_of(name));
    if (offset == 0 && data.size() == stripe_) return put(name, std::string(reinterpret_cast<const char*>(data.data()), data.size()));
    auto whole = get(name, must_exist);
    if (!whole.ok()) return whole.status();
    if (whole->size() < offset + data.size()) whole->resize(offset + data.size(), '\0');
    std::memcpy(whole->data() + offset, data.data(), data.size());
    return put(name, std::move(*whole));
  }

  Status resize(const std::string& name, uint64_t length, bool must_exist) override {
    std::lock_guard lock(lock_of(name));
    auto len = stat(name);
    if (!len.ok()) return len.status();
    if (!len->has_value() && must_exist) return missing(name);
    if (len->has_value() && **len == length) return Status::Ok();
    std::string whole;
    if (len->has_value() && **len > 0) {
      auto got = get(name, /*must_exist=*/true);
      if (!got.ok()) return got.status();
      whole = std::move(*got);
    }
    whole.resize(length, '\0');
    return put(name, std::move(whole));
  }

  // S3 answers 204 whether or not the object existed; striping needs to know (a run of missing
  // stripes is a planted one), so it asks first.
  Result<bool> remove(const std::string& name) override {
    std::lock_guard lock(lock_of(name));
    auto len = stat(name);
    if (!len.ok()) return len.status();
    if (!len->has_value()) return false;
    auto r = s3_->send("DELETE", key(name));
    if (!r.ok()) return r.status();
    if (r->status != 204 && r->status != 200 && r->status != 404) return s3_->failure(*r, "DELETE", key(name));
    return true;
  }

  // ListObjectsV2 under the prefix, a page of up to 1000 keys at a time. S3 lists keys in
  // order: keys that do not increase, or more than kMaxListed, are a reply not to follow.
  Status list(const std::function<void(const std::string&)>& fn) override {
    constexpr uint64_t kMaxListed = 10'000'000;
    std::string token, previous;
    uint64_t listed = 0, pages = 0;
    auto refuse = [&](const std::string& why) { return Status::IOError(EIO, "S3 list of " + s3_->bucket() + ": " + why); };
    for (;;) {
      if (++pages > kMaxListed / 100) return refuse("too many pages");
      std::vector<std::pair<std::string, std::string>> q{{"list-type", "2"}, {"prefix", prefix_ + "/"}};
      if (!token.empty()) q.emplace_back("continuation-token", token);
      auto r = s3_->send("GET", "", q);
      if (!r.ok()) return r.status();
      if (r->status != 200) return s3_->failure(*r, "GET (list)", "");
      pugi::xml_document doc;
      if (!doc.load_buffer(r->body.data(), r->body.size())) {
        return Status::IOError(EIO, "S3 list of " + s3_->bucket() + ": the reply is not XML");
      }
      auto result = doc.child("ListBucketResult");
      if (!result) return refuse("the reply is not a listing");
      for (auto c : result.children("Contents")) {
        std::string k = c.child_value("Key");
        if (!previous.empty() && k <= previous) return refuse("keys out of order");
        if (++listed > kMaxListed) return refuse("more than " + std::to_string(kMaxListed) + " objects");
        previous = k;
        if (k.compare(0, prefix_.size() + 1, prefix_ + "/") == 0) fn(k.substr(prefix_.size() + 1));
      }
      if (std::string(result.child_value("IsTruncated")) != "true") return Status::Ok();
      // A page that lists nothing yet says more follows: tokens could cycle without end.
      if (!result.child("Contents")) return refuse("a truncated page without keys");
      std::string next = result.child_value("NextContinuationToken");
      if (next.empty() || next == token) return refuse("a truncated page without a next token");
      token = next;
    }
  }

  bool writes_whole() const override { return true; }

  // S3 has no capacity to report: a bucket is as large as the service lets it be.
  Result<struct statvfs> statfs() override {
    struct statvfs st {};
    st.f_bsize = st.f_frsize = 4096;
    st.f_blocks = st.f_bfree = st.f_bavail = uint64_t{1} << 40;
    st.f_files = st.f_ffree = st.f_favail = uint64_t{1} << 32;
    st.f_namemax = 255;
    return st;
  }

 private:
  std::string key(const std::string& name) const { return prefix_ + "/" + name; }

  // Writes into one stripe at once (two halves of it from two FUSE workers) would each read
  // it, change their part and put it back, and the later put would undo the earlier: a stripe's
  // read-change-put holds its lock. Stripes share kLocks locks.
  std::mutex& lock_of(const std::string& name) { return locks_[std::hash<std::string>{}(name) % kLocks]; }

  Status missing(const std::string& name) const {
    return Status::IOError(EIO, "S3 object " + key(name) + " is missing below the file's last");
  }

  // The whole object; "" when missing, unless it must exist (EIO: writing it from nothing would
  // zero the chunks it held).
  Result<std::string> get(const std::string& name, bool must_exist) {
    auto r = s3_->send("GET", key(name));
    if (!r.ok()) return r.status();
    if (r->status == 404) return must_exist ? Result<std::string>(missing(name)) : Result<std::string>(std::string());
    if (r->status != 200) return s3_->failure(*r, "GET", key(name));
    if (r->body.size() > stripe_) return Status::Corruption("S3 object " + key(name) + " is longer than a stripe: not written by cmkfs");
    // A body cut short without a length to tell would be written back padded with zeros.
    auto len = r->headers.find("content-length");
    uint64_t n = 0;
    if (len == r->headers.end() || !parse_u64(len->second, &n) || n != r->body.size()) {
      return Status::IOError(EIO, "S3 GET " + key(name) + ": the reply's body is not the length it gives");
    }
    return std::move(r->body);
  }

  Status put(const std::string& name, std::string body) {
    auto r = s3_->send("PUT", key(name), {}, {{"Content-Type", "application/octet-stream"}}, std::move(body));
    if (!r.ok()) return r.status();
    if (r->status != 200) return s3_->failure(*r, "PUT", key(name));
    return Status::Ok();
  }

  // "bytes FIRST-LAST/TOTAL"
  static bool parse_content_range(const std::string& v, uint64_t* first, uint64_t* last, uint64_t* total) {
    if (v.compare(0, 6, "bytes ") != 0) return false;
    size_t dash = v.find('-', 6), slash = v.find('/', 6);
    if (dash == std::string::npos || slash == std::string::npos || dash > slash) return false;
    return parse_u64(v.substr(6, dash - 6), first) && parse_u64(v.substr(dash + 1, slash - dash - 1), last) &&
           parse_u64(v.substr(slash + 1), total);
  }

  static bool parse_u64(const std::string& s, uint64_t* out) {
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    *out = std::stoull(s);
    return true;
  }

  static constexpr size_t kLocks = 64;
  std::unique_ptr<S3Client> s3_;
  std::string prefix_;
  uint64_t stripe_;
  std::array<std::mutex, kLocks> locks_;
};

// `http`: the transport to use (tests script one); null: curl to the endpoint, replies bounded
// by `max_reply`.
Result<std::unique_ptr<S3Client>> connect(const ObjectsConfig& config, size_t max_reply,
                                          std::unique_ptr<keyclient::HttpTransport> http = nullptr) {
  auto ep = parse_endpoint(config.endpoint);
  if (!ep.ok()) return ep.status();
  if (config.credentials.empty()) return Status::InvalidArgument("no S3 credentials file (--s3-credentials)");
  auto text = read_secret_file(config.credentials);
  if (!text.ok()) return text.status();
  auto keys = parse_s3_keys(*text);
  crypto::wipe_memory(text->data(), text->size());
  if (!keys.error.empty()) return Status::InvalidArgument(config.credentials + ": " + keys.error);
  if (!http) {
    http = keyclient::make_curl_transport({.ca_file = config.ca, .timeout_seconds = kTimeoutSeconds, .max_reply_bytes = max_reply});
  }
  return std::make_unique<S3Client>(std::move(*ep), config.region, std::move(keys.keys), config.pool, std::move(http));
}

}  // namespace

Status check_s3_endpoint(const std::string& endpoint) { return parse_endpoint(endpoint).status(); }

Result<std::unique_ptr<ObjectStore>> open_s3_object_store(const ObjectsConfig& config,
                                                          std::unique_ptr<keyclient::HttpTransport> transport) {
  // The largest reply: a whole stripe, or a page of a listing.
  auto client = connect(config, std::max<size_t>(config.object_size, 4 << 20) + 4096, std::move(transport));
  if (!client.ok()) return client.status();
  auto there = (*client)->head_bucket();
  if (!there.ok()) return there.status();
  if (*there == 404) return Status::IOError(ENOENT, "S3 bucket " + config.pool + " does not exist");
  return make_striped_object_store(std::make_unique<S3Backend>(std::move(*client), config.ns, config.object_size),
                                   config.object_size);
}

Status create_s3_bucket(const ObjectsConfig& config, std::unique_ptr<keyclient::HttpTransport> transport) {
  auto client = connect(config, 1 << 20, std::move(transport));
  if (!client.ok()) return client.status();
  auto there = (*client)->head_bucket();
  if (!there.ok() || *there == 200) return there.status();
  // us-east-1 is the default, and AWS refuses it named; every other region must be named.
  std::string body;
  if (!config.region.empty() && config.region != "us-east-1") {
    body = "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>" +
           config.region + "</LocationConstraint></CreateBucketConfiguration>";
  }
  auto r = (*client)->send("PUT", "", {}, {}, std::move(body));
  if (!r.ok()) return r.status();
  if (r->status == 200 || error_code(r->body) == "BucketAlreadyOwnedByYou") return Status::Ok();
  return (*client)->failure(*r, "PUT (create bucket)", "");
}

}  // namespace cmkfs::fs
