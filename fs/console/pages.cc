// cmkfs console's pages: the stores, and one store's encryption, key state and timeline, with the
// forms that change its key (the same functions as `cmkfs encryption ...`).
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "fs/admin/admin.h"
#include "fs/console/pages.h"
#include "fs/daemon/daemon.h"
#include "fs/store/store.h"
#include "keyclient/web/html.h"

namespace cmkfs::fs {
namespace {

using httplib::Request;
using html::esc;
using html::hidden;
using nlohmann::json;
namespace stdfs = std::filesystem;

std::string canonical(const std::string& p) {
  std::error_code ec;
  auto c = stdfs::canonical(p, ec);
  return ec ? p : c.string();
}

json show(const std::string& store) {
  auto j = encryption_settings(store);
  return j.ok() ? *j : json{{"error", j.status().message()}};
}

constexpr auto* str = &web::text_of;

std::string state_badge(const std::string& state) {
  if (state.empty()) return "<span>not mounted</span>";
  return "<span id=\"key-state\" class=\"state-" + esc(state) + "\">" + esc(state) + "</span>";
}

std::string store_link(const std::string& store) {
  return "/console/store?path=" + httplib::detail::encode_query_param(store);
}

// The store a request names, if the console knows it; never a path it was merely given.
std::optional<KnownStore> named_store(const ConsoleOptions& o, const std::string& path) {
  for (const auto& k : known_stores(o)) {
    if (k.store == canonical(path)) return k;
  }
  return std::nullopt;
}

std::string stores_page(const ConsoleOptions& o) {
  std::string rows;
  for (const auto& k : known_stores(o)) {
    json j = show(k.store);
    json kv = j.value("keyVaultProperties", json::object());
    json live = j.value("liveKeyState", json::object());
    std::string key = str(kv, "versionedKeyIdentifier");
    rows += "<tr><td><a href=\"" + esc(store_link(k.store)) + "\">" + esc(k.store) + "</a></td><td>" +
            esc(k.mountpoint) + "</td><td>" + state_badge(str(live, "state")) + "</td><td><code>" +
            esc(key.empty() ? str(j, "keySource") : key) + "</code></td><td>" + esc(str(kv, "identity")) + "</td><td>" +
            esc(str(j, "dataKeyGeneration")) + "</td></tr>";
  }
  return "<table id=\"stores\"><tr><th>Store</th><th>Mountpoint</th><th>Key state</th><th>Key</th><th>Identity</th>"
         "<th>Data key generation</th></tr>" + rows + "</table>";
}

// The store's key events from its audit log (newest last), at most the last 4 MiB of it.
std::vector<json> key_events(const std::string& audit_path) {
  std::vector<json> events = web::json_lines_tail(audit_path);
  std::erase_if(events, [](const json& j) { return !j.contains("event") || !j.contains("time"); });
  return events;
}

int64_t parse_time(const std::string& iso) {
  std::tm tm{};
  if (strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) return 0;
  return timegm(&tm);
}

// The timeline: the key's state over the events' span (green serving, red revoked or failed
// closed), a mark for each event, newest on the right. An SVG in the page: no script needed.
std::string timeline(const std::vector<json>& events) {
  if (events.empty()) return "<p>No key events recorded yet.</p>";
  size_t first = events.size() > 200 ? events.size() - 200 : 0;
  // Up to now: the current state is the band's last stretch.
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  int64_t t0 = parse_time(str(events[first], "time")), t1 = std::max({t0 + 1, now, parse_time(str(events.back(), "time"))});
  const double w = 900, h = 80;
  auto x = [&](int64_t t) { return 10 + (w - 20) * static_cast<double>(t - t0) / static_cast<double>(t1 - t0); };
  std::ostringstream svg;
  svg.precision(5);
  svg << "<svg id=\"timeline\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w << " " << h
      << "\" role=\"img\" aria-label=\"key state over time\">";
  bool revoked = false;
  double from = 10;
  auto band = [&](double to) {
    svg << "<rect x=\"" << from << "\" y=\"30\" width=\"" << std::max(1.0, to - from) << "\" height=\"20\" fill=\""
        << (revoked ? "#d9534f" : "#5cb85c") << "\"></rect>";
  };
  for (size_t i = first; i < events.size(); ++i) {
    const json& e = events[i];
    std::string ev = str(e, "event"), result = str(e, "result");
    double at = x(parse_time(str(e, "time")));
    bool down = ev == "revoke" || ev == "fail-closed";
    if ((down && !revoked) || (ev == "restore" && revoked)) {
      band(at);
      from = at;
      revoked = down;
    }
    const char* color = down ? "#b3261e" : ev == "restore" ? "#187a2f" : result == "ok" ? "#0b3d66" : "#a15c00";
    svg << "<circle class=\"event event-" << esc(ev) << "\" cx=\"" << at << "\" cy=\"" << (down || ev == "restore" ? 20 : 62)
        << "\" r=\"4\" fill=\"" << color << "\"><title>" << esc(str(e, "time") + " " + ev + " " + result)
        << "</title></circle>";
  }
  band(w - 10);
  svg << "<text x=\"10\" y=\"78\" font-size=\"10\">" << esc(str(events[first], "time")) << "</text><text x=\""
      << w - 10 << "\" y=\"78\" font-size=\"10\" text-anchor=\"end\">now</text></svg>";
  return svg.str();
}

std::string store_page(const ConsoleOptions& o, const web::Session& s, const Request& q) {
  auto k = named_store(o, q.get_param_value("path"));
  if (!k) return "<p class=\"flash error\">Not a store this console knows.</p>";
  json j = show(k->store);
  json kv = j.value("keyVaultProperties", json::object());
  json live = j.value("liveKeyState", json::object());
  std::string out = "<table id=\"encryption\">";
  auto row = [&](const std::string& label, const std::string& value, const char* id) {
    out += "<tr><th>" + esc(label) + "</th><td id=\"" + id + "\">" + value + "</td></tr>";
  };
  row("Store", esc(k->store), "store");
  row("Mountpoint", esc(k->mountpoint.empty() ? "(not mounted)" : k->mountpoint), "mountpoint");
  row("Encryption", esc(str(j, "status")) + " (" + esc(str(j, "keySource")) + ")", "status");
  row("Key identifier", "<code>" + esc(str(kv, "keyIdentifier")) + "</code>", "key-identifier");
  row("Key version in use", "<code>" + esc(str(kv, "versionedKeyIdentifier")) + "</code>", "versioned-key");
  row("Key rotation", str(kv, "keyRotationEnabled") == "true" ? "automatic (no version: the latest is followed)"
                                                             : "manual (a version is pinned)", "rotation");
  row("Last key rotation", esc(str(kv, "lastKeyRotationTimestamp")), "last-rotation");
  row("Identity", esc(str(kv, "identity")), "identity");
  row("Data key generation", esc(str(j, "dataKeyGeneration")), "generation");
  if (!live.empty()) {
    row("Key state", state_badge(str(live, "state")) + " since " + esc(str(live, "since")), "state");
    row("Last successful check", esc(str(live, "lastSuccessfulCheck")), "last-check");
    if (live.contains("dataKeyRotation")) row("Data-key rotation", esc(live["dataKeyRotation"].dump()), "dek-rotation");
  }
  out += "</table>";
  auto events = key_events(str(live, "auditLog"));
  out += "<h2>Key timeline</h2>" + timeline(events) + "<table id=\"events\"><tr><th>Time</th><th>Event</th><th>Result"
         "</th><th></th></tr>";
  for (size_t i = events.size(), shown = 0; i-- > 0 && shown < 15; ++shown) {
    const json& e = events[i];
    std::string why = str(e, "reason").empty() ? str(e, "error") : str(e, "reason");
    out += "<tr><td>" + esc(str(e, "time")) + "</td><td>" + esc(str(e, "event")) + "</td><td>" + esc(str(e, "result")) +
           "</td><td>" + esc(why) + "</td></tr>";
  }
  out += "</table>";
  std::string h = hidden("path", k->store);
  bool cmk = str(j, "status") == "enabled";
  out += "<form method=\"post\" action=\"/console/store/" + std::string(cmk ? "change-key" : "enable") +
         "\"><fieldset><legend>" + (cmk ? "Encryption &gt; Change key" : "Encryption &gt; Use a customer-managed key") +
         "</legend>" + html::csrf_field(s.csrf) + h +
         "<p><label>Key identifier (with a version: manual rotation; without: automatic) <input name=\"key\" "
         "id=\"new-key\" size=\"80\" required></label></p><p>Identity: "
         "<label><input type=\"radio\" name=\"identity-type\" value=\"keep\" checked> keep the current one</label>"
         "<label><input type=\"radio\" name=\"identity-type\" value=\"user\"> user-assigned, client id "
         "<input name=\"client-id\" id=\"client-id\" size=\"38\"></label><label><input type=\"radio\" "
         "name=\"identity-type\" value=\"system\"> system-assigned</label></p><p><label>Identity endpoint (blank: keep) "
         "<input name=\"identity-endpoint\" size=\"60\"></label> <label>Vault CA file (blank: keep) <input "
         "name=\"vault-ca\" size=\"40\"></label></p><button type=\"submit\">Save</button></fieldset></form>";
  if (cmk) out += html::button_form("/console/store/rotate-data-key", "Rotate the data key", s.csrf, h);
  return out;
}

VaultKeyOptions key_options(const Request& q) {
  VaultKeyOptions v;
  v.key_encryption_key = q.get_param_value("key");
  std::string type = q.get_param_value("identity-type");
  if (type == "system") v.identity = "[system]";
  if (type == "user") v.identity = q.get_param_value("client-id");
  v.identity_endpoint = q.get_param_value("identity-endpoint");
  v.vault_ca = q.get_param_value("vault-ca");
  return v;
}

}  // namespace

std::vector<KnownStore> known_stores(const ConsoleOptions& o) {
  std::vector<KnownStore> all;
  std::set<std::string> seen;
  for (const auto& m : served_mounts()) {
    if (!m.view && seen.insert(canonical(m.store)).second) all.push_back({canonical(m.store), m.mountpoint});
  }
  std::vector<std::string> named = o.stores;
  std::error_code ec;
  for (const auto& f : stdfs::directory_iterator(host_config_dir() + "/mounts", ec)) {
    if (f.path().extension() != ".conf") continue;
    std::ifstream in(f.path());
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("STORE=", 0) == 0) named.push_back(line.substr(6));
    }
  }
  for (const auto& s : named) {
    if (seen.insert(canonical(s)).second) all.push_back({canonical(s), ""});
  }
  return all;
}

