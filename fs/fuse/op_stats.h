// Counts and latency histograms of the FUSE requests a session serves, by operation, and the
// bytes moved: lock-free, for the daemon's /metrics.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace cmkfs::fs {

struct OpStats {
  enum Op { kLookup, kGetattr, kSetattr, kOpen, kCreate, kRead, kWrite, kRelease, kFsync, kUnlink, kRename, kMkdir,
            kRmdir, kReaddir, kCount };
  static constexpr const char* kNames[kCount] = {"lookup", "getattr", "setattr", "open", "create", "read", "write",
                                                 "release", "fsync", "unlink", "rename", "mkdir", "rmdir", "readdir"};
  // Upper bounds of the latency buckets, in seconds (Prometheus `le`); one more for +Inf.
  static constexpr std::array<double, 9> kBounds = {1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0};

  struct PerOp {
    std::atomic<uint64_t> count{0}, errors{0}, sum_ns{0};
    std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets{};
  };
  std::array<PerOp, kCount> ops;
  std::atomic<uint64_t> bytes_read{0}, bytes_written{0};

  void record(Op op, std::chrono::nanoseconds took, int err) {
    PerOp& p = ops[op];
    p.count.fetch_add(1, std::memory_order_relaxed);
    if (err != 0) p.errors.fetch_add(1, std::memory_order_relaxed);
    p.sum_ns.fetch_add(static_cast<uint64_t>(took.count()), std::memory_order_relaxed);
    double secs = std::chrono::duration<double>(took).count();
    size_t b = 0;
    while (b < kBounds.size() && secs > kBounds[b]) ++b;
    p.buckets[b].fetch_add(1, std::memory_order_relaxed);
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
