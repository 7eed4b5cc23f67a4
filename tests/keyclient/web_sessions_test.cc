// Sessions and sign-in throttling of the web consoles (keyclient/web/sessions.h): a client that
// changes its address within what it holds anyway gains no guesses, and a session outlives
// neither its limits nor the token it was opened with.
#include "keyclient/web/sessions.h"

#include <gtest/gtest.h>

namespace cmkfs::web {
namespace {

void fail_from(Sessions& s, const std::vector<std::string>& addresses, int64_t now) {
  for (const auto& a : addresses) s.failed(a, now);
}

// The vault console takes the CLI's 300-second admin token as a password: before, the session it
// opened lasted the 8 hours a password's does.
TEST(SessionsTest, ASessionEndsWithTheTokenItWasOpenedWith) {
  Sessions s;
  s.idle_seconds = 24 * 3600;
  std::string token = s.open("admin", 1000, 1300);
  std::string password = s.open("admin", 1000);
  ASSERT_NE(s.find(token, 1299), nullptr);
  EXPECT_EQ(s.find(token, 1300), nullptr);
  EXPECT_EQ(s.find(token, 1299), nullptr);  // gone for good
  ASSERT_NE(s.find(password, 1300), nullptr);
  ASSERT_NE(s.find(password, 1000 + 4000), nullptr);
  EXPECT_EQ(s.find(password, 1000 + 8 * 3600), nullptr);  // the absolute limit
}

TEST(SessionsTest, FiveFailuresFromOneClientShutItOutForAMinute) {
  Sessions s;
  fail_from(s, {"192.0.2.7", "192.0.2.7", "192.0.2.7", "192.0.2.7"}, 100);
  EXPECT_FALSE(s.throttled("192.0.2.7", 100));
  s.failed("192.0.2.7", 100);
  EXPECT_TRUE(s.throttled("192.0.2.7", 159));
  EXPECT_FALSE(s.throttled("192.0.2.8", 159));  // another host
  EXPECT_FALSE(s.throttled("192.0.2.7", 160));
}

TEST(SessionsTest, LoopbackAndAnIpv6Slash64AreOneClient) {
  Sessions s;
  fail_from(s, {"127.0.0.2", "127.0.0.3", "127.1.2.3", "::1", "::ffff:127.0.0.9"}, 100);
  EXPECT_TRUE(s.throttled("127.0.0.1", 100));
  EXPECT_TRUE(s.throttled("127.200.0.1", 100));
  fail_from(s, {"2001:db8::1", "2001:db8::2", "2001:db8::ffff:1", "2001:db8:0:0:1::", "2001:db8::abcd"}, 100);
  EXPECT_TRUE(s.throttled("2001:db8::99", 100));
  EXPECT_FALSE(s.throttled("2001:db8:0:1::1", 100));  // the next /64: another host's
  s.succeeded("::1");
  EXPECT_FALSE(s.throttled("127.0.0.1", 100));
}

TEST(SessionsTest, SixtyFailuresFromAnywhereShutEveryoneButLoopbackOutForAMinute) {
  Sessions s;
  for (int i = 0; i < 60; ++i) s.failed("198.51.100." + std::to_string(i), 100);
  EXPECT_TRUE(s.throttled("203.0.113.1", 130));
  EXPECT_FALSE(s.throttled("127.0.0.1", 130));  // the host's own admin
  EXPECT_FALSE(s.throttled("203.0.113.1", 160));
}

TEST(SessionsTest, ALinkLocalSlash64IsAClientOnItsOwnLinkOnly) {
  Sessions s;
  fail_from(s, {"fe80::1%eth0", "fe80::2%eth0", "fe80::3%eth0", "fe80::4%eth0", "fe80::5%eth0"}, 100);
  EXPECT_TRUE(s.throttled("fe80::9%eth0", 100));
  EXPECT_FALSE(s.throttled("fe80::9%eth1", 100));  // another link's neighbour
}

}  // namespace
}  // namespace cmkfs::web
