// keyclient: watching the calls to a key provider. A PKCS#11 module runs inside this process:
// a call into a module that hangs cannot be timed out, only watched. A provider made observed()
// tells its observer when each call (and its own destruction) starts and ends; the daemon's key
// monitor gives up such a call at unmount, a command gives up itself (CallWatchdog).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "keyclient/keyclient.h"

namespace cmkfs::keyclient {

class CallObserver {
 public:
  virtual ~CallObserver() = default;
  virtual void enter() = 0;  // before a call
  virtual void leave() = 0;  // after it, also when it throws

  class Inside {  // one call, from construction to destruction
   public:
    explicit Inside(CallObserver& o) : o_(o) { o_.enter(); }
    ~Inside() { o_.leave(); }
    Inside(const Inside&) = delete;
    Inside& operator=(const Inside&) = delete;

   private:
    CallObserver& o_;
  };
};

// `inner` with every call, and its destruction (a module's C_CloseSession may hang too), inside
// `observer`.
std::unique_ptr<KeyProvider> observed(std::unique_ptr<KeyProvider> inner, std::shared_ptr<CallObserver> observer);

// Runs `on_hung` once, on a thread of its own, when a call has been inside for `limit` (counted
// from the outermost of nested ones). `on_hung` runs holding the watchdog's lock, so the call
// cannot return meanwhile; it is meant to end the process: the call still holds its thread and
// the module. The thread starts with the first call (after a daemon's fork, not before).
class CallWatchdog : public CallObserver {
 public:
  CallWatchdog(std::chrono::milliseconds limit, std::function<void()> on_hung)
      : limit_(limit), on_hung_(std::move(on_hung)) {}
  ~CallWatchdog() override;
  CallWatchdog(const CallWatchdog&) = delete;
  CallWatchdog& operator=(const CallWatchdog&) = delete;

  void enter() override;
  void leave() override;
  // Stops watching: later calls are not bounded (a daemon hands its provider to the key monitor,
  // which bounds them its own way).
  void stop();

 private:
  void run();

  const std::chrono::milliseconds limit_;
  const std::function<void()> on_hung_;
  std::mutex mu_;  // guards what follows
  std::condition_variable cv_;
  int inside_ = 0;
  std::chrono::steady_clock::time_point since_;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace cmkfs::keyclient
