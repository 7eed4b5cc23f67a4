// cmkfs-vault: a local key vault speaking the Azure Key Vault keys REST protocol, for development
// and tests. `serve` runs it; every other command acts on the server running for --dir.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <iostream>

#include "crypto/base/nearest.h"
#include "keyclient/devvault/console.h"
#include "keyclient/web/password_file.h"
#include "keyclient/devvault/server.h"
#include "keyclient/http.h"

using namespace cmkfs;
using namespace cmkfs::devvault;

namespace {

// Talks to the running server as the admin principal; prints the JSON answer.
class AdminClient {
 public:
  explicit AdminClient(const std::string& dir) : dir_(dir) {}

  Status connect() {
    std::ifstream in(dir_ + "/server.json");
    json info = json::parse(in, nullptr, false);
    if (!in || info.is_discarded()) {
      return Status::Unavailable("no cmkfs-vault is serving " + dir_ + " (start one with: cmkfs-vault --dir " + dir_ + " serve)");
    }
    url_ = info["url"];
    auto secret = load_or_create_secret(dir_);
    if (!secret.ok()) return secret.status();
    token_ = mint_token(*secret, kAdmin, 300, resource_of(url_));
    transport_ = keyclient::make_curl_transport({.ca_file = dir_ + "/ca.pem", .timeout_seconds = 30});
    return Status::Ok();
  }

  Result<json> call(const std::string& method, const std::string& path, const json& body = nullptr) {
    keyclient::HttpRequest req{method, url_ + path, {{"Authorization", "Bearer " + token_}, {"Metadata", "true"}}, ""};
    if (!body.is_null()) {
      req.body = body.dump();
      req.headers.push_back({"Content-Type", "application/json"});
    }
    auto resp = transport_->send(req);
    if (!resp.ok()) return Status(resp.status().code(), "cannot reach cmkfs-vault at " + url_ + ": " + resp.status().message());
    json j = resp->body.empty() ? json::object() : json::parse(resp->body, nullptr, false);
    if (resp->status >= 300) {
      std::string msg = j.is_object() && j.contains("error") ? j["error"].value("message", resp->body) : resp->body;
      return Status(EIO, "HTTP " + std::to_string(resp->status) + ": " + msg);
    }
    return j;
  }

  std::string resource() const { return resource_of(url_); }
  std::string keys(const std::string& rest) const { return "/keys/" + rest + (rest.find('?') == std::string::npos ? "?" : "&") + "api-version=7.4"; }
  std::string deleted(const std::string& rest) const { return "/deletedkeys/" + rest + "?api-version=7.4"; }

