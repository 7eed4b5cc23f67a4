// A lock-free histogram in Prometheus' shape: how many observations fell at or under each bound
// (plus one bucket past the last), their count and their sum. `Bounds` is a constexpr array of
// upper bounds, so a histogram needs no constructor arguments and can live in arrays.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace cmkfs {

template <const auto& Bounds>
class Histogram {
 public:
  static constexpr auto& kBounds = Bounds;
  static constexpr size_t kBuckets = Bounds.size() + 1;

  void observe(double v) {
    size_t b = 0;
    while (b < Bounds.size() && v > Bounds[b]) ++b;
    buckets_[b].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }
  uint64_t bucket(size_t b) const { return buckets_[b].load(std::memory_order_relaxed); }  // not cumulative
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Upper bounds for latencies, in seconds: 100 µs to 1 s.
inline constexpr std::array<double, 9> kLatencyBounds = {1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0};

}  // namespace cmkfs
