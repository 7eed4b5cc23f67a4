// The key monitor: a background thread that keeps a mounted store's access to its key honest.
//
// Every check interval it proves access by unwrapping the stored data key:
// - a definitive refusal (no access, key disabled or deleted, identity unknown) revokes: the
//   keyring is wiped and the kernel's caches invalidated, so every operation answers EACCES;
// - an unreachable vault is tolerated for the offline grace, then fails closed the same way;
// - when access comes back, the data key is installed again and the mount serves: no remount.
// With an unversioned key id it also asks for the latest key version every rotation-poll
// interval and rewraps the data key when it changed. Settings changed by `cmkfs encryption
// rotate-key` in another process are picked up at the next check.
//
// Thread-safety: start() and stop() from one thread; everything else runs on the monitor's own.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "fs/audit.h"
#include "fs/keyring.h"
#include "fs/store.h"

namespace cmkfs::fs {

struct MonitorOptions {
  std::chrono::milliseconds check_interval{std::chrono::seconds(30)};
  std::chrono::milliseconds rotation_poll_interval{std::chrono::hours(1)};
  std::chrono::milliseconds offline_grace{std::chrono::minutes(15)};
};

enum class KeyState { kAvailable, kRevoked, kUnreachable, kFailedClosed };
const char* to_string(KeyState s);

class KeyMonitor {
 public:
  // invalidate_caches: drops the kernel's page and attribute caches of every inode it knows;
  // called from the monitor thread, never from a request handler.
  KeyMonitor(OpenStore& store, Keyring& keyring, std::unique_ptr<keyclient::KeyProvider> provider,
             MonitorOptions options, AuditLog& audit, std::function<void()> invalidate_caches, std::string mountpoint);
  ~KeyMonitor() { stop(); }

  void start();  // publishes the status, then checks on its own thread if the key is revocable
  void stop();
  void check_once();  // one round, on the caller's thread

 private:
  void run();
  void reload_settings();
  void revoke(KeyState why, const std::string& reason);
  void maybe_rotate(const crypto::SecretBytes& dek, const keyclient::WrappedKey& wrapped);
  void publish_status();

  using Clock = std::chrono::system_clock;
  OpenStore& store_;
  Keyring& keyring_;
  std::unique_ptr<keyclient::KeyProvider> provider_;
  MonitorOptions options_;
  AuditLog& audit_;
  std::function<void()> invalidate_caches_;
  std::string mountpoint_;

  KeyState state_ = KeyState::kAvailable;
  Clock::time_point state_since_ = Clock::now();
  Clock::time_point last_success_ = Clock::now();
  Clock::time_point last_rotation_poll_ = Clock::now();

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cmkfs::fs
