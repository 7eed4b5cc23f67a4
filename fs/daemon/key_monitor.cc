#include "fs/daemon/key_monitor.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <type_traits>

#include "crypto/base/hex.h"

namespace cmkfs::fs {
namespace {

int64_t unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

[[noreturn]] void park() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace

// Arms the watchdog for its life: calls to a revocable provider, which may not return. Nested
// ones (a rotation's reload) count from the outermost.
class KeyMonitor::ProviderCall {
 public:
  ProviderCall(KeyMonitor& m, const keyclient::KeyProvider& provider) : m_(m), armed_(provider.revocable()) {
    if (!armed_) return;
    std::lock_guard<std::mutex> g(m_.state_mu_);
    if (m_.in_provider_++ == 0) m_.provider_since_ = m_.clock_.steady();
  }
  ~ProviderCall() { end(); }
  void end() {
    if (!armed_) return;
    armed_ = false;
    std::lock_guard<std::mutex> g(m_.state_mu_);
    --m_.in_provider_;
  }

 private:
  KeyMonitor& m_;
  bool armed_;
};

const char* to_string(KeyState s) {
  switch (s) {
    case KeyState::kAvailable: return "available";
    case KeyState::kRevoked: return "revoked";
    case KeyState::kUnreachable: return "vault-unreachable";
    case KeyState::kFailedClosed: return "vault-unreachable-failed-closed";
    case KeyState::kTampered: return "key-tampered";
  }
  return "unknown";
}

KeyMonitor::KeyMonitor(OpenStore& store, Keyring& keyring, std::unique_ptr<keyclient::KeyProvider> provider,
                       MonitorOptions options, AuditLog& audit, std::function<void()> invalidate_caches,
                       std::string mountpoint, Clock& clock)
    : store_(store),
      keyring_(keyring),
      gate_(std::make_shared<Gate>(clock)),
      provider_(keyclient::observed(std::move(provider), gate_)),
      options_(options),
      audit_(audit),
      invalidate_caches_(std::move(invalidate_caches)),
      mountpoint_(std::move(mountpoint)),
      clock_(clock),
      status_path_(status_path(store.super.store_id, store.paths.root)),
      state_since_(clock.wall()),
      last_success_wall_(state_since_),
      last_success_(clock.steady()),
      last_rotation_poll_(last_success_) {
  note_settings();
}

void KeyMonitor::Gate::enter() {
  bool parked;
  {
    std::lock_guard<std::mutex> g(mu);
    parked = abandoned;
    if (!parked && inside++ == 0) since = clock.steady();
  }
  if (parked) park();
}

void KeyMonitor::Gate::leave() {
  bool parked;
  {
    std::lock_guard<std::mutex> g(mu);
    --inside;
    parked = abandoned;
  }
  if (parked) park();  // a call stop() gave up: it must not reach the store (also when it throws)
}

KeyMonitor::~KeyMonitor() {
  stop();
  if (abandoned()) end_process(kExitError);  // its thread still runs in this object
}

void KeyMonitor::end_process(int code) {
  spdlog::default_logger()->flush();
  std::_Exit(code);
}

void KeyMonitor::start() {
  publish_status();
  thread_ = std::thread([this] { run(); });
  watchdog_ = std::thread([this] { watch(); });
}

void KeyMonitor::wake(std::atomic<bool>& flag) {
  flag = true;
  {
    std::lock_guard<std::mutex> g(mu_);
    woken_ = true;
  }
  wake_.notify_all();
}

void KeyMonitor::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  if (thread_.joinable()) {
    if (wait_for_run()) {
      thread_.join();
    } else {
      thread_.detach();
      spdlog::error("the key provider still has not answered; not waiting for it to unmount");
    }
  }
  std::error_code ec;
  std::filesystem::remove(status_path_, ec);
}

bool KeyMonitor::wait_for_run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return run_done_; })) return true;
    }
    std::lock_guard<std::mutex> g(gate_->mu);
    if (gate_->inside > 0 && clock_.steady() - gate_->since >= kHungAfter * options_.request_timeout) {
      gate_->abandoned = true;  // the call parks when it returns: it can no longer reach the store
      return false;
    }
  }
}

void KeyMonitor::run() {
  struct Done {  // however run() ends
    KeyMonitor& m;
    ~Done() {
      {
        std::lock_guard<std::mutex> g(m.mu_);
        m.run_done_ = true;
      }
      m.wake_.notify_all();
    }
  };
  Done done{*this};
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.check_interval, [this] { return stopping_ || woken_; });
    if (stopping_) break;
    woken_ = false;
    lock.unlock();
    // A provider's bug or a reply it failed to check must not end the daemon: the check failed.
    try {
      check_once();
    } catch (const std::exception& e) {
      spdlog::error("key check failed unexpectedly: {}", e.what());
    }
    lock.lock();
  }
}