 private:
  std::string dir_, url_, token_;
  std::unique_ptr<keyclient::HttpTransport> transport_;
};

int print(const Result<json>& r) {
  if (!r.ok()) {
    std::cerr << "cmkfs-vault: " << r.status().message() << "\n";
    return 1;
  }
  std::cout << r->dump(2) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cmkfs-vault: a local key vault speaking the Azure Key Vault keys REST API"};
  app.set_version_flag("--version", "cmkfs-vault 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();
  const char* env_dir = std::getenv("CMKFS_VAULT_DIR");
  std::string dir = env_dir != nullptr ? env_dir : "/var/lib/cmkfs-vault";
  app.add_option("--dir", dir, "The vault's state directory (env CMKFS_VAULT_DIR)")->capture_default_str();

  ServeOptions serve_opts;
  std::string listen = "127.0.0.1:8443";
  bool no_purge_protection = false;
  auto* serve_cmd = app.add_subcommand("serve", "Run the vault over HTTPS; its CA is written to DIR/ca.pem");
  serve_cmd->add_option("--listen", listen, "HOST:PORT (port 0: any free port)")->capture_default_str();
  serve_cmd->add_flag("--no-purge-protection", no_purge_protection, "Allow purging soft-deleted keys");
  serve_cmd->add_option("--token-lifetime", serve_opts.token_lifetime, "Seconds an access token lives")->capture_default_str();
  serve_cmd->add_option("--public-url", serve_opts.public_url,
                        "The URL clients reach the vault at, when not the listener's (a proxy in front)");
  serve_cmd->add_option("--token-uid", serve_opts.token_uids,
                        "A user (uid) besides root and the vault's own that may get identity tokens");

  serve_cmd->add_option("--console-session-idle", serve_opts.console_idle_seconds,
                        "Seconds a console session may go unused before it ends")->capture_default_str();

  // The console's admin password: written here, read by the server at each sign-in.
  std::string password_file;
  auto* admin = app.add_subcommand("admin", "The web console's administrator");
  admin->require_subcommand(1);
  auto* set_password = admin->add_subcommand("set-password", "Set the console's admin password (read from stdin, "
                                                             "or asked for on a terminal)");
  set_password->add_option("--password-file", password_file, "Read it from this file instead")->check(CLI::ExistingFile);

  std::string name, object_id, version, kty = "RSA", curve, client_id;
  int size = 2048;
  std::vector<std::string> permissions;
  auto* identity = app.add_subcommand("identity", "Managed identities");
  identity->require_subcommand(1);
  auto* id_create = identity->add_subcommand("create", "Create a user-assigned identity (prints clientId, principalId)");
  id_create->add_option("--name", name)->required();
  auto* id_list = identity->add_subcommand("list", "List identities, the system-assigned one first");

  auto* set_policy = app.add_subcommand("set-policy", "Grant key permissions to an identity");
  set_policy->add_option("--object-id", object_id, "The identity's principalId")->required();
  set_policy->add_option("--key-permissions", permissions, "get wrapKey unwrapKey ... or all")->required();
  auto* delete_policy = app.add_subcommand("delete-policy", "Remove an identity's access");
  delete_policy->add_option("--object-id", object_id)->required();

  auto* key = app.add_subcommand("key", "Keys");
  key->require_subcommand(1);
  auto* k_create = key->add_subcommand("create", "Create a key, or a new version of it");
  k_create->add_option("--kty", kty, "RSA, RSA-HSM or EC")->capture_default_str();
  k_create->add_option("--size", size, "RSA key size")->capture_default_str();
  k_create->add_option("--curve", curve, "EC curve (P-256, P-384, P-521)");
  k_create->add_option("--ops", permissions, "key_ops (default: all the key type allows)");
  auto* k_show = key->add_subcommand("show", "Show a key (latest version unless --version)");
  auto* k_versions = key->add_subcommand("list-versions", "List a key's versions");
  auto* k_rotate = key->add_subcommand("rotate", "Create a new version");
  auto* k_disable = key->add_subcommand("disable", "Disable a version, or every version");
  auto* k_enable = key->add_subcommand("enable", "Enable a version, or every version");
  auto* k_delete = key->add_subcommand("delete", "Soft-delete a key");
  auto* k_recover = key->add_subcommand("recover", "Recover a soft-deleted key");
  auto* k_purge = key->add_subcommand("purge", "Purge a soft-deleted key (refused under purge protection)");
  for (auto* sub : {k_create, k_show, k_versions, k_rotate, k_disable, k_enable, k_delete, k_recover, k_purge}) {
    sub->add_option("--name", name, "Key name")->required();
  }
  for (auto* sub : {k_show, k_disable, k_enable}) sub->add_option("--version", version, "Key version");

  // App registrations: what Entra ID's client credentials authenticate (secret, certificate,
  // federated token), granted like identities with set-policy --object-id PRINCIPAL_ID.
  std::string file, issuer, subject, audience = "api://AzureADTokenExchange";
  auto* apps = app.add_subcommand("app", "App registrations (service principals)");
  apps->require_subcommand(1);
  auto* app_create = apps->add_subcommand("create", "Register an app (prints clientId, principalId, tenantId)");
  app_create->add_option("--name", name)->required();
  auto* secret = apps->add_subcommand("secret", "Client secrets");
  secret->require_subcommand(1);
  auto* secret_create = secret->add_subcommand("create", "Make a new client secret (printed once)");
  auto* secret_delete = secret->add_subcommand("delete", "Delete every client secret of the app");
  auto* cert = apps->add_subcommand("certificate", "Client certificates");
  cert->require_subcommand(1);
  auto* cert_add = cert->add_subcommand("add", "Register a certificate (PEM) whose key signs client assertions");
  cert_add->add_option("--cert", file, "PEM certificate file")->required()->check(CLI::ExistingFile);
  auto* federated = app.add_subcommand("federated-credential", "Federated identity credentials (workload identity)");
  federated->require_subcommand(1);
  auto* fed_create = federated->add_subcommand("create", "Trust tokens of ISSUER for SUBJECT, signed by the issuer's key");
  fed_create->add_option("--issuer", issuer)->required();
  fed_create->add_option("--subject", subject)->required();
  fed_create->add_option("--audience", audience)->capture_default_str();
  fed_create->add_option("--issuer-key", file, "The issuer's public key or certificate (PEM)")->required()->check(CLI::ExistingFile);
  for (auto* sub : {secret_create, secret_delete, cert_add, fed_create}) {
    sub->add_option("--client-id", client_id, "The app's client id")->required();
  }

  // The firewall, with az keyvault's words.
  std::string default_action, bypass, ip_address;
  auto* update = app.add_subcommand("update", "Change the vault's firewall: default action, trusted-service bypass");
  update->add_option("--default-action", default_action, "Allow, or Deny what no network rule admits")
      ->check(CLI::IsMember({"Allow", "Deny"}, CLI::ignore_case));
  update->add_option("--bypass", bypass, "trusted (AzureServices: the vault's system identity passes) or none")
      ->check(CLI::IsMember({"trusted", "AzureServices", "none", "None"}, CLI::ignore_case));
  auto* rule = app.add_subcommand("network-rule", "The firewall's IP rules");
  rule->require_subcommand(1);
  auto* rule_add = rule->add_subcommand("add", "Admit an address or CIDR range");
  auto* rule_remove = rule->add_subcommand("remove", "Stop admitting an address or CIDR range");
  auto* rule_list = rule->add_subcommand("list", "Show the firewall (networkAcls)");
  for (auto* sub : {rule_add, rule_remove}) {
    sub->add_option("--ip-address", ip_address, "IPv4 or IPv6 address or CIDR range")->required();
  }

  std::string template_file;
  auto* apply = app.add_subcommand("apply", "Make identities, keys, access policies and the firewall what a JSON "
                                            "template declares (applying it twice changes nothing)");
  apply->add_option("FILE", template_file, "The template (see the README)")->required()->check(CLI::ExistingFile);

  auto* token = app.add_subcommand("token", "Print an access token for an identity (as IMDS would issue it)");
  token->add_option("--client-id", client_id, "Identity client id; default the system-assigned identity");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // A mistyped command: say which one was meant.
    std::string guess;
    if (argc > 1 && argv[1][0] != '-') {
      std::vector<std::string> names;
      for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
      for (int i = 1; i < argc && guess.empty(); ++i) {
        bool known = std::find(names.begin(), names.end(), argv[i]) != names.end();
        if (argv[i][0] != '-' && !known) guess = nearest(argv[i], names);
      }
    }
    std::cerr << "cmkfs-vault: " << e.what() << (guess.empty() ? "" : "; did you mean '" + guess + "'?")
              << " (cmkfs-vault --help)\n";
    return 2;
  }

  if (serve_cmd->parsed()) {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) {
      std::cerr << "cmkfs-vault: --listen needs HOST:PORT\n";
      return 2;
    }
    serve_opts.dir = dir;
    serve_opts.host = listen.substr(0, colon);
    serve_opts.port = std::atoi(listen.c_str() + colon + 1);
    serve_opts.purge_protection = !no_purge_protection;
    Status s = serve(serve_opts);
    if (!s.ok()) std::cerr << "cmkfs-vault: " << s.message() << "\n";
    return s.ok() ? 0 : 1;
  }

