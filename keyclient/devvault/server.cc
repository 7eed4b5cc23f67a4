#include "keyclient/devvault/server.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>

#include "crypto/crypto.h"
#include "crypto/base/hex.h"
#include "keyclient/base64url.h"
#include "keyclient/devvault/console.h"
#include "keyclient/devvault/context.h"
#include "keyclient/devvault/template.h"
#include "keyclient/web/https.h"
#include "keyclient/web/peer.h"

namespace cmkfs::devvault {

using httplib::Request;
using httplib::Response;

thread_local bool audited = false;

std::string iso_time(int64_t t) {
  char buf[32];
  std::time_t tt = static_cast<std::time_t>(t);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&tt));
  return buf;
}

std::string safe_dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send(Response& res, const Reply& r) {
  res.status = r.status;
  if (!r.body.is_null()) res.set_content(safe_dump(r.body), "application/json; charset=utf-8");
}

// The uid owning the client end of a loopback TCP connection (peer.h).
std::optional<uid_t> loopback_peer_uid(const Request& req) {
  auto connection = web::connection_of(req.remote_addr, req.remote_port, req.local_addr, req.local_port);
  return connection ? web::loopback_owner(*connection) : std::nullopt;
}

// Query parameter `name`, also when the client percent-encoded its name (api%2Dversion).
std::string param(const Request& req, const std::string& name) {
  if (req.has_param(name.c_str())) return req.get_param_value(name.c_str());
  for (const auto& [k, v] : req.params) {
    if (httplib::detail::decode_url(k, false) == name) return v;
  }
  return "";
}

bool require_admin(Context& c, const Request& q, Response& r) {
  std::string auth = q.get_header_value("Authorization");
  auto who = auth.rfind("Bearer ", 0) == 0 ? verify_token(c.secret, auth.substr(7), c.resource) : std::nullopt;
  if (!who || who->principal_id != kAdmin.principal_id) {
    send(r, Reply::error(401, "Unauthorized", "admin token required"));
    return false;
  }
  return true;
}