void KeyMonitor::watch() {
  auto period = std::min<std::chrono::milliseconds>(options_.check_interval, std::chrono::seconds(1));
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, period, [this] { return stopping_; })) {
    lock.unlock();
    watch_once();
    lock.lock();
  }
}

void KeyMonitor::watch_once() {
  {
    std::lock_guard<std::mutex> g(state_mu_);
    auto now = clock_.steady();
    if (in_provider_ == 0 || now - provider_since_ < kHungAfter * options_.request_timeout) return;
    auto hung = std::chrono::duration_cast<std::chrono::seconds>(now - provider_since_).count();
    KeyState before = state_;
    std::string why = "the key check has not returned for " + std::to_string(hung) + " s (the key provider hangs)";
    outage(why, why + ", and the vault was last reached longer than the offline grace ago", {{"reason", "hung"}});
    if (state_ == before) return;
  }
  publish_status(/*on_check_thread=*/false);
}

// `cmkfs encryption rotate-key` may have rewrapped the key under new settings meanwhile. A changed
// superblock is taken only within this host's binding (read again: the command updates it) and
// with a MAC that verifies under the data key in use; anything else is tampering, logged and
// audited once, and the settings in use stay.
void KeyMonitor::reload_settings() {
  // Read, then let go of the transaction: adopting may take the keyring's gate, which comes
  // before any transaction in the lock order (fs/core/inode_table.h).
  Result<meta::Superblock> sb = Status::Unavailable("not read");
  {
    auto txn = store_.meta->begin(false);
    if (!txn.ok()) return;
    sb = txn->superblock();
  }
  std::string seen = sb.ok() ? sb->to_json() : sb.status().message();
  if (sb.ok() && seen == store_.super.to_json()) return;
  Status s = sb.ok() ? adopt(*sb) : sb.status();
  if (s.ok()) {
    spdlog::info("key settings changed: the data key is now wrapped by {}", store_.kek.versioned_key_identifier);
    return;
  }
  if (s.code() == EAGAIN || seen == rejected_) return;  // no key to check it with now; or told already
  rejected_ = seen;
  spdlog::error("the store's superblock changed in a way this mount does not accept ({}); keeping the key settings "
                "in use",
                s.message());
  audit_.record("tamper", store_.kek.versioned_key_identifier, "refused", {{"what", "superblock"}, {"error", s.message()}});
}

Status KeyMonitor::adopt(const meta::Superblock& sb) {
  if (sb.store_id != store_.super.store_id) return Status(EUCLEAN, "the store id changed");
  if (sb.dek_generation < store_.super.dek_generation) return Status(EUCLEAN, "the data-key generation went back");
  auto kek = keyclient::KekConfig::from_json(sb.kek);
  if (!kek.ok()) return kek.status();
  auto binding = load_binding(sb.store_id);
  if (!binding.ok()) return binding.status();
  auto settings = binding->match(*kek);
  if (!settings.ok()) return settings.status();
  Result<std::unique_ptr<keyclient::KeyProvider>> provider = Status::Unavailable("not made");
  {
    keyclient::CallObserver::Inside in(*gate_);  // loading a new module (C_Initialize) may hang
    provider = keyclient::make_provider(*settings, sb.store_id,
                                        std::chrono::duration<double>(options_.request_timeout).count());
  }
  if (!provider.ok()) return provider.status();
  auto guarded = keyclient::observed(std::move(*provider), gate_);
  if (sb.dek_generation == store_.super.dek_generation) {
    auto access = keyring_.access();
    if (!access.ok()) return Status::Unavailable("the data key is not installed");
    CMKFS_RETURN_IF_ERROR(sb.verify(access.store_keys().super_mac.bytes()));
  } else {
    // A new data-key generation (`encryption rotate-data-key`): unlocked as a mount would, every
    // generation checked against the binding, the superblock against the new key.
    if (!keyring_.available()) return Status::Unavailable("the data key is not installed");
    meta::Superblock old_super = std::move(store_.super);
    keyclient::KekConfig old_kek = std::move(store_.kek);
    std::optional<HostBinding> old_binding = std::move(store_.binding);
    store_.super = sb;
    store_.kek = *kek;
    store_.binding = *binding;
    ProviderCall call(*this, *guarded);
    auto unlocked = unlock(store_, *guarded, audit_, "data-key rotation");
    call.end();
    Status s = unlocked.status();
    if (unlocked.ok()) {
      // Not over a fail-closed the watchdog decided while the unwrap hung: the next check restores.
      std::lock_guard<std::mutex> g(state_mu_);
      s = state_ == KeyState::kAvailable || state_ == KeyState::kUnreachable
              ? install_keys(keyring_, sb.dek_generation, std::move(*unlocked))
              : Status::Unavailable("the mount failed closed meanwhile");
    }
    if (!s.ok()) {
      store_.super = std::move(old_super);
      store_.kek = std::move(old_kek);
      store_.binding = std::move(old_binding);
      return s;
    }
    spdlog::info("data-key generation {} in use; files under older generations are re-encrypted in the background",
                 sb.dek_generation);
    if (on_new_generation_) on_new_generation_();
  }
  store_.super = sb;
  store_.kek = std::move(*kek);
  store_.binding = std::move(*binding);
  provider_ = std::move(guarded);
  return Status::Ok();
}

