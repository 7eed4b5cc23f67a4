// The key vault client against any reply: the first input byte picks the status code, the rest
// is split into a WWW-Authenticate header and a body, for the challenge, the token and the call.
#include <cstdint>
#include <string>

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
  (void)check_identity_endpoint(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
