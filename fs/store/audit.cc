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

AuditLog::AuditLog(std::string path, std::string store_id, std::chrono::seconds summary_every)
    : path_(std::move(path)), store_id_(std::move(store_id)), summary_every_(summary_every) {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
}

AuditLog::~AuditLog() {
  std::lock_guard<std::mutex> g(mu_);
  write_summary();
}

void AuditLog::record(const std::string& event, const std::string& key_id, const std::string& result,
                      const nlohmann::json& extra) {
  if (path_.empty()) return;
  std::lock_guard<std::mutex> g(mu_);
  bool routine = event == "unwrap" && result == "ok" && extra.is_object() && extra.value("reason", "") == "key check";
  if (routine) {
    if (checks_ == 0) checks_since_ = now_iso();
    ++checks_;
    checks_key_ = key_id;
    if (std::chrono::steady_clock::now() - last_summary_ >= summary_every_) write_summary();
    return;
  }
  write_summary();  // what the checks said before this event comes first
  nlohmann::json line{{"time", now_iso()}, {"store", store_id_}, {"event", event}, {"keyId", key_id}, {"result", result}};
  for (const auto& [k, v] : extra.items()) line[k] = v;
  append(line);
}

void AuditLog::write_summary() {
  last_summary_ = std::chrono::steady_clock::now();
  if (checks_ == 0 || path_.empty()) return;
  append({{"time", now_iso()}, {"store", store_id_}, {"event", "checks"}, {"keyId", checks_key_}, {"result", "ok"},
          {"count", checks_}, {"since", checks_since_}});
  checks_ = 0;
}

void AuditLog::append(const nlohmann::json& line) {
  std::string text = line.dump() + "\n";
  // O_APPEND: the daemon and the cmkfs commands may write the same log.
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

namespace {
std::string& audit_path_override() {
  static std::string path;
  return path;
}
}  // namespace

void override_default_audit_path(std::string path) { audit_path_override() = std::move(path); }

std::string default_audit_path(const Id128& store_id) {
  if (!audit_path_override().empty()) return audit_path_override();
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
