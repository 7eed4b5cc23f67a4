// The vault console's pages and forms, following the article's portal steps: identities, keys
// (create, versions, enable/disable, delete/recover/purge), access policies, networking (the
// firewall) and the audit log. Each form's action calls the Vault as the REST API does.
#include <set>

#include "keyclient/devvault/console.h"
#include "keyclient/web/html.h"

namespace cmkfs::devvault {
namespace {

using httplib::Request;
using html::esc;
using html::hidden;

const std::vector<std::string> kPermissions = {"get", "list", "wrapKey", "unwrapKey", "encrypt", "decrypt", "sign",
                                               "verify", "create", "update", "delete", "recover", "purge"};

std::string form_field(const Request& q, const std::string& name) { return q.get_param_value(name).substr(0, 256); }

// Reply -> outcome: the error's message on failure, `done` on success.
web::Outcome outcome(const Reply& r, const std::string& next, const std::string& done, const std::string& op,
                       const std::string& key = "", const std::string& version = "") {
  std::string msg = done;
  if (r.status >= 300) {
    msg = r.body.contains("error") ? r.body["error"].value("message", "failed") : "failed";
  }
  return web::Outcome(next, msg, r.status, op, key, version);
}

std::string when(int64_t t) { return t == 0 ? "" : iso_time(t); }

std::string identities_page(Context& c, const web::Session& s, const Request&) {
  std::string rows;
  for (const auto& p : c.vault->identities()) {
    bool system = p.principal_id == c.vault->system_identity().principal_id;
    rows += "<tr><td>" + esc(p.name) + "</td><td><code>" + esc(p.client_id) + "</code></td><td><code>" +
            esc(p.principal_id) + "</code></td><td>" + (system ? "System-assigned" : "User-assigned") + "</td></tr>";
  }
  return "<table id=\"identities\"><tr><th>Name</th><th>Client ID</th><th>Object (principal) ID</th><th>Type</th></tr>" +
         rows +
         "</table><form method=\"post\" action=\"/console/identities\"><fieldset><legend>Create a user-assigned "
         "identity</legend>" + html::csrf_field(s.csrf) +
         "<label>Name <input name=\"name\" id=\"identity-name\" required pattern=\"[A-Za-z0-9_-]{1,64}\"></label>"
         "<button type=\"submit\">Create</button></fieldset></form>";
}

std::string keys_page(Context& c, const web::Session& s, const Request&) {
  std::string live, deleted;
  for (const auto& k : c.vault->key_list()) {
    std::string name = k["name"];
    if (k["deleted"]) {
      std::string h = hidden("name", name);
      deleted += "<tr><td>" + esc(name) + "</td><td>" + when(k["deletedDate"]) + "</td><td>" +
                 when(k["scheduledPurgeDate"]) + "</td><td>" + html::button_form("/console/keys/recover", "Recover", s.csrf, h) +
                 (c.vault->purge_protection() ? std::string("<span>purge protected</span>")
                                              : html::button_form("/console/keys/purge", "Purge", s.csrf, h)) +
                 "</td></tr>";
      continue;
    }
    const json& latest = k["versions"].back();
    live += "<tr><td><a href=\"/console/keys/" + esc(name) + "\">" + esc(name) + "</a></td><td>" +
            esc(k["kty"].get<std::string>()) + "</td><td>" + std::to_string(k["versions"].size()) + "</td><td>" +
            (latest["enabled"] ? "yes" : "no") + "</td><td>" + when(latest["created"]) + "</td></tr>";
  }
  std::string out = std::string("<p>Purge protection: <strong id=\"purge-protection\">") +
                    (c.vault->purge_protection() ? "on" : "off") + "</strong> (soft-deleted keys are kept 90 days)</p>";
  out += "<table id=\"keys\"><tr><th>Name</th><th>Type</th><th>Versions</th><th>Enabled</th><th>Created</th></tr>" +
         live + "</table>";
  out += "<form method=\"post\" action=\"/console/keys\"><fieldset><legend>Generate a key</legend>" +
         html::csrf_field(s.csrf) +
         "<label>Name <input name=\"name\" id=\"key-name\" required pattern=\"[0-9A-Za-z-]{1,127}\"></label>"
         "<label>Key type <select name=\"kty\" id=\"key-type\"><option>RSA</option><option>RSA-HSM</option>"
         "<option>EC</option><option>EC-HSM</option></select></label>"
         "<label>RSA key size <select name=\"size\"><option>2048</option><option>3072</option><option>4096</option>"
         "</select></label><label>EC curve <select name=\"curve\"><option>P-256</option><option>P-384</option>"
         "<option>P-521</option></select></label><button type=\"submit\">Create</button></fieldset></form>";
  if (!deleted.empty()) {
    out += "<h2>Deleted keys</h2><table id=\"deleted-keys\"><tr><th>Name</th><th>Deleted</th><th>Purge after</th>"
           "<th></th></tr>" + deleted + "</table>";
  }
  return out;
}

std::string key_page(Context& c, const web::Session& s, const Request& q) {
  std::string name = q.matches[1];
  json key;
  for (const auto& k : c.vault->key_list()) {
    if (k["name"] == name && !k["deleted"]) key = k;
  }
  if (key.is_null()) return "<p class=\"flash error\">No key named " + esc(name) + ".</p>";
  std::string h = hidden("name", name);
  std::string rows;
  const json& versions = key["versions"];
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    std::string v = (*it)["version"];
    bool enabled = (*it)["enabled"];
    rows += "<tr><td><code>" + esc(c.vault->base_url() + "/keys/" + name + "/" + v) + "</code></td><td>" +
            (enabled ? "yes" : "no") + "</td><td>" + when((*it)["created"]) + "</td><td>" +
            html::button_form(enabled ? "/console/keys/disable" : "/console/keys/enable", enabled ? "Disable" : "Enable",
                              s.csrf, h + hidden("version", v)) +
            "</td></tr>";
  }
  return "<p>Key identifier (no version: follow the latest): <code id=\"key-id\">" +
         esc(c.vault->base_url() + "/keys/" + name) + "</code></p><table id=\"versions\"><tr><th>Version</th>"
         "<th>Enabled</th><th>Created</th><th></th></tr>" + rows + "</table>" +
         html::button_form("/console/keys/rotate", "New version", s.csrf, h) +
         html::button_form("/console/keys/delete", "Delete key", s.csrf, h);
}

std::string policies_page(Context& c, const web::Session& s, const Request&) {
  std::map<std::string, std::string> names;
  for (const auto& p : c.vault->identities()) names[p.principal_id] = p.name;
  std::string rows;
  for (const auto& [oid, perms] : c.vault->policies()) {
    std::string list;
    for (const auto& p : perms) list += (list.empty() ? "" : ", ") + p;
    rows += "<tr><td>" + esc(names.count(oid) ? names[oid] : "") + "</td><td><code>" + esc(oid) + "</code></td><td>" +
            esc(list) + "</td><td>" +
            html::button_form("/console/policies/remove", "Remove", s.csrf, hidden("objectId", oid)) + "</td></tr>";
  }
  std::string options;
  for (const auto& p : c.vault->identities()) {
    options += "<option value=\"" + esc(p.principal_id) + "\">" + esc(p.name) + " (" + esc(p.principal_id) + ")</option>";
  }
  std::string boxes;
  for (const auto& p : kPermissions) {
    bool usual = p == "get" || p == "wrapKey" || p == "unwrapKey";
    boxes += "<label><input type=\"checkbox\" name=\"permission\" value=\"" + p + "\"" + (usual ? " checked" : "") +
             "> " + p + "</label>";
  }
  return "<table id=\"policies\"><tr><th>Principal</th><th>Object ID</th><th>Key permissions</th><th></th></tr>" + rows +
         "</table><form method=\"post\" action=\"/console/policies\"><fieldset><legend>Add access policy</legend>" +
         html::csrf_field(s.csrf) + "<p><label>Principal <select name=\"objectId\" id=\"principal\">" + options +
         "</select></label></p><p>" + boxes + "</p><button type=\"submit\">Add</button></fieldset></form>";
}

std::string networking_page(Context& c, const web::Session& s, const Request&) {
  const NetworkAcls& n = c.vault->network();
  std::string rows;
  for (const auto& r : n.ip_rules) {
    rows += "<tr><td><code>" + esc(r.to_string()) + "</code></td><td>" +
            html::button_form("/console/networking/rules/remove", "Remove", s.csrf, hidden("ipRule", r.to_string())) +
            "</td></tr>";
  }
  auto radio = [&](const char* value, bool on, const char* label) {
    return std::string("<label><input type=\"radio\" name=\"defaultAction\" value=\"") + value + "\"" +
           (on ? " checked" : "") + "> " + label + "</label>";
  };
  return "<form method=\"post\" action=\"/console/networking\"><fieldset><legend>Firewall</legend>" +
         html::csrf_field(s.csrf) + "<p>" + radio("Allow", !n.deny_by_default, "Allow public access from all networks") +
         radio("Deny", n.deny_by_default, "Allow public access from specific addresses only") +
         "</p><p><label><input type=\"checkbox\" name=\"bypass\" value=\"AzureServices\"" +
         (n.trusted_bypass ? " checked" : "") +
         "> Allow trusted services (the vault's system-assigned identity) to bypass this firewall</label></p>"
         "<button type=\"submit\">Save</button></fieldset></form><h2>IP rules</h2><table id=\"ip-rules\"><tr>"
         "<th>Address range</th><th></th></tr>" + rows +
         "</table><form method=\"post\" action=\"/console/networking/rules\">" + html::csrf_field(s.csrf) +
         "<label>IPv4 or IPv6 address or CIDR range <input name=\"ipRule\" id=\"ip-rule\" required></label>"
         "<button type=\"submit\">Add</button></form>";
}

// The last lines of the audit log (up to 4 MiB back), newest first, that match every filter.
std::string audit_page(Context& c, const web::Session&, const Request& q) {
  std::string f_identity = form_field(q, "identity"), f_key = form_field(q, "key"), f_op = form_field(q, "operation"),
              f_result = form_field(q, "result");
  auto lines = web::json_lines_tail(c.dir + "/audit.log");
  std::string rows;
  int shown = 0;
  for (auto it = lines.rbegin(); it != lines.rend() && shown < 200; ++it) {
    const json& j = *it;
    const json& id = j.contains("identity") ? j["identity"] : json();
    std::string who = id.is_object() ? web::text_of(id, "appid") + " / " + web::text_of(id, "oid") : "(none)";
    std::string op = web::text_of(j, "operation"), key = web::text_of(j, "key"), result = web::text_of(j, "result");
    if ((!f_identity.empty() && who.find(f_identity) == std::string::npos) || (!f_key.empty() && key != f_key) ||
        (!f_op.empty() && op != f_op) || (!f_result.empty() && result != f_result)) {
      continue;
    }
    std::string note = web::text_of(j, "error");
    if (j.contains("clientAddress")) note += (note.empty() ? "" : " ") + std::string("from ") + web::text_of(j, "clientAddress");
    rows += "<tr><td>" + esc(web::text_of(j, "time")) + "</td><td><code>" + esc(who) + "</code></td><td>" + esc(op) +
            "</td><td>" + esc(key) + "</td><td><code>" + esc(web::text_of(j, "version")) + "</code></td><td>" +
            esc(result) + "</td><td>" + esc(note) + "</td></tr>";
    ++shown;
  }
  auto input = [](const char* name, const std::string& value) {
    return std::string("<label>") + name + " <input name=\"" + name + "\" value=\"" + esc(value) + "\"></label>";
  };
  return "<form method=\"get\" action=\"/console/audit\"><fieldset><legend>Filter</legend>" +
         input("identity", f_identity) + input("key", f_key) + input("operation", f_op) + input("result", f_result) +
         "<button type=\"submit\">Filter</button></fieldset></form><table id=\"audit\"><tr><th>Time</th><th>Identity "
         "(appid / oid)</th><th>Operation</th><th>Key</th><th>Version</th><th>Result</th><th></th></tr>" + rows +
         "</table><p>" + std::to_string(shown) + " entries shown (newest first, at most 200).</p>";
}

}  // namespace

