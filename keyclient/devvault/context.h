// What the development vault's HTTP handlers share (server.cc, tokens.cc): the state behind one
// lock, the audit log, and the small helpers every handler uses. Internal to cmkfs-vault.
#pragma once

#include <httplib.h>
#include <sys/types.h>

#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "keyclient/devvault/server.h"
#include "keyclient/devvault/vault.h"

namespace cmkfs::web {
class Console;
}

namespace cmkfs::devvault {

std::string iso_time(int64_t t);
// JSON text whatever the strings hold: invalid UTF-8 from a request is replaced, never thrown.
std::string safe_dump(const json& j);
// Whether the request being served has its audit line yet (the logger writes one if not).
extern thread_local bool audited;

struct Context {
  ~Context();
  std::mutex mu;  // guards vault, audit and console
  std::string dir;
  std::unique_ptr<Vault> vault;
  std::unique_ptr<web::Console> console;
  int64_t console_idle_seconds = 15 * 60;
  std::string secret;
  std::string tenant;
  std::string resource;         // what the vault's tokens are for: https://<its host>
  std::string identity_header;  // what App Service callers must send as X-IDENTITY-HEADER
  std::set<uid_t> token_uids;
  int64_t token_lifetime = 3600;
  std::ofstream audit;

  // `extra` (an object) adds fields: why a request was refused, from where.
  void log(const Principal* who, const std::string& op, const std::string& key, const std::string& version, int status,
           const json& extra = nullptr) {
    json line{{"time", iso_time(unix_now())},
              {"identity", who != nullptr ? json{{"appid", who->client_id}, {"oid", who->principal_id}} : json(nullptr)},
              {"operation", op},
              {"key", key},
              {"version", version},
              {"result", status}};
    if (extra.is_object()) line.update(extra);
    audit << safe_dump(line) << "\n";
    audit.flush();
    audited = true;
  }
};

void send(httplib::Response& res, const Reply& r);
// The uid owning the client end of a loopback TCP connection (nullopt if it is not one).
std::optional<uid_t> loopback_peer_uid(const httplib::Request& req);
// Query parameter `name`, also when the client percent-encoded its name (api%2Dversion).
std::string param(const httplib::Request& req, const std::string& name);
// Whether the request carries the admin's token; answers 401 otherwise.
bool require_admin(Context& c, const httplib::Request& q, httplib::Response& r);

// Changes the firewall: op "updatenetwork" ({defaultAction, bypass}), "addiprule" or
// "removeiprule" ({ipRule}); the new networkAcls, or an error. REQUIRES: the vault's lock.
Reply change_network(Vault& vault, const std::string& op, const json& body);

// Token endpoints (IMDS, App Service, Entra's /{tenant}/oauth2/v2.0/token) and the admin
// endpoints of app registrations (tokens.cc).
void add_token_routes(httplib::Server& s, Context& c);

}  // namespace cmkfs::devvault