namespace {

// Checks the bearer token and the principal's permission. Fills `res` and returns nullopt when
// the request may not go on.
std::optional<Principal> authorize(Context& c, const Request& req, Response& res, const std::string& permission,
                                   const std::string& op, const std::string& key) {
  std::string auth = req.get_header_value("Authorization");
  if (auth.rfind("Bearer ", 0) != 0) {
    res.set_header("WWW-Authenticate", "Bearer authorization=\"https://login.windows.net/" + c.tenant +
                                           "\", resource=\"" + c.resource + "\"");
    send(res, Reply::error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token."));
    return std::nullopt;
  }
  auto who = verify_token(c.secret, auth.substr(7), c.resource);
  if (!who) {
    send(res, Reply::error(401, "Unauthorized", "AKV10022: Invalid or expired token."));
    return std::nullopt;
  }
  // The firewall, as Key Vault's: before the access policy, after the token (a trusted caller is
  // known by its identity). The admin is the control plane, which Azure's firewall does not cover.
  const NetworkAcls& net = c.vault->network();
  bool trusted = net.trusted_bypass && who->principal_id == c.vault->system_identity().principal_id;
  if (who->principal_id != kAdmin.principal_id && !trusted && !net.admits(req.remote_addr)) {
    send(res, Reply::error(403, "Forbidden",
                           "Client address is not authorized and caller is not a trusted service.\r\nClient address: " +
                               req.remote_addr + "\r\nCaller: appid=" + who->client_id + ";oid=" + who->principal_id +
                               "\r\nVault: cmkfs-vault;location=local",
                           "ForbiddenByFirewall"));
    c.log(&*who, op, key, "", 403, json{{"error", "ForbiddenByFirewall"}, {"clientAddress", req.remote_addr}});
    return std::nullopt;
  }
  if (who->principal_id != kAdmin.principal_id && !c.vault->allowed(who->principal_id, permission)) {
    send(res, Reply::error(403, "Forbidden",
                           "The user, group or application 'appid=" + who->client_id + ";oid=" + who->principal_id +
                               "' does not have keys " + permission + " permission on key vault 'cmkfs-vault;location=local'.",
                           "ForbiddenByPolicy"));
    return std::nullopt;
  }
  return who;
}

// The shape every keys operation shares: api-version, auth, JSON body, the call, the audit line.
void handle(Context& c, const Request& req, Response& res, const std::string& op, const std::string& permission,
            const std::string& key, const std::string& version, const std::function<Reply(const json&)>& fn) {
  std::lock_guard<std::mutex> g(c.mu);
  if (param(req, "api-version").empty()) {
    send(res, Reply::error(400, "BadParameter", "The api-version query parameter is required."));
    return;
  }
  auto who = authorize(c, req, res, permission, op, key);
  if (!who) {
    if (!audited) c.log(nullptr, op, key, version, res.status);
    return;
  }
  json body = json::object();
  if (!req.body.empty()) {
    body = json::parse(req.body, nullptr, false);
    if (body.is_discarded()) {
      send(res, Reply::error(400, "BadParameter", "The request body is not JSON."));
      c.log(&*who, op, key, version, 400);
      return;
    }
  }
  Reply r;
  try {
    r = fn(body);
  } catch (const json::exception& e) {
    r = Reply::error(400, "BadParameter", std::string("malformed request: ") + e.what());
  }
  send(res, r);
  c.log(&*who, op, key, c.vault->resolve_version(key, version), r.status);
}

}  // namespace

Context::~Context() = default;

Reply change_network(Vault& vault, const std::string& op, const json& b) {
  if (!b.is_object()) return Reply::error(400, "BadParameter", "the body must be a JSON object");
  NetworkAcls next = vault.network();
  if (op == "updatenetwork") {
    if (Status s = next.update(b); !s.ok()) return Reply::error(400, "BadParameter", s.message());
  } else {
    auto rule = Cidr::parse(b.contains("ipRule") && b["ipRule"].is_string() ? b["ipRule"].get<std::string>() : "");
    if (!rule.ok()) return Reply::error(400, "BadParameter", rule.status().message());
    auto& rules = next.ip_rules;
    auto same = [&](const Cidr& x) { return x.to_string() == rule->to_string(); };
    bool present = std::any_of(rules.begin(), rules.end(), same);
    if (op == "addiprule" && !present) rules.push_back(*rule);
    if (op == "removeiprule") {
      if (!present) return Reply::error(404, "NotFound", "no IP rule " + rule->to_string());
      rules.erase(std::remove_if(rules.begin(), rules.end(), same), rules.end());
    }
  }
  Status saved = vault.set_network(next);
  if (!saved.ok()) return Reply::error(500, "InternalError", "cannot save the vault's state: " + saved.message());
  return Reply{200, vault.network().to_json()};
}

namespace {

// The firewall's settings (Azure: az keyvault update --default-action/--bypass, az keyvault
// network-rule add/remove): GET/PATCH /admin/network, POST/DELETE /admin/network/ip-rules.
void add_network_routes(httplib::Server& s, Context& c) {
  s.Get("/admin/network", [&](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    if (require_admin(c, q, r)) send(r, Reply{200, c.vault->network().to_json()});
  });
  auto change = [&](const Request& q, Response& r, const std::string& op) {
    std::lock_guard<std::mutex> g(c.mu);
    if (!require_admin(c, q, r)) return;
    // DELETE names its rule in the query (?ipRule=CIDR): DELETE bodies are not for everyone.
    json b = q.body.empty() && !param(q, "ipRule").empty() ? json{{"ipRule", param(q, "ipRule")}}
                                                         : json::parse(q.body, nullptr, false);
    Reply reply = change_network(*c.vault, op, b);
    c.log(&kAdmin, op, "", "", reply.status);
    send(r, reply);
  };
  s.Patch("/admin/network", [change](const Request& q, Response& r) { change(q, r, "updatenetwork"); });
  s.Post("/admin/network/ip-rules", [change](const Request& q, Response& r) { change(q, r, "addiprule"); });
  s.Delete("/admin/network/ip-rules", [change](const Request& q, Response& r) { change(q, r, "removeiprule"); });
}

void add_routes(httplib::Server& s, Context& c) {
  s.Post(R"(/keys/([^/]+)/create)", [&](const Request& q, Response& r) {
    std::string k = q.matches[1];
    handle(c, q, r, "create", "create", k, "", [&](const json& b) { return c.vault->create_key(k, b); });
  });
  s.Post(R"(/keys/([^/]+)/rotate)", [&](const Request& q, Response& r) {
    std::string k = q.matches[1];
    handle(c, q, r, "rotate", "rotate", k, "", [&](const json&) { return c.vault->rotate_key(k); });
  });
  s.Get(R"(/keys/([^/]+)/versions)", [&](const Request& q, Response& r) {
    std::string k = q.matches[1];
    size_t max = std::strtoul(param(q, "maxresults").c_str(), nullptr, 10);
    size_t skip = std::strtoul(param(q, "$skiptoken").c_str(), nullptr, 10);
    handle(c, q, r, "listversions", "list", k, "", [&](const json&) { return c.vault->list_versions(k, max, skip); });
  });
  for (const char* op : {"wrapkey", "unwrapkey"}) {
    bool unwrap = std::string(op) == "unwrapkey";
    s.Post(std::string(R"(/keys/([^/]+)/([^/]*)/)") + op, [&, unwrap](const Request& q, Response& r) {
      std::string k = q.matches[1], v = q.matches[2];
      handle(c, q, r, unwrap ? "unwrapKey" : "wrapKey", unwrap ? "unwrapKey" : "wrapKey", k, v,
             [&](const json& b) { return c.vault->wrap(k, v, b, unwrap); });
    });
  }
  s.Get(R"(/keys/([^/]+)/?([^/]*))", [&](const Request& q, Response& r) {
    std::string k = q.matches[1], v = q.matches[2];
    handle(c, q, r, "get", "get", k, v, [&](const json&) { return c.vault->get_key(k, v); });
  });
  s.Patch(R"(/keys/([^/]+)/?([^/]*))", [&](const Request& q, Response& r) {
    std::string k = q.matches[1], v = q.matches[2];
    handle(c, q, r, "update", "update", k, v, [&](const json& b) { return c.vault->update_key(k, v, b); });
  });
  s.Delete(R"(/keys/([^/]+))", [&](const Request& q, Response& r) {
    std::string k = q.matches[1];
    handle(c, q, r, "delete", "delete", k, "", [&](const json&) { return c.vault->delete_key(k); });
  });
  s.Get(R"(/deletedkeys/([^/]+))", [&](const Request& q, Response& r) {
    std::string k = q.matches[1];
    handle(c, q, r, "getdeleted", "get", k, "", [&](const json&) { return c.vault->get_deleted_key(k); });
  });
  s.Post(R"(/deletedkeys/([^/]+)/recover)", [&](const Request& q, Response& r) {
    std::string k = q.matches[1];
    handle(c, q, r, "recover", "recover", k, "", [&](const json&) { return c.vault->recover_key(k); });
  });
  s.Delete(R"(/deletedkeys/([^/]+))", [&](const Request& q, Response& r) {
    std::string k = q.matches[1];
    handle(c, q, r, "purge", "purge", k, "", [&](const json&) { return c.vault->purge_key(k); });
  });

  add_token_routes(s, c);

  // Administration (the control plane Azure keeps in ARM): identities and access policies.
  auto admin = [&](const Request& q, Response& r) { return require_admin(c, q, r); };
  auto principal_json = [](const Principal& p) {
    return json{{"name", p.name}, {"clientId", p.client_id}, {"principalId", p.principal_id},
                {"id", "/cmkfs-vault/identities/" + p.name}, {"type", "Microsoft.ManagedIdentity/userAssignedIdentities"}};
  };
  s.Post("/admin/identities", [&, admin, principal_json](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    if (!admin(q, r)) return;
    json b = json::parse(q.body, nullptr, false);
    if (!b.is_object() || !b.contains("name") || !b["name"].is_string()) {
      return send(r, Reply::error(400, "BadParameter", "name (a string) required"));
    }
    send(r, Reply{200, principal_json(c.vault->create_identity(b["name"]))});
  });
  s.Get("/admin/identities", [&, admin, principal_json](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    if (!admin(q, r)) return;
    json all = json::array();
    for (const auto& p : c.vault->identities()) all.push_back(principal_json(p));
    send(r, Reply{200, all});
  });
  s.Put(R"(/admin/policies/([^/]+))", [&, admin](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    if (!admin(q, r)) return;
    json b = json::parse(q.body, nullptr, false);
    auto strings = [](const json& v) {
      return v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_string(); });
    };
    if (!b.is_object() || !b.contains("permissions") || !strings(b["permissions"])) {
      return send(r, Reply::error(400, "BadParameter", "permissions (a list of strings) required"));
    }
    std::string oid = q.matches[1];
    c.vault->set_policy(oid, b["permissions"].get<std::set<std::string>>());
    c.log(&kAdmin, "setpolicy", oid, "", 200);
    send(r, Reply{200, json{{"objectId", oid}, {"permissions", {{"keys", b["permissions"]}}}}});
  });
  s.Delete(R"(/admin/policies/([^/]+))", [&, admin](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    if (!admin(q, r)) return;
    std::string oid = q.matches[1];
    bool had = c.vault->delete_policy(oid);
    c.log(&kAdmin, "deletepolicy", oid, "", had ? 200 : 404);
    send(r, had ? Reply{200, json{{"objectId", oid}}} : Reply::error(404, "NotFound", "no policy for " + oid));
  });
  add_network_routes(s, c);
  s.Post("/admin/apply", [&](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    if (!require_admin(c, q, r)) return;
    json doc = json::parse(q.body, nullptr, false);
    Reply reply = doc.is_discarded() ? Reply::error(400, "BadParameter", "the template is not JSON")
                                     : apply_template(*c.vault, doc);
    c.log(&kAdmin, "apply", "", "", reply.status,
          reply.status == 200 ? json{{"changed", reply.body["changed"]}} : json(nullptr));
    send(r, reply);
  });
  s.Get("/healthz", [](const Request&, Response& r) { r.set_content("ok", "text/plain"); });
}

}  // namespace