void add_console_pages(web::Console& con, Context& c) {
  using PageFn = std::string (*)(Context&, const web::Session&, const Request&);
  auto page = [&](const std::string& pattern, const char* nav, const char* title, PageFn fn) {
    con.page(pattern, nav, title, [&c, fn](const web::Session& s, const Request& q) { return fn(c, s, q); });
  };
  page("/console/identities", "identities", "Managed identities", identities_page);
  page("/console/keys", "keys", "Keys", keys_page);
  page(R"(/console/keys/([0-9A-Za-z-]{1,127}))", "keys", "Key versions", key_page);
  page("/console/policies", "policies", "Access policies", policies_page);
  page("/console/networking", "networking", "Networking", networking_page);
  page("/console/audit", "audit", "Audit log", audit_page);

  con.action("/console/identities", [&c](const web::Session&, const Request& q) {
    std::string name = form_field(q, "name");
    if (!valid_identity_name(name)) {
      return web::Outcome("/console/identities", "A name is 1 to 64 letters, digits, - or _.", 400, "createidentity");
    }
    Principal p = c.vault->create_identity(name);
    return web::Outcome("/console/identities", "Identity " + name + ": client id " + p.client_id + ", object id " +
                                                     p.principal_id, 200, "createidentity", name);
  });
  con.action("/console/keys", [&c](const web::Session&, const Request& q) {
    std::string name = form_field(q, "name"), kty = form_field(q, "kty");
    json body{{"kty", kty}};
    if (kty.rfind("RSA", 0) == 0) body["key_size"] = std::atoi(form_field(q, "size").c_str());
    else body["crv"] = form_field(q, "curve");
    Reply r = c.vault->create_key(name, body);
    return outcome(r, r.status < 300 ? "/console/keys/" + name : "/console/keys", "Created key " + name + ".", "create",
                   name);
  });
  // The forms on a key's page and on the deleted keys' list: name (and version) in the form.
  auto key_action = [&](const std::string& path, const std::string& op,
                        std::function<Reply(Vault&, const std::string&, const std::string&)> fn, std::string done,
                        bool back_to_key) {
    con.action(path, [&c, op, fn, done, back_to_key](const web::Session&, const Request& q) {
      std::string name = form_field(q, "name"), version = form_field(q, "version");
      Reply r = fn(*c.vault, name, version);
      return outcome(r, back_to_key && r.status < 300 ? "/console/keys/" + name : "/console/keys", done + " " + name + ".",
                     op, name, version);
    });
  };
  key_action("/console/keys/rotate", "rotate", [](Vault& v, const std::string& n, const std::string&) {
    return v.rotate_key(n);
  }, "New version of", true);
  for (bool enable : {true, false}) {
    key_action(enable ? "/console/keys/enable" : "/console/keys/disable", enable ? "enable" : "disable",
               [enable](Vault& v, const std::string& n, const std::string& ver) {
                 return v.update_key(n, ver, json{{"attributes", {{"enabled", enable}}}});
               }, enable ? "Enabled a version of" : "Disabled a version of", true);
  }
  key_action("/console/keys/delete", "delete", [](Vault& v, const std::string& n, const std::string&) {
    return v.delete_key(n);
  }, "Deleted (recoverable)", false);
  key_action("/console/keys/recover", "recover", [](Vault& v, const std::string& n, const std::string&) {
    return v.recover_key(n);
  }, "Recovered", true);
  key_action("/console/keys/purge", "purge", [](Vault& v, const std::string& n, const std::string&) {
    return v.purge_key(n);
  }, "Purged", false);

  con.action("/console/policies", [&c](const web::Session&, const Request& q) {
    std::string oid = form_field(q, "objectId");
    std::set<std::string> perms;
    for (size_t i = 0; i < q.get_param_value_count("permission"); ++i) {
      std::string p = q.get_param_value("permission", i);
      if (std::find(kPermissions.begin(), kPermissions.end(), p) != kPermissions.end()) perms.insert(p);
    }
    if (oid.empty() || perms.empty()) {
      return web::Outcome("/console/policies", "Choose a principal and at least one permission.", 400, "setpolicy");
    }
    c.vault->set_policy(oid, perms);
    return web::Outcome("/console/policies", "Access policy saved for " + oid + ".", 200, "setpolicy", oid);
  });
  con.action("/console/policies/remove", [&c](const web::Session&, const Request& q) {
    std::string oid = form_field(q, "objectId");
    bool had = c.vault->delete_policy(oid);
    return web::Outcome("/console/policies", had ? "Access policy removed for " + oid + "." : "No such policy.",
                          had ? 200 : 404, "deletepolicy", oid);
  });
  con.action("/console/networking", [&c](const web::Session&, const Request& q) {
    json body{{"defaultAction", form_field(q, "defaultAction")},
              {"bypass", form_field(q, "bypass") == "AzureServices" ? "AzureServices" : "None"}};
    return outcome(change_network(*c.vault, "updatenetwork", body), "/console/networking", "Firewall saved.",
                   "updatenetwork");
  });
  for (bool add : {true, false}) {
    con.action(add ? "/console/networking/rules" : "/console/networking/rules/remove",
                   [&c, add](const web::Session&, const Request& q) {
                     std::string rule = form_field(q, "ipRule");
                     return outcome(change_network(*c.vault, add ? "addiprule" : "removeiprule", json{{"ipRule", rule}}),
                                    "/console/networking", (add ? "Added " : "Removed ") + rule + ".",
                                    add ? "addiprule" : "removeiprule");
                   });
  }
}

}  // namespace cmkfs::devvault
