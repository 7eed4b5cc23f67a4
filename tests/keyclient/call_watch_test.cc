#include "keyclient/call_watch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace cmkfs::keyclient {
namespace {

using namespace std::chrono_literals;

// A provider whose calls take as long as the test says.
class SlowProvider : public KeyProvider {
 public:
  explicit SlowProvider(std::chrono::milliseconds d) : d_(d) {}
  Result<WrappedKey> wrap(const crypto::SecretBytes&) override { return Status(ENOTSUP, "no"); }
  Result<crypto::SecretBytes> unwrap(const WrappedKey&) override { return Status(ENOTSUP, "no"); }
  Result<std::string> current_key_id() override {
    std::this_thread::sleep_for(d_);
    return std::string("k");
  }
  bool revocable() const override { return true; }
  Status validate() override { return Status::Ok(); }

 private:
  std::chrono::milliseconds d_;
};

TEST(CallWatchdog, ACallPastTheLimitIsReportedWhileItStillRuns) {
  std::atomic<bool> hung{false}, returned{false}, hung_after_return{false};
  auto watchdog = std::make_shared<CallWatchdog>(100ms, [&] {
    hung = true;
    hung_after_return = returned.load();
  });
  auto p = observed(std::make_unique<SlowProvider>(400ms), watchdog);
  EXPECT_TRUE(p->current_key_id().ok());
  returned = true;
  EXPECT_TRUE(hung);
  EXPECT_FALSE(hung_after_return);
}

TEST(CallWatchdog, CallsWithinTheLimitAndCallsAfterStopAreNot) {
  std::atomic<int> hung{0};
  auto watchdog = std::make_shared<CallWatchdog>(300ms, [&] { ++hung; });
  auto p = observed(std::make_unique<SlowProvider>(50ms), watchdog);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(p->current_key_id().ok());  // 500 ms in all, each well within
  std::this_thread::sleep_for(400ms);  // idle time does not count
  EXPECT_EQ(hung, 0);
  watchdog->stop();
  auto slow = observed(std::make_unique<SlowProvider>(500ms), watchdog);
  EXPECT_TRUE(slow->current_key_id().ok());
  EXPECT_EQ(hung, 0);
}

}  // namespace
}  // namespace cmkfs::keyclient
