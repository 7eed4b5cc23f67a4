// A client of the Azure Key Vault keys REST protocol (api-version 7.4): managed-identity tokens
// from an IMDS-compatible endpoint, get key, wrapkey and unwrapkey with RSA-OAEP-256.
//
// Challenge first, as the Azure SDKs do: the first request to a vault carries no token and no
// body; the vault's 401 names the resource its tokens are for (`WWW-Authenticate: Bearer ...
// resource="https://vault.azure.net"`), which must be the vault's own domain or a parent of it
// (Key Vault, Managed HSM, sovereign clouds alike); only then is a token fetched, for that resource.
//
// Every failure is classified (see keyclient.h): 401/403 -> EACCES, a disabled key ->
// EKEYREVOKED, 404 or an unknown identity -> ENOKEY, a refused unwrap -> EKEYREJECTED; network
// errors, timeouts, 429 and 5xx are retried with backoff and then reported as EAGAIN/ETIMEDOUT;
// a reply that is not the expected JSON is EBADMSG.
//
// Thread-safety: safe to share; the token cache has its own lock.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "crypto/crypto.h"
#include "keyclient/credential.h"
#include "keyclient/http.h"

namespace cmkfs::keyclient {

// https://VAULT/keys/NAME[/VERSION]. A key vault is reached over https only.
struct KeyId {
  std::string vault;  // https://host[:port], host lower-cased
  std::string name;
  std::string version;  // empty: the latest
  static std::optional<KeyId> parse(const std::string& url);
  std::string str() const { return vault + "/keys/" + name + (version.empty() ? "" : "/" + version); }
  std::string host() const;                    // without the port
  bool same_key(const KeyId& o) const { return vault == o.vault && name == o.name; }
};

// Where a managed-identity token may be asked for: https anywhere, plain http only where Azure
// itself serves tokens that way (the link-local IMDS address 169.254.169.254, a loopback
// IDENTITY_ENDPOINT). InvalidArgument with the reason otherwise.
Status check_identity_endpoint(const std::string& url);

// Whether a 401 challenge's `resource` (or `scope`) may receive a token for requests to `host`:
// its host equals `host` or is a parent domain of it (vault.azure.net for
// kv1.vault.azure.net), as the Azure SDKs check, so a vault cannot harvest tokens for another
// service.
bool challenge_resource_matches(const std::string& resource, const std::string& host);

struct VaultClientOptions {
  Credential credential;          // how tokens are got
  int max_attempts = 3;           // per call, for transient failures
  std::chrono::milliseconds first_backoff{200};
};

class VaultClient {
 public:
  VaultClient(std::unique_ptr<HttpTransport> transport, VaultClientOptions options);

  Result<nlohmann::json> get_key(const KeyId& id);  // the KeyBundle
  struct Wrapped {
    std::string kid;  // the versioned id that wrapped
    std::vector<uint8_t> value;
  };
  Result<Wrapped> wrap(const KeyId& id, crypto::Bytes key);
  Result<crypto::SecretBytes> unwrap(const KeyId& id, crypto::Bytes wrapped);

  uint64_t calls() const { return calls_; }  // HTTP requests sent (for tests: none on the data path)

 private:
  Result<std::string> token(const std::string& resource, bool refresh);
  Result<std::string> challenged_resource(const HttpResponse& r, const std::string& host);
  Result<nlohmann::json> call(const std::string& method, const std::string& url, const nlohmann::json& body);
  Result<HttpResponse> send_with_retries(const HttpRequest& req);

  std::unique_ptr<HttpTransport> transport_;
  VaultClientOptions options_;
  std::mutex token_mu_;
  std::string resource_;  // what the vault's challenge named; empty until it has
  std::string token_, token_resource_;
  int64_t token_expires_ = 0;
  std::atomic<uint64_t> calls_{0};
};

}  // namespace cmkfs::keyclient
