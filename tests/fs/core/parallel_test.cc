#include "fs/core/parallel.h"

#include <gtest/gtest.h>

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cmkfs::fs {
namespace {

std::string cpus_allowed(const std::string& status_path) {
  std::ifstream in(status_path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Cpus_allowed_list:", 0) == 0) return line.substr(line.find_first_not_of(" \t", 18));
  }
  return "";
}

// The pool starts on first use, often from a FUSE worker pinned to one CPU. Its helpers must not
// inherit that pin: on a many-core machine every helper would then share one CPU. (ctest runs each
// test in its own process, so here the pinned caller is the pool's first user.)
TEST(ParallelFor, HelpersAreNotPinnedToTheirCreatorsCpu) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs two CPUs";
  std::string process_cpus = cpus_allowed("/proc/self/status");
  pid_t pinned_tid = 0;
  std::thread caller([&pinned_tid] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof(one), &one), 0);
    pinned_tid = gettid();
    std::atomic<int> pieces{0};
    parallel_for(64, 8, [&pieces](size_t, size_t) { pieces.fetch_add(1); });
    EXPECT_GE(pieces.load(), 2);
  });
  caller.join();
  int helpers = 0;
  for (auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    if (task.path().filename() == std::to_string(pinned_tid)) continue;
    ++helpers;
    EXPECT_EQ(cpus_allowed(task.path() / "status"), process_cpus) << "thread " << task.path().filename();
  }
  EXPECT_GE(helpers, 2);  // the main thread and at least one helper
}

// A call splits when it is alone (one large O_DIRECT read gets every core) and runs whole on its
// own thread when another is in progress (readahead's requests each already have a core).
TEST(ParallelFor, SplitsOnlyWhenNoOtherCallIsInProgress) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs two CPUs";
  std::atomic<int> alone_pieces{0};
  parallel_for(64, 8, [&](size_t, size_t) { alone_pieces.fetch_add(1); });
  EXPECT_GE(alone_pieces.load(), 2);

  std::atomic<bool> first_running{false}, release{false};
  std::thread first([&] {
    parallel_for(64, 8, [&](size_t b, size_t) {
      if (b != 0) return;
      first_running = true;
      while (!release) std::this_thread::yield();
    });
  });
  while (!first_running) std::this_thread::yield();
  std::vector<std::pair<size_t, size_t>> ranges;
  std::vector<std::thread::id> threads;
  std::mutex mu;
  parallel_for(64, 8, [&](size_t b, size_t e) {
    std::lock_guard<std::mutex> g(mu);
    ranges.emplace_back(b, e);
    threads.push_back(std::this_thread::get_id());
  });
  release = true;
  first.join();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], std::make_pair(size_t{0}, size_t{64}));
  EXPECT_EQ(threads[0], std::this_thread::get_id());
}

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
