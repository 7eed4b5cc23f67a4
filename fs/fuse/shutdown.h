// Orderly shutdown on SIGTERM and SIGINT: first write the kernel's dirty pages back (syncfs)
// while the FUSE workers still serve, then end the session loop. libfuse's own handlers would end
// the loop at once and lose whatever the writeback cache still held. SIGHUP calls `on_hangup`
// (the daemon reopens its log file) and stops nothing: logrotate sends it.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "fs/fuse/cache_invalidator.h"

namespace cmkfs::fs {

class ShutdownOnSignal {
 public:
  // REQUIRES: called on the thread that will run the session loop, before any other thread
  // starts (they inherit the blocked signals).
  // `writes` counts the WRITE requests served: the stop waits until they cease. `invalidations`
  // are closed before the loop ends.
  ShutdownOnSignal(fuse_session* se, std::string mountpoint, const std::atomic<uint64_t>* writes,
                   CacheInvalidator* invalidations, std::function<void()> on_hangup);
  ~ShutdownOnSignal();  // finish(), then restores the default handlers

  // Once the session loop has ended: the watcher ends and no later signal reaches the session
  // (it may be gone); SIGTERM and SIGINT stay caught, so they cannot cut the last flush short.
  void finish();
  ShutdownOnSignal(const ShutdownOnSignal&) = delete;
  ShutdownOnSignal& operator=(const ShutdownOnSignal&) = delete;

 private:
  void watch();

  fuse_session* se_;
  std::function<void()> on_hangup_;
  std::string mountpoint_;
  const std::atomic<uint64_t>* writes_;
  CacheInvalidator* invalidations_;
  pthread_t loop_thread_;
  std::thread watcher_;
};

}  // namespace cmkfs::fs
