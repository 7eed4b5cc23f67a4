// The key monitor: a background thread that keeps a mounted store's access to its key honest.
//
// Every check interval it proves access by unlocking the stored data key (fs/store/store.h):
// - a definitive refusal (no access, key disabled or deleted, identity unknown) revokes: the
//   keyring is wiped and the kernel's caches invalidated, so every operation answers EACCES;
// - an unreachable vault is tolerated for the offline grace, then fails closed the same way;
// - when access comes back, the data key is installed again and the mount serves: no remount.
// With an unversioned key id it also asks for the latest key version every rotation-poll
// interval and rewraps the data key when it changed. Settings changed by `cmkfs encryption
// rotate-key` in another process are picked up at the next check.
//
// A provider call that never returns (a PKCS#11 module or plugin that hangs) holds its check, not
// the grace: a watchdog counts a check running past its deadline as an unreachable vault, and
// fails the mount closed once the grace since the last good check is over, while the call still
// hangs. When it answers at last, the check goes on as any other. An unmount does not wait for
// it past that deadline either: stop() gives the check up (abandoned()), and a call that answers
// after that parks its thread where it is, so nothing it would do races the unmount's flush; the
// daemon then ends with _exit, since the monitor cannot be destroyed under that thread.
//
// Thread-safety: start() and stop() from one thread; check_once() runs on the monitor's own,
// watch_once() on the watchdog's (or, in tests, both on threads of the test's while neither runs).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "crypto/base/histogram.h"
#include "fs/daemon/clock.h"
#include "fs/daemon/daemon.h"
#include "fs/store/store.h"
#include "keyclient/call_watch.h"

namespace cmkfs::fs {

// kTampered: a check unwrapped a key other than the one in use, or the store disagreed with this
// host's binding; the mount fails closed until a check unwraps the bound key again.
enum class KeyState { kAvailable, kRevoked, kUnreachable, kFailedClosed, kTampered };
const char* to_string(KeyState s);

class KeyMonitor {
 public:
  // invalidate_caches: drops the kernel's page and attribute caches of every inode it knows;
  // called from the monitor thread, never from a request handler. REQUIRES: store, keyring,
  // audit and clock outlive the monitor.
  KeyMonitor(OpenStore& store, Keyring& keyring, std::unique_ptr<keyclient::KeyProvider> provider,
             MonitorOptions options, AuditLog& audit, std::function<void()> invalidate_caches, std::string mountpoint,
             Clock& clock = real_clock());
  ~KeyMonitor();

  void start();  // publishes the status, then checks on its own thread if the key is revocable
  // Ends the checks: waits for one running, unless its provider call hangs past the watchdog's
  // deadline; then it is abandoned, and the monitor must never be destroyed (end the process).
  void stop();
  bool abandoned() {
    std::lock_guard<std::mutex> g(gate_->mu);
    return gate_->abandoned;
  }
  // A daemon's exit code `code` once it is done with a stopped monitor: returned, or, when the
  // monitor was abandoned, the process ends with it at once (log flushed), since returning would
  // destroy the monitor under its thread.
  static int finish(KeyMonitor& m, int code) {
    if (m.abandoned()) end_process(code);
    return code;
  }
  [[noreturn]] static void end_process(int code);
  void check_once();  // one round, on the caller's thread
  // The watchdog's round: a call to the provider running longer than kHungAfter request timeouts
  // (a vault client's retries, backoff and token requests fit in it) makes the vault unreachable,
  // and past the offline grace since the last good check fails the mount closed.
  void watch_once();
  static constexpr int kHungAfter = kProviderHungAfter;
  KeyState state() const { return state_; }
  // The rekeyer moved everything to the current data-key generation: the monitor forgets the
  // older ones at once (it alone changes the store's key records while mounted).
  void rotation_finished() { wake(rotation_finished_); }
  // Starts a data-key rotation at once (the metadata key's nonce budget is running out).
  void request_rotation() { wake(rotation_wanted_); }
  // Adds fields to the published status (rotation progress).
  void set_status_extra(std::function<nlohmann::json()> fn) { status_extra_ = std::move(fn); }
  // Runs on the monitor's thread once another process's data-key rotation is taken. Before start().
  void set_on_new_generation(std::function<void()> fn) { on_new_generation_ = std::move(fn); }
  // What the checks did so far, for /metrics.
  struct CheckCounts {
    uint64_t checks = 0, ok = 0, refused = 0, unreachable = 0, tampered = 0;
    int64_t last_success_unix = 0;    // wall clock
    double grace_left_seconds = -1;   // while the vault is unreachable; -1 otherwise
    uint32_t data_key_generation = 0;
    std::string key_version;          // the versioned key id in use, "" for the local key
  };
  CheckCounts counts();
  // Upper bounds of the check latencies, in seconds: a vault's round trip, up to its timeouts.
  static constexpr std::array<double, 10> kCheckBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
  const Histogram<kCheckBounds>& check_seconds() const { return check_seconds_; }

