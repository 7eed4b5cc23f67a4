#include "keyclient/devvault/template.h"

#include <algorithm>
#include <set>

namespace cmkfs::devvault {
namespace {

// Every field of `o` is one of `known`; else the reason.
std::string unknown_fields(const json& o, const std::set<std::string>& known, const std::string& where) {
  if (!o.is_object()) return where + " must be an object";
  for (const auto& [k, v] : o.items()) {
    if (!known.contains(k)) return where + ": unknown field '" + k + "'";
  }
  return "";
}

bool strings(const json& v) {
  return v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_string(); });
}

// The firewall a template declares: {defaultAction, bypass, ipRules: ["CIDR", ...]}, Azure's
// defaults (Allow, AzureServices) for what it leaves out.
Result<NetworkAcls> network_of(const json& n) {
  std::string bad = unknown_fields(n, {"defaultAction", "bypass", "ipRules"}, "networkAcls");
  if (!bad.empty()) return Status::InvalidArgument(bad);
  NetworkAcls acls;
  if (Status s = acls.update(n); !s.ok()) return Status::InvalidArgument("networkAcls." + s.message());
  if (n.contains("ipRules") && !strings(n["ipRules"])) return Status::InvalidArgument("networkAcls.ipRules is a list of strings");
  for (const auto& r : n.value("ipRules", json::array())) {
    auto c = Cidr::parse(r.get<std::string>());
    if (!c.ok()) return c.status();
    acls.ip_rules.push_back(*c);
  }
  return acls;
}

// The whole document checked before anything is applied.
std::string check(const json& doc) {
  std::string bad = unknown_fields(doc, {"$schema", "identities", "keys", "accessPolicies", "networkAcls"}, "the template");
  if (!bad.empty()) return bad;
  for (const char* list : {"identities", "keys", "accessPolicies"}) {
    if (doc.contains(list) && !doc[list].is_array()) return std::string(list) + " must be a list";
  }
  // Every field that is given must be a string where one is expected: the file is input too.
  auto not_strings = [](const json& o, std::initializer_list<const char*> keys) {
    return std::any_of(keys.begin(), keys.end(), [&](const char* k) { return o.contains(k) && !o[k].is_string(); });
  };
  for (const auto& i : doc.value("identities", json::array())) {
    if (!(bad = unknown_fields(i, {"name"}, "an identity")).empty()) return bad;
    if (!i.contains("name") || not_strings(i, {"name"}) || !valid_identity_name(i["name"])) {
      return "an identity needs a name of 1 to 64 letters, digits, - or _";
    }
  }
  for (const auto& k : doc.value("keys", json::array())) {
    if (!(bad = unknown_fields(k, {"name", "kty", "size", "curve", "ops"}, "a key")).empty()) return bad;
    if (!k.contains("name") || not_strings(k, {"name", "kty", "curve"}) ||
        !valid_key_name(k["name"])) {
      return "a key needs a name of 0-9, a-z, A-Z and - (and kty, curve are strings)";
    }
    if (k.contains("size") && !k["size"].is_number_integer()) return "a key's size is a number";
    if (k.contains("ops") && !strings(k["ops"])) return "a key's ops are a list of strings";
  }
  for (const auto& p : doc.value("accessPolicies", json::array())) {
    if (!(bad = unknown_fields(p, {"identity", "objectId", "permissions"}, "an access policy")).empty()) return bad;
    if (p.contains("identity") == p.contains("objectId") || not_strings(p, {"identity", "objectId"})) {
      return "an access policy names an identity or an objectId (a string)";
    }
    if (!p.contains("permissions") || !strings(p["permissions"])) return "an access policy needs permissions (strings)";
  }
  if (doc.contains("networkAcls")) {
    if (auto n = network_of(doc["networkAcls"]); !n.ok()) return n.status().message();
  }
  return "";
}

}  // namespace

Reply apply_template(Vault& vault, const json& doc) {
  if (std::string bad = check(doc); !bad.empty()) return Reply::error(400, "BadParameter", bad);
  json changed = json::array(), unchanged = json::array(), identities = json::object(), keys = json::object();
  auto note = [&](bool did, const std::string& what) { (did ? changed : unchanged).push_back(what); };

  std::map<std::string, Principal> by_name;
  for (const auto& p : vault.identities()) by_name[p.name] = p;
  for (const auto& i : doc.value("identities", json::array())) {
    std::string name = i["name"];
    bool had = by_name.contains(name);
    by_name[name] = vault.create_identity(name);  // returns the existing one by name
    note(!had, "identity " + name);
    identities[name] = {{"clientId", by_name[name].client_id}, {"principalId", by_name[name].principal_id}};
  }
  for (const auto& k : doc.value("keys", json::array())) {
    std::string name = k["name"];
    Reply got = vault.get_key(name, "");
    if (got.status == 200) {
      note(false, "key " + name);
      keys[name] = got.body["key"]["kid"];
      continue;
    }
    json body{{"kty", k.value("kty", "RSA")}};
    if (k.contains("size")) body["key_size"] = k["size"];
    if (k.contains("curve")) body["crv"] = k["curve"];
    if (k.contains("ops")) body["key_ops"] = k["ops"];
    Reply made = vault.create_key(name, body);
    if (made.status != 200) return made;  // what came before stays: applying again resumes
    note(true, "key " + name);
    keys[name] = made.body["key"]["kid"];
  }
  for (const auto& p : doc.value("accessPolicies", json::array())) {
    std::string oid = p.value("objectId", "");
    if (p.contains("identity")) {
      std::string name = p["identity"];
      if (!by_name.contains(name)) return Reply::error(400, "BadParameter", "no identity named " + name);
      oid = by_name[name].principal_id;
    }
    auto perms = p["permissions"].get<std::set<std::string>>();
    auto it = vault.policies().find(oid);
    bool same = it != vault.policies().end() && it->second == perms;
    if (!same) vault.set_policy(oid, perms);
    note(!same, "access policy " + oid);
  }
  if (doc.contains("networkAcls")) {
    const json& n = doc["networkAcls"];
    NetworkAcls next = *network_of(n);  // checked above
    bool same = next.to_json() == vault.network().to_json();
    if (!same) {
      if (Status s = vault.set_network(next); !s.ok()) return Reply::error(500, "InternalError", s.message());
    }
    note(!same, "networkAcls");
  }
  return Reply{200, json{{"changed", changed}, {"unchanged", unchanged}, {"identities", identities}, {"keys", keys}}};
}

}  // namespace cmkfs::devvault
