// Runs a function every `interval` on its own thread until stopped or destroyed (either waits
// for a run in progress). Used for the periodic inode flush.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace cmkfs::fs {

class Periodic {
 public:
  Periodic(std::chrono::milliseconds interval, std::function<void()> fn)
      : interval_(interval), fn_(std::move(fn)), thread_([this] { run(); }) {}
  ~Periodic() { stop(); }
  // Once it returns, the function never runs again.
  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, interval_, [this] { return stopping_; })) {
      lock.unlock();
      fn_();
      lock.lock();
    }
  }

  std::chrono::milliseconds interval_;
  std::function<void()> fn_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is ready
};

}  // namespace cmkfs::fs
