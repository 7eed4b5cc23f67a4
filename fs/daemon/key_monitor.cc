#include "fs/daemon/key_monitor.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "crypto/base/hex.h"

namespace cmkfs::fs {
namespace {

int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

const char* to_string(KeyState s) {
  switch (s) {
    case KeyState::kAvailable: return "available";
    case KeyState::kRevoked: return "revoked";
    case KeyState::kUnreachable: return "vault-unreachable";
    case KeyState::kFailedClosed: return "vault-unreachable-failed-closed";
  }
  return "unknown";
}

KeyMonitor::KeyMonitor(OpenStore& store, Keyring& keyring, std::unique_ptr<keyclient::KeyProvider> provider,
                       MonitorOptions options, AuditLog& audit, std::function<void()> invalidate_caches,
                       std::string mountpoint, Clock& clock)
    : store_(store),
      keyring_(keyring),
      provider_(std::move(provider)),
      options_(options),
      audit_(audit),
      invalidate_caches_(std::move(invalidate_caches)),
      mountpoint_(std::move(mountpoint)),
      clock_(clock),
      state_since_(clock.wall()),
      last_success_wall_(state_since_),
      last_success_(clock.steady()),
      last_rotation_poll_(last_success_) {}

void KeyMonitor::start() {
  publish_status();
  if (!provider_->revocable()) return;  // the built-in key cannot be revoked from outside
  thread_ = std::thread([this] { run(); });
}

void KeyMonitor::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::error_code ec;
  std::filesystem::remove(status_path(store_.super.store_id), ec);
}

void KeyMonitor::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (wake_.wait_for(lock, options_.check_interval, [this] { return stopping_; })) break;
    lock.unlock();
    check_once();
    lock.lock();
  }
}

// `cmkfs encryption rotate-key` may have rewrapped the key under new settings meanwhile.
void KeyMonitor::reload_settings() {
  auto txn = store_.meta->begin(false);
  if (!txn.ok()) return;
  auto sb = txn->superblock();
  if (!sb.ok() || sb->kek == store_.super.kek) return;
  auto kek = keyclient::KekConfig::from_json(sb->kek);
  if (!kek.ok()) return;
  auto provider = keyclient::make_provider(*kek, sb->store_id);
  if (!provider.ok()) {
    spdlog::error("new key settings in the store cannot be used: {}", provider.status().message());
    return;
  }
  spdlog::info("key settings changed: the data key is now wrapped by {}", kek->versioned_key_identifier);
  store_.super = std::move(*sb);
  store_.kek = std::move(*kek);
  provider_ = std::move(*provider);
}

void KeyMonitor::check_once() {
  reload_settings();
  auto unlocked = unlock(store_, *provider_, audit_, "key check");
  auto now = clock_.steady();
  if (unlocked.ok()) {
    last_success_ = now;
    last_success_wall_ = clock_.wall();
    if (state_ != KeyState::kAvailable) {
      Status s = keyring_.install(store_.super.dek_generation, unlocked->dek.clone());
      if (!s.ok()) return;
      spdlog::warn("key access restored ({}); serving {} again", unlocked->wrapped.key_id, mountpoint_);
      audit_.record("restore", unlocked->wrapped.key_id, "ok", {{"after", to_string(state_)}});
      set_state(KeyState::kAvailable);
    }
    maybe_rotate(unlocked->dek, unlocked->wrapped);
  } else if (keyclient::is_definitive_refusal(unlocked.status())) {
    if (state_ != KeyState::kRevoked) revoke(KeyState::kRevoked, unlocked.status().message());
  } else {
    if (state_ == KeyState::kAvailable) {
      spdlog::warn("key vault unreachable ({}); serving from the cached key for up to {} s", unlocked.status().message(),
                   std::chrono::duration_cast<std::chrono::seconds>(options_.offline_grace).count());
      audit_.record("unreachable", store_.kek.versioned_key_identifier, "serving-from-cache");
      set_state(KeyState::kUnreachable);
    }
    if (state_ == KeyState::kUnreachable && now - last_success_ >= options_.offline_grace) {
      revoke(KeyState::kFailedClosed, "key vault unreachable for longer than the offline grace");
    }
  }
  publish_status();
}

void KeyMonitor::set_state(KeyState s) {
  state_ = s;
  state_since_ = clock_.wall();
}

void KeyMonitor::revoke(KeyState why, const std::string& reason) {
  keyring_.revoke();
  invalidate_caches_();
  spdlog::error("key access lost ({}): keys wiped, every access to {} now answers EACCES", reason, mountpoint_);
  audit_.record(why == KeyState::kRevoked ? "revoke" : "fail-closed", store_.kek.versioned_key_identifier, "ok",
                {{"reason", reason}});
  set_state(why);
}

void KeyMonitor::maybe_rotate(const crypto::SecretBytes& dek, const keyclient::WrappedKey& wrapped) {
  if (!store_.kek.rotation_enabled()) return;
  auto now = clock_.steady();
  if (now - last_rotation_poll_ < options_.rotation_poll_interval) return;
  last_rotation_poll_ = now;
  auto latest = provider_->current_key_id();
  if (!latest.ok()) {
    spdlog::warn("rotation poll: {}", latest.status().message());
    return;
  }
  if (*latest == wrapped.key_id) return;
  auto w = rewrap(store_, dek, store_.kek, *provider_);
  if (!w.ok()) {
    audit_.record("rotate", *latest, "failed", {{"error", w.status().message()}});
    spdlog::error("automatic rotation to {} failed: {}", *latest, w.status().message());
    return;
  }
  audit_.record("wrap", w->key_id, "ok", {{"reason", "automatic rotation"}});
  audit_.record("rotate", w->key_id, "ok", {{"from", wrapped.key_id}});
  spdlog::info("automatic rotation: the data key is now wrapped by {} (was {})", w->key_id, wrapped.key_id);
}

void KeyMonitor::publish_status() {
  const auto& k = store_.kek;
  nlohmann::json j{{"state", to_string(state_)},
                   {"since", unix_seconds(state_since_)},
                   {"lastSuccessfulCheck", unix_seconds(last_success_wall_)},
                   {"keyIdentifier", k.provider == keyclient::ProviderKind::kVault ? k.key_identifier : k.key_file},
                   {"versionedKeyIdentifier", k.versioned_key_identifier},
                   {"mountpoint", mountpoint_},
                   {"pid", ::getpid()}};
  std::string path = status_path(store_.super.store_id);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  {
    std::ofstream out(path + ".tmp");
    out << j.dump() << "\n";
  }
  std::filesystem::rename(path + ".tmp", path, ec);
}

}  // namespace cmkfs::fs
