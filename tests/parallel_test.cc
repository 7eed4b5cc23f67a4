#include "fs/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace cmkfs::fs {
namespace {

// Several callers at once (FUSE workers each splitting a large read) share the helpers: each call
// still covers its whole range exactly once and returns only when every piece is done.
TEST(ParallelFor, ConcurrentCallersEachCoverTheirRangeExactlyOnce) {
  constexpr size_t kItems = 64;
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&failures] {
      for (int round = 0; round < 200; ++round) {
        std::vector<std::atomic<int>> hits(kItems);
        parallel_for(kItems, 8, [&hits](size_t b, size_t e) {
          for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (auto& h : hits) {
          if (h.load() != 1) failures.fetch_add(1);
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ParallelFor, SmallJobsRunWhole) {
  size_t calls = 0, covered = 0;
  parallel_for(5, 8, [&](size_t b, size_t e) {
    ++calls;
    covered += e - b;
  });
  EXPECT_EQ(calls, 1u);
  EXPECT_EQ(covered, 5u);
}

}  // namespace
}  // namespace cmkfs::fs
