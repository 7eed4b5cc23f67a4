// The HTTPS server of cmkfs-vault: the Key Vault keys REST API (api-version 7.x subset), an
// IMDS-compatible token endpoint, admin endpoints for identities, policies and the firewall, a
// web console (/console, console.h), an audit log.
#pragma once

#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

#include "crypto/base/status.h"
#include "keyclient/devvault/vault.h"

namespace cmkfs::devvault {

struct ServeOptions {
  std::string dir;
  std::string host = "127.0.0.1";
  int port = 8443;  // 0: any free port (written to DIR/server.json)
  bool purge_protection = true;
  int64_t token_lifetime = 3600;
  std::vector<uid_t> token_uids;  // who else but root and the vault's user may get tokens
  std::string public_url;         // the URL clients use, when not the listener's (behind a proxy)
  int64_t console_idle_seconds = 15 * 60;  // a console session unused this long ends
};

// Creates DIR (0700), its CA (DIR/ca.pem) and server certificate on first start, then serves
// until SIGTERM or SIGINT. Writes DIR/server.json {url, pid} once listening.
Status serve(const ServeOptions& options);

// Bearer tokens: "cmkv1.<claims>.<hmac>", claims = {sub: principal id, appid: client id, aud, exp}.
// A vault takes only tokens whose audience is its own resource, resource_of(its URL).
std::string mint_token(const std::string& secret, const Principal& p, int64_t lifetime, const std::string& audience);
// `expires`, if given, receives the token's expiry (unix seconds).
std::optional<Principal> verify_token(const std::string& secret, const std::string& token, const std::string& audience,
                                      int64_t* expires = nullptr);
// https://HOST:PORT/... -> https://HOST: the resource a vault at that URL names in its challenge.
std::string resource_of(const std::string& url);
// DIR/NAME: 32 random bytes as hex, made (mode 0600) on first use. token.secret signs tokens;
// identity-header is what App Service callers send as X-IDENTITY-HEADER.
Result<std::string> load_or_create_secret(const std::string& dir, const std::string& name = "token.secret");

// The principal the cmkfs-vault CLI acts as: all permissions, on every key.
inline const Principal kAdmin{"admin", "admin", "admin"};


}  // namespace cmkfs::devvault
