#include "fs/store/audit.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"

namespace cmkfs::fs {
namespace {

std::string now_iso() {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", std::gmtime(&t));
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03lldZ", buf, static_cast<long long>(ms));
  return out;
}

std::string state_dir(const char* root_dir, const char* xdg_var, const char* home_suffix) {
  if (::geteuid() == 0) return root_dir;
  if (const char* x = std::getenv(xdg_var); x != nullptr && *x != '\0') return std::string(x) + "/cmkfs";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + home_suffix;
}

}  // namespace

AuditLog::AuditLog(std::string path, std::string store_id) : path_(std::move(path)), store_id_(std::move(store_id)) {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
}

void AuditLog::record(const std::string& event, const std::string& key_id, const std::string& result,
                      const nlohmann::json& extra) {
  if (path_.empty()) return;
  nlohmann::json line{{"time", now_iso()}, {"store", store_id_}, {"event", event}, {"keyId", key_id}, {"result", result}};
  for (const auto& [k, v] : extra.items()) line[k] = v;
  std::string text = line.dump() + "\n";
  std::lock_guard<std::mutex> g(mu_);
  // O_APPEND: the daemon and the cmkfs commands may write the same log.
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

std::string default_audit_path(const Id128& store_id) {
  return state_dir("/var/log/cmkfs", "XDG_STATE_HOME", "/.local/state/cmkfs") + "/" + to_hex(store_id) + ".audit.jsonl";
}

std::string status_path(const Id128& store_id, const std::string& store_root) {
  std::error_code ec;
  std::string root = std::filesystem::weakly_canonical(store_root, ec).string();
  auto tag = crypto::hmac_sha256(crypto::as_bytes("cmkfs/v1/status-path"), crypto::as_bytes(ec ? store_root : root));
  return state_dir("/run/cmkfs", "XDG_RUNTIME_DIR", "/.cache/cmkfs") + "/" + to_hex(store_id) + "-" +
         to_hex(std::span<const uint8_t>(tag.data(), 6)) + ".status.json";
}

}  // namespace cmkfs::fs
