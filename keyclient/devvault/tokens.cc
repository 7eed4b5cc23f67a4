// Where the development vault's callers get tokens, one endpoint per Azure credential:
//   GET  /metadata/identity/oauth2/token   IMDS (managed identities; Metadata: true)
//   GET  /msi/token                        App Service 2019-08-01 (X-IDENTITY-HEADER)
//   POST /{tenant}/oauth2/v2.0/token       Entra ID's client-credentials grant for app
//                                          registrations: secret, certificate assertion, or
//                                          federated token (apps.h)
// and the admin endpoints that register apps and their credentials.
#include <map>

#include "keyclient/devvault/context.h"

namespace cmkfs::devvault {
namespace {

using httplib::Request;
using httplib::Response;

void oauth_error(Context& c, Response& r, int status, const std::string& error, const std::string& desc,
                 const Principal* who = nullptr) {
  r.status = status;
  r.set_content(safe_dump(json{{"error", error}, {"error_description", desc}}), "application/json");
  c.log(who, "token", "", "", status);
}

// Managed-identity endpoints serve only their own machine, as IMDS does: a caller on the loopback
// interface whose socket a permitted user owns (root and the vault's own user, unless --token-uid
// says otherwise). The identity: a user-assigned one by client_id, else the system-assigned one.
std::optional<Principal> machine_caller(Context& c, const Request& q, Response& r) {
  auto uid = loopback_peer_uid(q);
  if (!uid) {
    oauth_error(c, r, 403, "invalid_request", "Tokens are issued to processes on this machine only");
    return std::nullopt;
  }
  if (!c.token_uids.contains(*uid)) {
    oauth_error(c, r, 403, "invalid_request", "User " + std::to_string(*uid) + " may not get tokens here");
    return std::nullopt;
  }
  std::string client_id = param(q, "client_id");
  std::optional<Principal> who = client_id.empty() ? std::optional(c.vault->system_identity())
                                                   : c.vault->identity_by_client_id(client_id);
  if (!who) oauth_error(c, r, 400, "invalid_request", "Identity not found");
  return who;
}

void managed_identity_token(Context& c, const Request& q, Response& r, bool app_service) {
  std::lock_guard<std::mutex> g(c.mu);
  if (app_service) {
    std::string header = q.get_header_value("X-IDENTITY-HEADER");
    if (header.empty() || !crypto::equal_constant_time(crypto::as_bytes(header), crypto::as_bytes(c.identity_header))) {
      return oauth_error(c, r, 401, "invalid_request", "X-IDENTITY-HEADER is missing or wrong");
    }
    if (param(q, "api-version") != "2019-08-01") return oauth_error(c, r, 400, "invalid_request", "api-version 2019-08-01 only");
  } else if (q.get_header_value("Metadata") != "true") {
    return oauth_error(c, r, 400, "invalid_request", "Required metadata header not specified");
  }
  std::string resource = param(q, "resource");
  if (resource.empty()) return oauth_error(c, r, 400, "invalid_request", "Required query variable 'resource' is missing");
  auto who = machine_caller(c, q, r);
  if (!who) return;
  int64_t now = unix_now();
  json body{{"access_token", mint_token(c.secret, *who, c.token_lifetime, resource)},
            {"client_id", who->client_id},
            {"expires_on", std::to_string(now + c.token_lifetime)},
            {"not_before", std::to_string(now)},
            {"resource", resource},
            {"token_type", "Bearer"}};
  if (!app_service) {
    body["expires_in"] = std::to_string(c.token_lifetime - 1);
    body["ext_expires_in"] = std::to_string(c.token_lifetime - 1);
  }
  r.set_content(safe_dump(body), "application/json");
  c.log(&*who, "token", "", "", 200);
}

void entra_token(Context& c, const Request& q, Response& r) {
  std::lock_guard<std::mutex> g(c.mu);
  std::string tenant = q.matches[1];
  if (tenant != c.tenant) return oauth_error(c, r, 400, "invalid_tenant", "AADSTS90002: Tenant '" + tenant + "' not found");
  std::map<std::string, std::string> form;
  for (const auto& [k, v] : q.params) form[k] = v;
  std::string token_url = c.vault->base_url() + "/" + tenant + "/oauth2/v2.0/token";
  ClientAuth auth = authenticate_client(c.vault->apps(), form, token_url, c.resource);
  if (!auth.who) return oauth_error(c, r, auth.status, auth.error, auth.description);
  json body{{"token_type", "Bearer"},
            {"expires_in", c.token_lifetime - 1},
            {"ext_expires_in", c.token_lifetime - 1},
            {"access_token", mint_token(c.secret, *auth.who, c.token_lifetime, c.resource)}};
  r.set_content(safe_dump(body), "application/json");
  c.log(&*auth.who, "token", "", "", 200);
}

// The admin endpoints of app registrations: create, secrets, certificates, federated credentials.
void add_app_admin_routes(httplib::Server& s, Context& c) {
  auto with_app = [&c](const Request& q, Response& r, const std::function<Reply(App&, const json&)>& fn) {
    std::lock_guard<std::mutex> g(c.mu);
    if (!require_admin(c, q, r)) return;
    App* app = c.vault->apps().find(q.matches[1]);
    json b = q.body.empty() ? json::object() : json::parse(q.body, nullptr, false);
    if (app == nullptr) return send(r, Reply::error(404, "NotFound", "no app with client id " + std::string(q.matches[1])));
    if (!b.is_object()) return send(r, Reply::error(400, "BadParameter", "the body is not a JSON object"));
    Reply reply;
    try {
      reply = fn(*app, b);
    } catch (const json::exception& e) {
      reply = Reply::error(400, "BadParameter", e.what());
    }
    if (reply.status == 200 && !c.vault->save_apps().ok()) reply = Reply::error(500, "InternalError", "cannot save");
    send(r, reply);
  };
  s.Post("/admin/apps", [&c](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    if (!require_admin(c, q, r)) return;
    json b = json::parse(q.body, nullptr, false);
    if (!b.is_object() || !b.contains("name") || !b["name"].is_string()) {
      return send(r, Reply::error(400, "BadParameter", "name (a string) required"));
    }
    Principal p = c.vault->apps().create(b["name"]);
    (void)c.vault->save_apps();
    send(r, Reply{200, json{{"name", p.name}, {"clientId", p.client_id}, {"principalId", p.principal_id},
                            {"tenantId", c.tenant}, {"tokenEndpoint", c.vault->base_url() + "/" + c.tenant + "/oauth2/v2.0/token"}}});
  });
  s.Post(R"(/admin/apps/([^/]+)/secrets)", [with_app](const Request& q, Response& r) {
    with_app(q, r, [](App& app, const json&) {
      std::string secret = random_hex(24);
      app.secret_hashes.push_back(secret_hash(secret));
      return Reply{200, json{{"clientId", app.principal.client_id}, {"secret", secret}}};
    });
  });
  s.Delete(R"(/admin/apps/([^/]+)/secrets)", [with_app](const Request& q, Response& r) {
    with_app(q, r, [](App& app, const json&) {
      app.secret_hashes.clear();
      return Reply{200, json{{"clientId", app.principal.client_id}, {"secrets", 0}}};
    });
  });
  s.Post(R"(/admin/apps/([^/]+)/certificates)", [with_app](const Request& q, Response& r) {
    with_app(q, r, [](App& app, const json& b) {
      app.certificates.push_back(b.at("pem").get<std::string>());
      return Reply{200, json{{"clientId", app.principal.client_id}, {"certificates", app.certificates.size()}}};
    });
  });
  s.Post(R"(/admin/apps/([^/]+)/federated-credentials)", [with_app](const Request& q, Response& r) {
    with_app(q, r, [](App& app, const json& b) {
      FederatedCredential f{b.at("issuer"), b.at("subject"), b.value("audience", "api://AzureADTokenExchange"),
                            b.at("issuerKey")};
      app.federated.push_back(f);
      return Reply{200, json{{"clientId", app.principal.client_id}, {"issuer", f.issuer}, {"subject", f.subject},
                             {"audience", f.audience}}};
    });
  });
}

}  // namespace

void add_token_routes(httplib::Server& s, Context& c) {
  s.Get("/metadata/identity/oauth2/token",
        [&c](const Request& q, Response& r) { managed_identity_token(c, q, r, /*app_service=*/false); });
  s.Get("/msi/token", [&c](const Request& q, Response& r) { managed_identity_token(c, q, r, /*app_service=*/true); });
  s.Post(R"(/([0-9a-fA-F-]+)/oauth2/v2\.0/token)", [&c](const Request& q, Response& r) { entra_token(c, q, r); });
  add_app_admin_routes(s, c);
}

}  // namespace cmkfs::devvault
