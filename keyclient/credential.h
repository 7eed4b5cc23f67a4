// Azure credentials, as azure-identity names them: how a vault client gets an access token.
//
//   managed-identity    IMDS (GET, Metadata: true), a user-assigned identity by client_id
//   app-service         App Service / Container Apps (GET api-version 2019-08-01, X-IDENTITY-HEADER
//                       from $IDENTITY_HEADER or a file)
//   workload-identity   the projected service-account token (re-read for every token: the kubelet
//                       rotates it) exchanged at the authority's /{tenant}/oauth2/v2.0/token
//   client-secret       an app's secret, from a file
//   client-certificate  a JWT assertion (RS256, x5t and x5t#S256) signed with the key in a PEM file
//                       that holds the certificate and its private key
//
// Secrets are read from their files each time a token is fetched, never kept in the settings. A
// token is asked for only at the endpoint pinned in the settings, whatever a vault's challenge
// names as its authority.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/base/status.h"
#include "keyclient/http.h"

namespace cmkfs::keyclient {

enum class CredentialKind { kManagedIdentity, kAppService, kWorkloadIdentity, kClientSecret, kClientCertificate };
const char* to_string(CredentialKind k);
std::optional<CredentialKind> credential_kind(std::string_view name);

// The default authority host (Entra ID, public cloud).
inline constexpr const char* kAzureAuthorityHost = "https://login.microsoftonline.com";

struct Credential {
  CredentialKind kind = CredentialKind::kManagedIdentity;
  std::string client_id;  // an identity's or an app's; "[system]" or empty: the system-assigned identity
  std::string endpoint;   // managed identity: the token URL; Entra credentials: the authority host
  std::string tenant_id;  // Entra credentials
  std::string file;       // the secret, PEM, federated token, or App Service header file

  bool entra() const { return kind >= CredentialKind::kWorkloadIdentity; }
  // EINVAL with the reason when a required part is missing or an endpoint would leak.
  Status check() const;
};

struct AccessToken {
  std::string token;
  int64_t expires_on = 0;  // unix seconds
};

// The request for a token for `resource` (https://vault.azure.net), its secrets read now.
Result<HttpRequest> token_request(const Credential& c, const std::string& resource);
// The token in a reply; errors classified: a refused credential EACCES, an unknown identity
// ENOKEY, 429 and 5xx EAGAIN, anything malformed EBADMSG.
Result<AccessToken> parse_token_reply(const Credential& c, const HttpResponse& r);

// A compact JWS (RS256) over `claims` with the key in `pem` (certificate and private key), its
// header naming the certificate by x5t and x5t#S256. For client-certificate assertions.
Result<std::string> sign_jwt_with_certificate(const std::string& pem, const std::string& claims_json);

}  // namespace cmkfs::keyclient
