// The keyring's gate: revocation closes it for every operation, however many keep coming.
#include "fs/store/keyring.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace cmkfs::fs {
namespace {

using Clock = std::chrono::steady_clock;

// glibc's shared_mutex lets new readers in ahead of a waiting writer: with operations always
// overlapping (a registry serving pulls), revoke() waited for as long as they kept coming, the
// keys stayed in memory and the mount served. Readers here overlap for 5 s; revoke() must end
// long before they do.
TEST(KeyringTest, RevocationIsNotHeldOffByOperationsThatKeepComing) {
  Keyring ring;
  ASSERT_TRUE(ring.install(1, crypto::SecretBytes(crypto::kKeySize)).ok());
  const auto readers_end = Clock::now() + std::chrono::seconds(5);
  std::atomic<int> served_after_revoke{0};
  std::atomic<bool> revoked{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::microseconds(250 * i));  // staggered: always one inside
      while (Clock::now() < readers_end) {
        auto access = ring.access();
        if (access.ok() && revoked) ++served_after_revoke;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // an operation's length
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ring.revoke();
  revoked = true;
  const auto revoke_ended = Clock::now();
  for (auto& t : readers) t.join();
  EXPECT_LT(revoke_ended + std::chrono::seconds(2), readers_end) << "revoke() waited for the readers to stop";
  EXPECT_EQ(served_after_revoke, 0);
  EXPECT_FALSE(ring.access().ok());
}

}  // namespace
}  // namespace cmkfs::fs
