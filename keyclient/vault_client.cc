#include "keyclient/vault_client.h"

#include <arpa/inet.h>

#include <map>
#include <regex>
#include <thread>

#include "crypto/base/json_parse.h"
#include "keyclient/base64url.h"

namespace cmkfs::keyclient {

using nlohmann::json;

namespace {

constexpr const char* kApiVersion = "7.4";

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool transient_status(long status) { return status == 429 || status == 408 || status >= 500; }

// The error a non-2xx Key Vault reply stands for.
Status classify(const HttpResponse& r, const std::string& what) {
  json j = parse_untrusted_json(r.body);
  std::string code, inner, message;
  // Strings only, bounded: a reply is hostile and must not throw or flood a log line.
  auto text = [](const json& o, const char* key) {
    return o.is_object() && o.contains(key) && o[key].is_string() ? o[key].get<std::string>().substr(0, 300) : std::string();
  };
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    code = text(j["error"], "code");
    message = text(j["error"], "message");
    if (j["error"].contains("innererror")) inner = text(j["error"]["innererror"], "code");
  }
  for (char& ch : message) {
    if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';  // one log line, whatever the reply held
  }
  std::string detail = what + ": HTTP " + std::to_string(r.status) + (code.empty() ? "" : " " + code) +
                       (inner.empty() ? "" : "/" + inner) + (message.empty() ? "" : ": " + message);
  if (r.status == 403 && inner == "ForbiddenByFirewall") {
    // Not the key, not the policy: the vault's network rules. Inaccessible all the same.
    return Status(EACCES, "the key vault's firewall refuses this host (" + what +
                              "): add a network rule for its address, or use an identity the vault trusts ([system] "
                              "with bypass for trusted services); " + message);
  }
  if (r.status == 401 || (r.status == 403 && inner != "KeyDisabled")) return Status(EACCES, detail);
  if (r.status == 403) return Status(EKEYREVOKED, detail);
  if (r.status == 404) return Status(ENOKEY, detail);
  if (r.status == 400) return Status(EKEYREJECTED, detail);
  if (transient_status(r.status)) return Status(EAGAIN, detail);
  return Status(EBADMSG, detail);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// scheme://host[:port]/... -> {scheme, host (lower-cased, no brackets), port or ""}; nullopt when
// malformed or carrying user info.
struct Origin {
  std::string scheme, host, port;
};
std::optional<Origin> origin_of(const std::string& url) {
  static const std::regex re(R"(^([a-zA-Z][a-zA-Z0-9+.-]*)://(\[[0-9a-fA-F:.]+\]|[^/:?#@\[\]]+)(?::([0-9]{1,5}))?(?:[/?#].*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) return std::nullopt;
  std::string host = lower(m[2]);
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  return Origin{lower(m[1]), host, m[3]};
}

// The key="value" pairs of a WWW-Authenticate header ("Bearer a="x", b="y"").
std::map<std::string, std::string> challenge_params(const std::string& header) {
  static const std::regex pair(R"(([A-Za-z_]+)=\"([^\"]*)\")");
  std::map<std::string, std::string> out;
  for (auto it = std::sregex_iterator(header.begin(), header.end(), pair); it != std::sregex_iterator(); ++it) {
    out[lower((*it)[1])] = (*it)[2];
  }
  return out;
}

}  // namespace

std::optional<KeyId> KeyId::parse(const std::string& url) {
  static const std::regex re(R"(^(https://[^/?#@]+)/keys/([0-9a-zA-Z-]+)(?:/([0-9a-zA-Z]*))?/?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re) || !origin_of(url)) return std::nullopt;
  return KeyId{lower(m[1]), m[2], m[3]};
}

std::string KeyId::host() const { return origin_of(vault)->host; }

Status check_identity_endpoint(const std::string& url) {
  auto o = origin_of(url);
  if (!o) return Status::InvalidArgument("identity endpoint '" + url + "' is not a URL");
  if (o->scheme == "https") return Status::Ok();
  in_addr a4{};
  bool loopback = o->host == "localhost" || o->host == "::1" ||
                  (inet_pton(AF_INET, o->host.c_str(), &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127);
  if (o->scheme == "http" && (o->host == "169.254.169.254" || loopback)) return Status::Ok();
  return Status::InvalidArgument("identity endpoint '" + url +
                                 "' would carry tokens in clear: use https, or http only to the link-local "
                                 "169.254.169.254 or a loopback address");
}

bool challenge_resource_matches(const std::string& resource, const std::string& host) {
  auto o = origin_of(resource);
  if (!o || o->scheme != "https" || o->host.empty()) return false;
  const std::string& r = o->host;
  if (host == r) return true;
  // A parent domain, never a bare top-level one ("net" would match every vault in it).
  return r.find('.') != std::string::npos && host.size() > r.size() &&
         host.compare(host.size() - r.size(), r.size(), r) == 0 && host[host.size() - r.size() - 1] == '.';
}

VaultClient::VaultClient(std::unique_ptr<HttpTransport> transport, VaultClientOptions options)
    : transport_(std::move(transport)), options_(std::move(options)) {}

Result<HttpResponse> VaultClient::send_with_retries(const HttpRequest& req) {
  auto backoff = options_.first_backoff;
  for (int attempt = 1;; ++attempt) {
    ++calls_;
    auto resp = transport_->send(req);
    bool retry = !resp.ok() || transient_status(resp->status);
    if (!retry || attempt >= options_.max_attempts) return resp;
    auto wait = backoff;
    if (resp.ok() && resp->headers.count("retry-after")) {
      long secs = std::strtol(resp->headers["retry-after"].c_str(), nullptr, 10);
      wait = std::min(std::chrono::milliseconds(std::max(0L, secs) * 1000), std::chrono::milliseconds(5000));
    }
    std::this_thread::sleep_for(wait);
    backoff *= 4;
  }
}

Result<std::string> VaultClient::token(const std::string& resource, bool refresh) {
  std::lock_guard<std::mutex> g(token_mu_);
  if (!refresh && resource == token_resource_ && !token_.empty() && now_seconds() < token_expires_ - 30) return token_;
  auto req = token_request(options_.credential, resource);
  if (!req.ok()) return req.status();
  auto resp = send_with_retries(*req);
  if (!resp.ok()) return Status(resp.status().code(), "token endpoint unreachable: " + resp.status().message());
  auto t = parse_token_reply(options_.credential, *resp);
  if (!t.ok()) return t.status();
  token_ = std::move(t->token);
  token_resource_ = resource;
  token_expires_ = t->expires_on;
  return token_;
}

// The resource a 401 challenge names, checked against the vault's host; EACCES when it has none
// or names another service (no token is asked for it).
Result<std::string> VaultClient::challenged_resource(const HttpResponse& r, const std::string& host) {
  auto it = r.headers.find("www-authenticate");
  auto params = challenge_params(it == r.headers.end() ? "" : it->second);
  std::string resource = params.count("resource") ? params["resource"] : params["scope"];
  const std::string suffix = "/.default";
  if (resource.size() > suffix.size() && resource.compare(resource.size() - suffix.size(), suffix.size(), suffix) == 0) {
    resource.resize(resource.size() - suffix.size());
  }
  while (!resource.empty() && resource.back() == '/') resource.pop_back();
  if (resource.empty()) return Status(EACCES, "key vault " + host + " answered 401 without a usable challenge");
  if (!challenge_resource_matches(resource, host)) {
    return Status(EACCES, "key vault " + host + " asked for a token for '" + resource +
                              "', which is not its own domain: no token sent");
  }
  return resource;
}

Result<json> VaultClient::call(const std::string& method, const std::string& url, const json& body) {
  auto origin = origin_of(url);
  if (!origin || origin->scheme != "https") return Status::InvalidArgument("a key vault is reached over https only");
  const std::string& host = origin->host;
  std::string resource;
  {
    std::lock_guard<std::mutex> g(token_mu_);
    resource = resource_;
  }
  // At most: one request without a token (the challenge), one with the cached token, one with a
  // fresh token after a 401 (the cached one may have just expired).
  bool refresh = false;
  for (int attempt = 0;; ++attempt) {
    HttpRequest req{method, url + "?api-version=" + kApiVersion, {}, ""};
    // Until the vault has said which resource its tokens are for, it gets no token and no body.
    bool with_token = !resource.empty();
    if (with_token) {
      auto tok = token(resource, refresh);
      if (!tok.ok()) return tok.status();
      req.headers.push_back({"Authorization", "Bearer " + *tok});
      if (!body.is_null()) {
        req.body = body.dump();
        req.headers.push_back({"Content-Type", "application/json"});
      }
    }
    auto resp = send_with_retries(req);
    if (!resp.ok()) return Status(resp.status().code(), "key vault unreachable: " + resp.status().message());
    if (resp->status == 401 && !refresh && attempt < 2) {
      auto challenged = challenged_resource(*resp, host);
      if (!challenged.ok()) return challenged.status();
      refresh = with_token;
      resource = *challenged;
      std::lock_guard<std::mutex> g(token_mu_);
      resource_ = resource;
      continue;
    }
    if (resource.empty()) {
      if (resp->status >= 200 && resp->status < 300) {
        return Status(EBADMSG, "key vault " + host + " answered a request without a token");
      }
      return classify(*resp, method + " " + url);
    }
    if (resp->status < 200 || resp->status >= 300) return classify(*resp, method + " " + url);
    json j = parse_untrusted_json(resp->body);
    if (j.is_discarded() || !j.is_object()) return Status(EBADMSG, "key vault: malformed reply to " + method + " " + url);
    return j;
  }
}

Result<json> VaultClient::get_key(const KeyId& id) {
  auto j = call("GET", id.str(), nullptr);
  if (!j.ok()) return j;
  if (!j->contains("key") || !(*j)["key"].is_object() || !(*j)["key"].contains("kid")) {
    return Status(EBADMSG, "key vault: reply to get key has no key");
  }
  return j;
}

Result<VaultClient::Wrapped> VaultClient::wrap(const KeyId& id, crypto::Bytes key) {
  auto j = call("POST", id.str() + "/wrapkey", json{{"alg", "RSA-OAEP-256"}, {"value", base64url_encode(key)}});
  if (!j.ok()) return j.status();
  auto value = j->contains("value") && (*j)["value"].is_string() ? base64url_decode((*j)["value"].get<std::string>()) : std::nullopt;
  if (!value || !j->contains("kid") || !(*j)["kid"].is_string()) return Status(EBADMSG, "key vault: malformed wrapkey reply");
  return Wrapped{(*j)["kid"], std::move(*value)};
}

Result<crypto::SecretBytes> VaultClient::unwrap(const KeyId& id, crypto::Bytes wrapped) {
  auto j = call("POST", id.str() + "/unwrapkey", json{{"alg", "RSA-OAEP-256"}, {"value", base64url_encode(wrapped)}});
  if (!j.ok()) return j.status();
  if (!j->contains("value") || !(*j)["value"].is_string()) return Status(EBADMSG, "key vault: malformed unwrapkey reply");
  auto value = base64url_decode((*j)["value"].get<std::string>());
  if (!value) return Status(EBADMSG, "key vault: unwrapkey value is not base64url");
  crypto::SecretBytes out = crypto::SecretBytes::copy_of(*value);
  std::fill(value->begin(), value->end(), 0);
  return out;
}

}  // namespace cmkfs::keyclient
