// The periodic runner the daemon flushes with. At unmount the daemon stops it before its last
// flush and the metadata compaction that replaces the store's handle: a run after stop() read a
// null handle (UBSan, CI).
#include "fs/daemon/periodic.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace cmkfs::testing {
namespace {

using namespace std::chrono_literals;

TEST(PeriodicTest, AfterStopTheFunctionNeverRunsAgain) {
  std::atomic<int> runs{0};
  fs::Periodic periodic(1ms, [&runs] { ++runs; });
  for (int i = 0; i < 2000 && runs < 3; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_GE(runs.load(), 3);
  periodic.stop();
  int at_stop = runs.load();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runs.load(), at_stop);
  periodic.stop();  // a second stop, then the destructor's: no effect
}

TEST(PeriodicTest, StopWaitsForTheRunInProgress) {
  std::atomic<bool> started{false}, finished{false};
  fs::Periodic periodic(1ms, [&] {
    if (started.exchange(true)) return;
    std::this_thread::sleep_for(100ms);
    finished = true;
  });
  for (int i = 0; i < 2000 && !started; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(started.load());
  periodic.stop();
  EXPECT_TRUE(finished.load());
}

}  // namespace
}  // namespace cmkfs::testing
