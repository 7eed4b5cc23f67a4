// cmkfs status: what `encryption show` says of each mounted store, one line per mount or view.
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "crypto/base/printable.h"
#include "fs/admin/admin.h"
#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

using nlohmann::json;

// Seconds the process has run (from /proc), or -1.
int64_t uptime_of(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat"), up("/proc/uptime");
  std::string line;
  double system_up = 0;
  if (!std::getline(stat, line) || !(up >> system_up)) return -1;
  std::istringstream fields(line.substr(line.rfind(')') + 2));  // after "pid (comm) "
  std::string f;
  for (int i = 3; i <= 22 && fields >> f; ++i) {
    if (i == 22) return static_cast<int64_t>(system_up - std::stod(f) / static_cast<double>(::sysconf(_SC_CLK_TCK)));
  }
  return -1;
}

}  // namespace

int run_status(const std::vector<StatusEntry>& mounts, bool as_json, std::ostream& out, std::ostream& err) {
  json rows = json::array();
  for (const auto& m : mounts) {
    // Paths from the mount table are anybody's names (a user may rename a directory above a
    // mount): shown escaped below, and dumped with anything not UTF-8 replaced.
    json row = {{"mountpoint", m.mountpoint}, {"store", m.store}, {"kind", m.view ? "view" : "mount"}};
    auto settings = encryption_settings(m.store);
    if (!settings.ok()) {
      row["error"] = settings.status().message();
      rows.push_back(row);
      continue;
    }
    const json& show = *settings;
    row["storeId"] = show.value("storeId", "");
    json kv = show.value("keyVaultProperties", json::object());
    row["keyEncryptionKey"] = kv.value("versionedKeyIdentifier", json()).is_string() ? kv["versionedKeyIdentifier"] : json("local key file");
    if (show.contains("liveKeyState")) {
      const json& live = show["liveKeyState"];
      row["keyState"] = live.contains("state") && live["state"].is_string() ? live["state"] : json("unknown");
      if (live.contains("since") && live["since"].is_string()) row["keyStateSince"] = live["since"];  // ISO 8601 already
      if (live.contains("pid") && live["pid"].is_number_integer()) {
        int pid = live["pid"].get<int>();
        row["pid"] = pid;
        if (int64_t up = uptime_of(pid); up >= 0) row["uptimeSeconds"] = up;
      }
      if (live.contains("dataKeyGeneration") && live["dataKeyGeneration"].is_number_unsigned()) {
        row["dataKeyGeneration"] = live["dataKeyGeneration"];
      }
    } else {
      row["keyState"] = "unknown (no live state published)";
    }
    rows.push_back(row);
  }
  if (as_json) {
    out << rows.dump(2, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace) << "\n";
    return kExitOk;
  }
  if (rows.empty()) {
    out << "no cmkfs mounts\n";
    return kExitOk;
  }
  out << std::left << std::setw(32) << "MOUNTPOINT" << std::setw(6) << "KIND" << std::setw(12) << "KEY" << std::setw(22)
      << "SINCE" << std::setw(8) << "PID" << std::setw(10) << "UPTIME" << "STORE\n";
  auto text = [](const json& r, const char* key, const char* otherwise) {
    return printable(r.contains(key) && r[key].is_string() ? r[key].get<std::string>() : otherwise);
  };
  for (const auto& r : rows) {
    std::string up = r.contains("uptimeSeconds") ? std::to_string(r["uptimeSeconds"].get<int64_t>()) + "s" : "-";
    out << std::left << std::setw(32) << text(r, "mountpoint", "") << std::setw(6) << text(r, "kind", "")
        << std::setw(12) << (r.contains("keyState") ? text(r, "keyState", "") : text(r, "error", "")) << std::setw(22)
        << text(r, "keyStateSince", "-") << std::setw(8) << (r.contains("pid") ? std::to_string(r["pid"].get<int>()) : "-")
        << std::setw(10) << up << text(r, "store", "") << "\n";
  }
  (void)err;
  return kExitOk;
}

}  // namespace cmkfs::fs