void add_console_pages(web::Console& console, const ConsoleOptions& o) {
  console.page("/console/stores", "stores", "Stores on this host", [&o](const web::Session&, const Request&) {
    return stores_page(o);
  });
  console.page("/console/store", "stores", "Store", [&o](const web::Session& s, const Request& q) {
    return store_page(o, s, q);
  });
  // The forms: each runs what `cmkfs encryption ...` runs, on a store the console knows.
  using Run = std::function<Status(const std::string& store, const Request& q, std::ostream& out)>;
  auto form = [&](const std::string& path, const std::string& op, Run run, const std::string& done) {
    console.action(path, [&o, op, run, done](const web::Session&, const Request& q) {
      auto k = named_store(o, q.get_param_value("path"));
      if (!k) return web::Outcome("/console/stores", "Not a store this console knows.", 404, op);
      std::ostringstream out;
      // What the change unwraps and wraps goes to the mount's key audit log, with its checks.
      std::string audit_log = str(show(k->store).value("liveKeyState", json::object()), "auditLog");
      override_default_audit_path(audit_log);
      Status s = run(k->store, q, out);
      override_default_audit_path("");
      std::string msg = s.ok() ? done : s.message();
      return web::Outcome(store_link(k->store), msg, s.ok() ? 200 : 400, op, k->store);
    });
  };
  form("/console/store/change-key", "rotate-key", [](const std::string& store, const Request& q, std::ostream& out) {
    return rotate_key(store, key_options(q), LocalKeyOptions{}, out);
  }, "The data key is wrapped by the new key; a mount follows within one check.");
  form("/console/store/enable", "enable", [](const std::string& store, const Request& q, std::ostream& out) {
    return enable_vault_key(store, key_options(q), out);
  }, "The store now uses the customer-managed key.");
  form("/console/store/rotate-data-key", "rotate-data-key", [](const std::string& store, const Request&, std::ostream& out) {
    return rotate_data_key(store, out);
  }, "A new data key is in use; the re-encryption's progress shows here.");
}

}  // namespace cmkfs::fs
