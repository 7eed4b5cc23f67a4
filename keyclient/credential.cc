#include "keyclient/credential.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "crypto/certificate.h"
#include "crypto/crypto.h"
#include "crypto/base/hex.h"
#include "keyclient/base64url.h"
#include "keyclient/host_path.h"
#include "keyclient/vault_client.h"

namespace cmkfs::keyclient {
namespace {

using nlohmann::json;

constexpr size_t kMaxSecretFile = 64 << 10;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A credential file: regular, bounded, never a FIFO that would block; a secret's file is not a
// link and is private to its owner. The federated token file may be a link: Kubernetes projects
// it as one into ..data/, and it is no secret of the host's (a short-lived assertion). A file
// that cannot be opened for a reason other than permissions (mid-swap by the kubelet, out of
// descriptors) is an outage, not a refusal.
Result<std::string> read_credential_file(const std::string& path, const char* what, bool private_only = true) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | (private_only ? O_NOFOLLOW : 0));
  if (fd < 0) {
    int err = errno;
    return Status(err == EACCES || err == EPERM ? EACCES : EAGAIN,
                  std::string("cannot open the ") + what + " " + path + ": " + std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > static_cast<off_t>(kMaxSecretFile)) {
    ::close(fd);
    return Status::InvalidArgument(std::string("the ") + what + " " + path + " is not a small regular file");
  }
  if (private_only && (st.st_mode & 077) != 0) {
    ::close(fd);
    return Status::AccessDenied(std::string("the ") + what + " " + path +
                                " is accessible by group or others; run: chmod 600 " + path);
  }
  if (private_only) {  // a secret someone else could replace would sign this host in as them
    Status owned = check_host_owner(st, path, std::string("the ") + what);
    if (owned.ok()) owned = check_host_dirs(path, std::string("the ") + what);
    if (!owned.ok()) {
      ::close(fd);
      return owned;
    }
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::read(fd, out.data(), out.size());
  ::close(fd);
  if (n < 0) return Status::IOError(errno, std::string("cannot read the ") + what + " " + path);
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
  if (out.empty()) return Status::InvalidArgument(std::string("the ") + what + " " + path + " is empty");
  return out;
}

// A value that goes into an HTTP header or form: no control characters (no header injection).
bool printable(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// A string field of a JSON reply, bounded and printable; "" when absent or of another type.
std::string text_field(const json& j, const char* key, size_t max = 300) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  std::string out;
  for (unsigned char c : j[key].get<std::string>().substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? char(c) : '?';
  return out;
}

std::string entra_token_url(const Credential& c) {
  std::string host = c.endpoint;
  while (!host.empty() && host.back() == '/') host.pop_back();
  return host + "/" + percent_encode(c.tenant_id) + "/oauth2/v2.0/token";
}

std::string form(std::initializer_list<std::pair<const char*, std::string>> fields) {
  std::string out;
  for (const auto& [k, v] : fields) out += (out.empty() ? "" : "&") + std::string(k) + "=" + percent_encode(v);
  return out;
}

bool system_assigned(const Credential& c) { return c.client_id.empty() || c.client_id == "[system]"; }

}  // namespace

const char* to_string(CredentialKind k) {
  switch (k) {
    case CredentialKind::kManagedIdentity: return "managed-identity";
    case CredentialKind::kAppService: return "app-service";
    case CredentialKind::kWorkloadIdentity: return "workload-identity";
    case CredentialKind::kClientSecret: return "client-secret";
    case CredentialKind::kClientCertificate: return "client-certificate";
  }
  return "unknown";
}

std::optional<CredentialKind> credential_kind(std::string_view name) {
  for (auto k : {CredentialKind::kManagedIdentity, CredentialKind::kAppService, CredentialKind::kWorkloadIdentity,
                 CredentialKind::kClientSecret, CredentialKind::kClientCertificate}) {
    if (name == to_string(k)) return k;
  }
  return std::nullopt;
}

Status Credential::check() const {
  std::string name = to_string(kind);
  if (!entra()) {
    if (endpoint.empty()) return Status::InvalidArgument(name + " needs an identity endpoint");
    if (kind == CredentialKind::kAppService && endpoint.rfind("http://", 0) != 0 && endpoint.rfind("https://", 0) != 0) {
      return Status::InvalidArgument("app-service needs its IDENTITY_ENDPOINT (--identity-endpoint)");
    }
    return check_identity_endpoint(endpoint);
  }
  if (system_assigned(*this)) return Status::InvalidArgument(name + " needs the app's client id (--identity)");
  if (tenant_id.empty()) return Status::InvalidArgument(name + " needs a tenant (--tenant-id, or AZURE_TENANT_ID)");
  if (endpoint.rfind("https://", 0) != 0) {
    return Status::InvalidArgument(name + ": the authority host '" + endpoint + "' must be https");
  }
  if (file.empty() || file[0] != '/') {
    return Status::InvalidArgument(name + " needs the absolute path of its " +
                                   (kind == CredentialKind::kWorkloadIdentity ? std::string("federated token file")
                                    : kind == CredentialKind::kClientSecret    ? std::string("secret file")
                                                                               : std::string("certificate PEM file")) +
                                   " (--credential-file)");
  }
  return Status::Ok();
}

Result<HttpRequest> token_request(const Credential& c, const std::string& resource) {
  CMKFS_RETURN_IF_ERROR(c.check());
  if (c.kind == CredentialKind::kManagedIdentity) {
    std::string url = c.endpoint + "?api-version=2018-02-01&resource=" + percent_encode(resource);
    if (!system_assigned(c)) url += "&client_id=" + percent_encode(c.client_id);
    return HttpRequest{"GET", url, {{"Metadata", "true"}}, ""};
  }
  if (c.kind == CredentialKind::kAppService) {
    std::string header;
    if (!c.file.empty()) {
      auto h = read_credential_file(c.file, "identity header file");
      if (!h.ok()) return h.status();
      header = *h;
    } else if (const char* env = std::getenv("IDENTITY_HEADER")) {
      header = env;
    }
    if (header.empty()) return Status(EAGAIN, "app-service: IDENTITY_HEADER is not set and no --credential-file holds it");
    if (!printable(header)) return Status::InvalidArgument("app-service: the identity header holds control characters");
    std::string url = c.endpoint + "?api-version=2019-08-01&resource=" + percent_encode(resource);
    if (!system_assigned(c)) url += "&client_id=" + percent_encode(c.client_id);
    return HttpRequest{"GET", url, {{"X-IDENTITY-HEADER", header}}, ""};
  }
  std::string scope = resource + "/.default";
  std::string body;
  if (c.kind == CredentialKind::kClientSecret) {
    auto secret = read_credential_file(c.file, "client secret file");
    if (!secret.ok()) return secret.status();
    body = form({{"grant_type", "client_credentials"}, {"client_id", c.client_id}, {"scope", scope},
                 {"client_secret", *secret}});
  } else {
    std::string assertion;
    if (c.kind == CredentialKind::kWorkloadIdentity) {
      // Re-read every time: the kubelet replaces the projected token before it expires.
      auto t = read_credential_file(c.file, "federated token file", /*private_only=*/false);
      if (!t.ok()) return t.status();
      assertion = *t;
      if (!printable(assertion)) return Status(EAGAIN, "the federated token file holds control characters");
    } else {
      auto pem = read_credential_file(c.file, "certificate file");
      if (!pem.ok()) return pem.status();
      auto jti = crypto::random_key();
      if (!jti.ok()) return jti.status();
      int64_t now = now_seconds();
      // nbf a minute back: the authority's clock may be behind ours.
      json claims{{"aud", entra_token_url(c)}, {"iss", c.client_id}, {"sub", c.client_id},
                  {"jti", to_hex(std::span<const uint8_t>(jti->data(), 16))}, {"nbf", now - 60}, {"iat", now},
                  {"exp", now + 600}};
      auto signed_jwt = sign_jwt_with_certificate(*pem, claims.dump());
      if (!signed_jwt.ok()) return signed_jwt.status();
      assertion = *signed_jwt;
    }
    body = form({{"grant_type", "client_credentials"}, {"client_id", c.client_id}, {"scope", scope},
                 {"client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
                 {"client_assertion", assertion}});
  }
  return HttpRequest{"POST", entra_token_url(c), {{"Content-Type", "application/x-www-form-urlencoded"}}, body};
}

Result<AccessToken> parse_token_reply(const Credential& c, const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, false);
  std::string who = std::string(to_string(c.kind)) + (system_assigned(c) ? "" : " " + c.client_id);
  if (r.status != 200) {
    std::string error = text_field(j, "error", 64);
    std::string desc = text_field(j, "error_description");
    std::string detail = who + ": token endpoint: HTTP " + std::to_string(r.status) + (error.empty() ? "" : " " + error) +
                         (desc.empty() ? "" : ": " + desc);
    // Only answers that name the identity or credential as refused revoke; anything else (IMDS's
    // 404 and 410 while it updates, throttling, a clock out of step) is an outage.
    if (!c.entra()) {
      if (r.status == 400 || r.status == 403) return Status(ENOKEY, "identity not known to the identity endpoint: " + detail);
      if (r.status == 401 && c.kind == CredentialKind::kAppService) return Status(EACCES, detail);
      return Status(EAGAIN, detail);
    }
    bool skew = desc.find("AADSTS700024") != std::string::npos;  // assertion outside its valid time
    if (r.status == 400 || r.status == 401) {
      if (error == "unauthorized_client") return Status(ENOKEY, detail);
      if ((error == "invalid_client" || error == "invalid_grant") && !skew) return Status(EACCES, detail);
    }
    return Status(EAGAIN, detail);
  }
  if (!j.is_object() || !j.contains("access_token") || !j["access_token"].is_string() ||
      j["access_token"].get<std::string>().empty() || !printable(j["access_token"].get<std::string>())) {
    return Status(EBADMSG, who + ": malformed token reply");
  }
  AccessToken t{j["access_token"], 0};
  // expires_on (unix seconds, a string from managed identity), else expires_in (number or string).
  auto seconds = [&](const char* key) -> int64_t {
    if (!j.contains(key)) return 0;
    if (j[key].is_number_integer()) return j[key].get<int64_t>();
    return j[key].is_string() ? std::strtoll(j[key].get<std::string>().c_str(), nullptr, 10) : 0;
  };
  t.expires_on = seconds("expires_on");
  // At most a day ahead: a reply's "expires_in" of 2^63 would overflow the sum.
  int64_t expires_in = std::min<int64_t>(seconds("expires_in"), 24 * 3600);
  if (t.expires_on == 0 && expires_in > 0) t.expires_on = now_seconds() + expires_in;
  if (t.expires_on == 0) t.expires_on = now_seconds() + 300;
  return t;
}

Result<std::string> sign_jwt_with_certificate(const std::string& pem, const std::string& claims_json) {
  auto key = crypto::CertificateKey::from_pem(pem);
  if (!key.ok()) return key.status();
  json header{{"alg", "RS256"}, {"typ", "JWT"}, {"x5t", base64url_encode(key->thumbprint(false))},
              {"x5t#S256", base64url_encode(key->thumbprint(true))}};
  std::string input = base64url_encode(header.dump()) + "." + base64url_encode(claims_json);
  auto sig = key->sign_rs256(crypto::as_bytes(input));
  if (!sig.ok()) return sig.status();
  return input + "." + base64url_encode(*sig);
}

}  // namespace cmkfs::keyclient