std::string resource_of(const std::string& url) {
  auto start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  auto end = url.find_first_of("/?#", start);
  std::string host = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
  auto colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']') == std::string::npos) host.resize(colon);  // drop the port
  if (colon != std::string::npos && host.find(']') != std::string::npos && colon > host.find(']')) host.resize(colon);
  return "https://" + host;
}

std::string mint_token(const std::string& secret, const Principal& p, int64_t lifetime, const std::string& audience) {
  std::string claims = keyclient::base64url_encode(safe_dump(json{{"sub", p.principal_id}, {"appid", p.client_id},
                                                                  {"name", p.name}, {"aud", audience},
                                                                  {"exp", unix_now() + lifetime}}));
  auto mac = crypto::hmac_sha256(crypto::as_bytes(secret), crypto::as_bytes(claims));
  return "cmkv1." + claims + "." + keyclient::base64url_encode(mac);
}

std::optional<Principal> verify_token(const std::string& secret, const std::string& token, const std::string& audience,
                                      int64_t* expires) {
  if (token.rfind("cmkv1.", 0) != 0) return std::nullopt;
  auto dot = token.find('.', 6);
  if (dot == std::string::npos) return std::nullopt;
  std::string claims = token.substr(6, dot - 6);
  auto mac = crypto::hmac_sha256(crypto::as_bytes(secret), crypto::as_bytes(claims));
  std::string expect = keyclient::base64url_encode(mac);
  if (!crypto::equal_constant_time(crypto::as_bytes(expect), crypto::as_bytes(std::string_view(token).substr(dot + 1)))) {
    return std::nullopt;
  }
  auto raw = keyclient::base64url_decode(claims);
  if (!raw) return std::nullopt;
  json j = json::parse(std::string(raw->begin(), raw->end()), nullptr, false);
  if (!j.is_object() || !j["exp"].is_number_integer() || j["exp"].get<int64_t>() < unix_now()) return std::nullopt;
  if (!j["aud"].is_string() || j["aud"].get<std::string>() != audience) return std::nullopt;
  if (expires != nullptr) *expires = j["exp"].get<int64_t>();
  return Principal{j.value("name", ""), j.value("appid", ""), j.value("sub", "")};
}