void KeyMonitor::check_once() {
  reload_settings();
  if (rotation_finished_.exchange(false)) finish_rotation();
  if (!provider_->revocable()) {  // the built-in key cannot be revoked from outside: nothing to prove
    if (rotation_wanted_.exchange(false)) start_rotation();
    publish_status();
    return;
  }
  auto started = std::chrono::steady_clock::now();
  ProviderCall call(*this, *provider_);
  auto unlocked = unlock(store_, *provider_, audit_, "key check");
  call.end();
  {
    std::lock_guard<std::mutex> g(counts_mu_);
    ++counts_.checks;
    check_seconds_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    int code = unlocked.ok() ? 0 : unlocked.status().code();
    if (code == 0) ++counts_.ok;
    else if (code == EUCLEAN || code == EIO) ++counts_.tampered;
    else if (keyclient::is_definitive_refusal(unlocked.status())) ++counts_.refused;
    else ++counts_.unreachable;
  }
  crypto::SecretBytes dek;
  keyclient::WrappedKey wrapped;
  if (unlocked.ok()) dek = unlocked->dek.clone(), wrapped = unlocked->wrapped;
  bool good = apply(std::move(unlocked));
  publish_status();  // now, not after the rotation poll below (which may wait on the vault)
  if (!good) return;
  ProviderCall rotating(*this, *provider_);
  maybe_rotate(dek, wrapped);
  if (rotation_wanted_.exchange(false)) start_rotation();
}

bool KeyMonitor::apply(Result<Unlocked> unlocked) {
  std::lock_guard<std::mutex> g(state_mu_);
  note_settings();
  auto now = clock_.steady();
  // A good check unwraps the very key in use; any other key, however it was got, is tampering.
  if (unlocked.ok() && state_ == KeyState::kAvailable &&
      !keyring_.holds(store_.super.dek_generation, unlocked->dek)) {
    unlocked = Status(EUCLEAN, "the vault's unwrap gave a key other than the one in use");
  }
  if (unlocked.ok()) {
    last_success_ = now;
    last_success_wall_ = clock_.wall();
    if (state_ != KeyState::kAvailable) {
      std::string key_id = unlocked->wrapped.key_id;
      if (!install_keys(keyring_, store_.super.dek_generation, std::move(*unlocked)).ok()) return false;
      spdlog::warn("key access restored ({}); serving {} again", key_id, mountpoint_);
      audit_.record("restore", key_id, "ok", {{"after", to_string(state_)}});
      set_state(KeyState::kAvailable);
    }
    return true;
  } else if (unlocked.status().code() == EUCLEAN || unlocked.status().code() == EIO) {
    if (state_ != KeyState::kTampered) revoke(KeyState::kTampered, unlocked.status().message());
  } else if (keyclient::is_definitive_refusal(unlocked.status())) {
    if (state_ != KeyState::kRevoked) revoke(KeyState::kRevoked, unlocked.status().message());
  } else {
    outage("key vault unreachable (" + unlocked.status().message() + ")",
           "key vault unreachable for longer than the offline grace", nlohmann::json::object());
  }
  return false;
}

void KeyMonitor::outage(const std::string& why, const std::string& fail_closed_reason, const nlohmann::json& detail) {
  if (state_ == KeyState::kAvailable) {
    spdlog::warn("{}; serving from the cached key for up to {} s", why,
                 std::chrono::duration_cast<std::chrono::seconds>(options_.offline_grace).count());
    audit_.record("unreachable", shown_.versioned_key_identifier, "serving-from-cache", detail);
    set_state(KeyState::kUnreachable);
  }
  if (state_ == KeyState::kUnreachable && clock_.steady() - last_success_ >= options_.offline_grace) {
    revoke(KeyState::kFailedClosed, fail_closed_reason);
  }
}

