// App registrations of the development vault, and Entra ID's client-credentials grant over them:
// an app authenticates with a secret, a certificate-signed JWT assertion, or a federated token (a
// JWT from an issuer it trusts, as AKS workload identity presents). Enough of Entra for cmkfs's
// tests to run every Azure credential end to end; the vault's own tokens stay cmkv1 tokens.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "crypto/base/status.h"
#include "keyclient/devvault/principal.h"

namespace cmkfs::devvault {

struct FederatedCredential {
  std::string issuer, subject, audience = "api://AzureADTokenExchange";
  std::string issuer_key_pem;  // the issuer's public key (no OIDC discovery here)
};

struct App {
  Principal principal;
  std::vector<std::string> secret_hashes;  // hex SHA-256 of each secret
  std::vector<std::string> certificates;   // PEM
  std::vector<FederatedCredential> federated;
};

class AppRegistry {
 public:
  Principal create(const std::string& name);  // the existing one if the name is taken
  App* find(const std::string& client_id);
  const App* find(const std::string& client_id) const;
  std::vector<Principal> list() const;
  nlohmann::json to_json() const;
  Status load(const nlohmann::json& j);

 private:
  std::vector<App> apps_;
};

std::string secret_hash(const std::string& secret);

// The answer to a client-credentials request: the app it authenticates, or Entra's error.
struct ClientAuth {
  std::optional<Principal> who;
  int status = 400;
  std::string error, description;  // "invalid_client", "AADSTS7000215: ..."
};

// `form`: the request's fields; `token_url`: this endpoint's own URL (an assertion's audience);
// `resource`: what tokens are for (the scope must be resource + "/.default").
ClientAuth authenticate_client(const AppRegistry& apps, const std::map<std::string, std::string>& form,
                               const std::string& token_url, const std::string& resource);

}  // namespace cmkfs::devvault