Result<std::string> load_or_create_secret(const std::string& dir, const std::string& name) {
  std::string path = dir + "/" + name;
  std::ifstream in(path);
  std::string s;
  if (in >> s && s.size() == 64) return s;
  s = random_hex(32);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError(errno, "cannot write " + path);
  bool ok = ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return Status::IOError(errno, "cannot write " + path);
  return s;
}

// Requests are small JSON documents.
constexpr size_t kMaxRequestBytes = 64 << 10;

// Before a request's body is read: bodies that cannot be bounded (chunked, compressed, without
// a length) are refused, and so are bodies over kMaxRequestBytes.
httplib::Server::HandlerResponse refuse_oversized(Context& c, const Request& q, Response& r) {
  auto refused = web::unbounded_body(q, kMaxRequestBytes);
  if (!refused) return httplib::Server::HandlerResponse::Unhandled;
  std::lock_guard<std::mutex> g(c.mu);
  send(r, Reply::error(refused->first, "BadParameter", refused->second));
  c.log(nullptr, q.method + " " + q.path, "", "", r.status);
  return httplib::Server::HandlerResponse::Handled;
}

Status serve(const ServeOptions& o) {
  // Bound before the state is touched: a second `serve` fails here and changes nothing.
  std::set<uid_t> local_users{0, ::geteuid()};  // the users whose processes get tokens and reserved threads
  local_users.insert(o.token_uids.begin(), o.token_uids.end());
  auto bound = web::bind_https(o.dir, o.host, o.port, "cmkfs-vault local CA", kMaxRequestBytes, "cmkfs-vault", local_users);
  if (!bound.ok()) return bound.status();
  httplib::SSLServer& server = *bound->server;
  int port = bound->port;
  std::string host = o.host == "0.0.0.0" ? "127.0.0.1" : o.host;
  std::string url = "https://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  std::string advertised = o.public_url.empty() ? url : o.public_url;

  Context c;
  c.dir = o.dir;
  c.console_idle_seconds = o.console_idle_seconds;
  auto vault = Vault::open(o.dir, o.purge_protection);
  if (!vault.ok()) return vault.status();
  c.vault = std::move(*vault);
  auto secret = load_or_create_secret(o.dir);
  if (!secret.ok()) return secret.status();
  c.secret = *secret;
  auto header = load_or_create_secret(o.dir, "identity-header");
  if (!header.ok()) return header.status();
  c.identity_header = *header;
  c.tenant = c.vault->system_identity().principal_id;
  c.resource = resource_of(advertised);
  c.token_uids = local_users;
  c.token_lifetime = o.token_lifetime;
  c.audit.open(o.dir + "/audit.log", std::ios::app);
  c.vault->set_base_url(advertised);

  server.set_pre_routing_handler([&c](const Request& q, Response& r) {
    audited = false;
    return refuse_oversized(c, q, r);
  });
  add_routes(server, c);
  add_console_routes(server, c);
  // Every reply has Azure's error shape, and every request an audit line.
  server.set_exception_handler([&c](const Request& q, Response& r, std::exception_ptr) {
    send(r, Reply::error(500, "InternalError", "The request could not be served."));
    std::lock_guard<std::mutex> g(c.mu);
    c.log(nullptr, q.method + " " + q.path, "", "", 500);
  });
  server.set_error_handler([](const Request&, Response& r) {
    if (r.body.empty()) {
      send(r, Reply::error(r.status, r.status == 404 ? "NotFound" : "BadRequest", "The request is not served here."));
    }
  });
  server.set_logger([&c](const Request& q, const Response& r) {
    if (audited) return;
    std::lock_guard<std::mutex> g(c.mu);
    c.log(nullptr, q.method + " " + q.path, "", "", r.status);
  });

  bool ok = web::serve_until_signalled(server, [&] {
    {
      std::ofstream info(o.dir + "/server.json.tmp");
      info << json{{"url", url}, {"pid", ::getpid()}, {"ca", o.dir + "/ca.pem"}}.dump() << "\n";
    }
    std::filesystem::rename(o.dir + "/server.json.tmp", o.dir + "/server.json");
    std::cerr << "cmkfs-vault: serving " << url << " (state in " << o.dir << ", CA " << o.dir << "/ca.pem)\n";
  });
  std::error_code ec;
  std::filesystem::remove(o.dir + "/server.json", ec);
  return ok ? Status::Ok() : Status::IOError(EIO, "the server stopped with an error");
}

}  // namespace cmkfs::devvault
