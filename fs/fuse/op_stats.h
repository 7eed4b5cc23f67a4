// Counts and latency histograms of the FUSE requests a session serves, by operation, and the
// bytes moved: lock-free, for the daemon's /metrics.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "crypto/base/histogram.h"

namespace cmkfs::fs {

struct OpStats {
  enum Op { kLookup, kGetattr, kSetattr, kOpen, kCreate, kRead, kWrite, kRelease, kFsync, kUnlink, kRename, kMkdir,
            kRmdir, kReaddir, kCount };
  static constexpr const char* kNames[kCount] = {"lookup", "getattr", "setattr", "open", "create", "read", "write",
                                                 "release", "fsync", "unlink", "rename", "mkdir", "rmdir", "readdir"};
  struct PerOp {
    std::atomic<uint64_t> errors{0};
    Histogram<kLatencyBounds> seconds;  // its count is the requests served
  };
  std::array<PerOp, kCount> ops;
  std::atomic<uint64_t> bytes_read{0}, bytes_written{0};

  void record(Op op, std::chrono::nanoseconds took, int err) {
    PerOp& p = ops[op];
    if (err != 0) p.errors.fetch_add(1, std::memory_order_relaxed);
    p.seconds.observe(std::chrono::duration<double>(took).count());
  }
};

// Times one request; `err` is what it answered. With no stats (none collected) it does nothing.
class OpTimer {
 public:
  OpTimer(OpStats* stats, OpStats::Op op) : stats_(stats), op_(op) {
    if (stats_ != nullptr) start_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() {
    if (stats_ != nullptr) stats_->record(op_, std::chrono::steady_clock::now() - start_, err);
  }
  OpStats* stats() const { return stats_; }
  int err = 0;

 private:
  OpStats* stats_;
  OpStats::Op op_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace cmkfs::fs