  if (set_password->parsed()) {
    Status s = web::set_password_file(console_password_path(dir), password_file);
    if (!s.ok()) std::cerr << "cmkfs-vault: " << s.message() << "\n";
    else std::cerr << "cmkfs-vault: the console's admin password is set (" << console_password_path(dir) << ")\n";
    return s.ok() ? 0 : 1;
  }

  AdminClient c(dir);
  if (Status s = c.connect(); !s.ok()) {
    std::cerr << "cmkfs-vault: " << s.message() << "\n";
    return 1;
  }
  if (id_create->parsed()) return print(c.call("POST", "/admin/identities", json{{"name", name}}));
  if (id_list->parsed()) return print(c.call("GET", "/admin/identities"));
  if (set_policy->parsed()) return print(c.call("PUT", "/admin/policies/" + object_id, json{{"permissions", permissions}}));
  if (delete_policy->parsed()) return print(c.call("DELETE", "/admin/policies/" + object_id));
  if (k_create->parsed()) {
    json body{{"kty", kty}};
    if (kty.rfind("RSA", 0) == 0) body["key_size"] = size;
    if (!curve.empty()) body["crv"] = curve;
    if (!permissions.empty()) body["key_ops"] = permissions;
    return print(c.call("POST", c.keys(name + "/create"), body));
  }
  if (k_show->parsed()) return print(c.call("GET", c.keys(name + "/" + version)));
  if (k_versions->parsed()) return print(c.call("GET", c.keys(name + "/versions")));
  if (k_rotate->parsed()) return print(c.call("POST", c.keys(name + "/rotate")));
  if (k_disable->parsed() || k_enable->parsed()) {
    json body{{"attributes", {{"enabled", k_enable->parsed()}}}};
    if (!version.empty()) return print(c.call("PATCH", c.keys(name + "/" + version), body));
    auto versions = c.call("GET", c.keys(name + "/versions?maxresults=25"));
    if (!versions.ok()) return print(versions);
    json updated = json::array();
    for (const auto& v : (*versions)["value"]) {  // every version: a disabled key refuses all
      std::string kid = v["kid"];
      auto r = c.call("PATCH", c.keys(name + "/" + kid.substr(kid.rfind('/') + 1)), body);
      if (!r.ok()) return print(r);
      updated.push_back((*r)["key"]["kid"]);
    }
    return print(json{{"updated", updated}, {"enabled", k_enable->parsed()}});
  }
  if (k_delete->parsed()) return print(c.call("DELETE", c.keys(name)));
  if (k_recover->parsed()) return print(c.call("POST", c.deleted(name + "/recover")));
  if (k_purge->parsed()) return print(c.call("DELETE", c.deleted(name)));
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  if (app_create->parsed()) return print(c.call("POST", "/admin/apps", json{{"name", name}}));
  if (secret_create->parsed()) return print(c.call("POST", "/admin/apps/" + client_id + "/secrets"));
  if (secret_delete->parsed()) return print(c.call("DELETE", "/admin/apps/" + client_id + "/secrets"));
  if (cert_add->parsed()) return print(c.call("POST", "/admin/apps/" + client_id + "/certificates", json{{"pem", read(file)}}));
  if (fed_create->parsed()) {
    return print(c.call("POST", "/admin/apps/" + client_id + "/federated-credentials",
                        json{{"issuer", issuer}, {"subject", subject}, {"audience", audience}, {"issuerKey", read(file)}}));
  }
  if (apply->parsed()) {
    std::ifstream in(template_file);
    json doc = json::parse(in, nullptr, false);
    if (doc.is_discarded()) {
      std::cerr << "cmkfs-vault: " << template_file << " is not JSON\n";
      return 2;
    }
    return print(c.call("POST", "/admin/apply", doc));
  }
  if (update->parsed()) {
    json body = json::object();
    if (!default_action.empty()) body["defaultAction"] = CLI::detail::to_lower(default_action) == "deny" ? "Deny" : "Allow";
    if (!bypass.empty()) {
      std::string b = CLI::detail::to_lower(bypass);
      body["bypass"] = b == "trusted" || b == "azureservices" ? "AzureServices" : "None";
    }
    if (body.empty()) {
      std::cerr << "cmkfs-vault: update needs --default-action or --bypass\n";
      return 2;
    }
    return print(c.call("PATCH", "/admin/network", body));
  }
  if (rule_add->parsed()) return print(c.call("POST", "/admin/network/ip-rules", json{{"ipRule", ip_address}}));
  if (rule_remove->parsed()) {
    return print(c.call("DELETE", "/admin/network/ip-rules?ipRule=" + keyclient::percent_encode(ip_address)));
  }
  if (rule_list->parsed()) return print(c.call("GET", "/admin/network"));
  if (token->parsed()) {
    std::string path = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + c.resource();
    if (!client_id.empty()) path += "&client_id=" + client_id;
    return print(c.call("GET", path));
  }
  return 2;
}
