// The key vault client against any reply: the first input byte picks the status code, the rest
// is split into a WWW-Authenticate header and a body, for the challenge, the token and the call.
// The same bytes as a token reply to every Azure credential, and as a pkcs11: URI (which must
// print back to a URI that parses to the same text).
#include <cstdint>
#include <string>

#include "keyclient/credential.h"
#include "keyclient/keyclient.h"
#include "keyclient/pkcs11_uri.h"
#include "keyclient/vault_client.h"

using namespace cmkfs;
using namespace cmkfs::keyclient;

namespace {

class FuzzTransport : public HttpTransport {
 public:
  FuzzTransport(const uint8_t* data, size_t size) : data_(reinterpret_cast<const char*>(data), size) {}
  Result<HttpResponse> send(const HttpRequest&) override {
    if (data_.empty()) return Status(EAGAIN, "no more");
    static const long kStatus[] = {200, 401, 403, 404, 400, 429, 500, 302};
    HttpResponse r;
    r.status = kStatus[static_cast<uint8_t>(data_[0]) % 8];
    auto cut = data_.find('\n', 1);
    std::string header = data_.substr(1, cut == std::string::npos ? std::string::npos : cut - 1);
    r.headers["www-authenticate"] = header;
    r.headers["retry-after"] = header;
    r.body = cut == std::string::npos ? "" : data_.substr(cut + 1);
    auto next = r.body.find('\x1e');  // a record separator ends this reply
    data_ = next == std::string::npos ? std::string() : r.body.substr(next + 1);
    if (next != std::string::npos) r.body.resize(next);
    return r;
  }

 private:
  std::string data_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  VaultClient client(std::make_unique<FuzzTransport>(data, size),
                     VaultClientOptions{{CredentialKind::kManagedIdentity, "client", "http://169.254.169.254/token", "", ""}, 1, std::chrono::milliseconds(0)});
  auto id = *KeyId::parse("https://kv.vault.azure.net/keys/k/0123");
  uint8_t key[32] = {1};
  (void)client.unwrap(id, key);
  (void)client.get_key(id);
  (void)client.wrap(id, key);
  (void)challenge_resource_matches(std::string(reinterpret_cast<const char*>(data), size), "kv.vault.azure.net");
  (void)KeyId::parse(std::string(reinterpret_cast<const char*>(data), size));
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)check_identity_endpoint(text);
  HttpResponse reply{size > 0 && data[0] % 2 ? 400 : 200, size > 0 ? text.substr(1) : "", {}};
  for (auto kind : {CredentialKind::kManagedIdentity, CredentialKind::kAppService, CredentialKind::kWorkloadIdentity,
                    CredentialKind::kClientSecret, CredentialKind::kClientCertificate}) {
    (void)parse_token_reply(Credential{kind, "client", "https://login.test", "tenant", "/f"}, reply);
  }
  auto uri = Pkcs11Uri::parse(text);
  if (uri.ok()) {
    auto again = Pkcs11Uri::parse(uri->str());
    if (!again.ok() || again->str() != uri->str()) __builtin_trap();
  }
  (void)kms2_socket_path(text);
  return 0;
}