  // The time spent inside the provider itself (its calls, and making and unmaking it), which is
  // what stop() weighs before it gives a check up. A call that returns, or throws, after that
  // parks its thread for good: the gate's lock orders the decision and the return, so a late
  // answer cannot change the keys, the status or the superblock while the unmount flushes.
  struct Gate : keyclient::CallObserver {
    explicit Gate(Clock& c) : clock(c) {}
    void enter() override;  // parks the thread if the gate was abandoned
    void leave() override;  // parks the thread if the gate was abandoned meanwhile
    Clock& clock;
    std::mutex mu;  // guards what follows
    int inside = 0;
    std::chrono::steady_clock::time_point since;
    bool abandoned = false;
  };

 private:
  class ProviderCall;
  void run();
  void watch();
  // Until run() has returned (true), or the provider call it is in hangs past the deadline.
  bool wait_for_run();
  // Moves the state as the check's outcome says; true when it unwrapped the key in use.
  bool apply(Result<Unlocked> unlocked);
  // REQUIRES: state_mu_. The vault did not answer (a check's error, or the watchdog's hung call):
  // serve from the cached key for the grace since the last good check, then fail closed.
  void outage(const std::string& why, const std::string& fail_closed_reason, const nlohmann::json& detail);
  void reload_settings();
  Status adopt(const meta::Superblock& sb);
  void revoke(KeyState why, const std::string& reason);
  void maybe_rotate(const crypto::SecretBytes& dek, const keyclient::WrappedKey& wrapped);
  // REQUIRES: state_mu_. Copies what the status shows of the store's settings, which only the
  // check's thread changes (the watchdog shows the copy).
  void note_settings();
  void publish_status(bool on_check_thread = true);
  void start_rotation();
  void finish_rotation();
  void wake(std::atomic<bool>& flag);
  void set_state(KeyState s);

  OpenStore& store_;
  Keyring& keyring_;
  std::shared_ptr<Gate> gate_;  // before provider_: destroying the provider goes through it
  std::unique_ptr<keyclient::KeyProvider> provider_;
  MonitorOptions options_;
  AuditLog& audit_;
  std::function<void()> invalidate_caches_;
  std::string mountpoint_;
  Clock& clock_;
  const std::string status_path_;

  // Changes of the state, and what decides them, under state_mu_ (the check and the watchdog
  // both make them); never held across a call to the provider.
  std::mutex state_mu_;
  std::atomic<KeyState> state_{KeyState::kAvailable};  // also read by state(), from any thread
  std::chrono::system_clock::time_point state_since_;       // shown in the status
  std::chrono::system_clock::time_point last_success_wall_;  // shown in the status
  std::chrono::steady_clock::time_point last_success_;       // the offline grace runs from here
  int in_provider_ = 0;  // calls to a revocable provider running (ProviderCall)
  std::chrono::steady_clock::time_point provider_since_;
  struct Shown {
    std::string key_identifier, versioned_key_identifier;
    uint32_t dek_generation = 0;
  } shown_;
  std::chrono::steady_clock::time_point last_rotation_poll_;
  std::string rejected_;  // the last superblock refused (reported once)
  bool status_write_failed_ = false;  // reported once until it works again

  std::function<nlohmann::json()> status_extra_;
  std::function<void()> on_new_generation_;
  // What /metrics reads from another thread: a copy made by publish_status() on the monitor's.
  std::mutex counts_mu_;
  CheckCounts counts_;
  Histogram<kCheckBounds> check_seconds_;
  KeyState published_state_ = KeyState::kAvailable;
  std::chrono::steady_clock::time_point published_last_success_;
  std::atomic<bool> rotation_finished_{false}, rotation_wanted_{false};

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool woken_ = false;
  bool run_done_ = false;
  std::thread thread_;
  std::thread watchdog_;
};

}  // namespace cmkfs::fs