KeyMonitor::CheckCounts KeyMonitor::counts() {
  std::lock_guard<std::mutex> g(counts_mu_);
  CheckCounts c = counts_;
  if (published_state_ == KeyState::kUnreachable) {
    c.grace_left_seconds = std::max(0.0, std::chrono::duration<double>(options_.offline_grace -
                                                                      (clock_.steady() - published_last_success_)).count());
  }
  return c;
}

void KeyMonitor::set_state(KeyState s) {
  state_ = s;
  state_since_ = clock_.wall();
}

void KeyMonitor::revoke(KeyState why, const std::string& reason) {
  keyring_.revoke();
  invalidate_caches_();
  spdlog::error("key access lost ({}): keys wiped, every access to {} now answers EACCES", reason, mountpoint_);
  const char* event = why == KeyState::kRevoked ? "revoke" : why == KeyState::kTampered ? "tamper" : "fail-closed";
  audit_.record(event, shown_.versioned_key_identifier, "ok", {{"reason", reason}});
  set_state(why);
}

void KeyMonitor::maybe_rotate(const crypto::SecretBytes& dek, const keyclient::WrappedKey& wrapped) {
  if (!store_.kek.rotation_enabled() || !options_.writes) return;
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

void KeyMonitor::start_rotation() {
  if (!options_.writes) return;
  if (!keyring_.older_generations().empty()) return;  // one at a time
  auto unlocked = unlock(store_, *provider_, audit_, "data-key rotation");
  auto to = unlocked.ok() ? start_dek_rotation(store_, *provider_, *unlocked, audit_) : Result<uint32_t>(unlocked.status());
  if (!to.ok()) {
    spdlog::error("cannot start a data-key rotation: {}", to.status().message());
    return;
  }
  reload_settings();  // takes the new generation as any rotation is taken
}

void KeyMonitor::finish_rotation() {
  Status s = finish_dek_rotation(store_, audit_);
  if (!s.ok()) {
    spdlog::error("data-key rotation: cannot forget the older generations: {}", s.message());
    return;
  }
  keyring_.forget_older();
  spdlog::info("data-key rotation done: everything is under generation {}; the old keys are deleted (the metadata "
               "file is compacted at unmount)",
               store_.super.dek_generation);
}

void KeyMonitor::note_settings() {
  const auto& k = store_.kek;
  shown_.key_identifier = k.customer_managed() ? k.key_identifier : k.key_file;
  shown_.versioned_key_identifier = k.versioned_key_identifier;
  shown_.dek_generation = store_.super.dek_generation;
}

void KeyMonitor::publish_status(bool on_check_thread) {
  std::lock_guard<std::mutex> state(state_mu_);
  if (on_check_thread) note_settings();
  {
    std::lock_guard<std::mutex> g(counts_mu_);
    counts_.last_success_unix = unix_seconds(last_success_wall_);
    counts_.data_key_generation = shown_.dek_generation;
    counts_.key_version = shown_.versioned_key_identifier;
    published_state_ = state_;
    published_last_success_ = last_success_;
  }
  nlohmann::json j{{"state", to_string(state_)},
                   {"since", unix_seconds(state_since_)},
                   {"lastSuccessfulCheck", unix_seconds(last_success_wall_)},
                   {"keyIdentifier", shown_.key_identifier},
                   {"versionedKeyIdentifier", shown_.versioned_key_identifier},
                   {"mountpoint", mountpoint_},
                   {"pid", ::getpid()},
                   {"dataKeyGeneration", shown_.dek_generation},
                   {"auditLog", audit_.path()}};
  if (status_extra_) {
    nlohmann::json extra = status_extra_();
    for (const auto& [key, value] : extra.items()) j[key] = value;
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(status_path_).parent_path(), ec);
  // A new file, never through a link or into one left behind (written as root).
  // A mountpoint need not be UTF-8: replaced, or dump() would throw.
  std::string tmp = status_path_ + ".tmp", text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {  // an old status left standing would tell `cmkfs status` what no longer holds
    if (!status_write_failed_) spdlog::warn("cannot write the key status to {}: {}", tmp, std::strerror(errno));
    status_write_failed_ = true;
    ::unlink(status_path_.c_str());
    return;
  }
  status_write_failed_ = false;
  bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (written) std::filesystem::rename(tmp, status_path_, ec);
}

}  // namespace cmkfs::fs
