// Sessions and sign-in throttling of the web consoles (keyclient/web/sessions.h): a client that
// changes its address within what it holds anyway gains no guesses, and a session outlives
// neither its limits nor the token it was opened with.
#include "keyclient/web/sessions.h"

#include <gtest/gtest.h>

namespace cmkfs::web {
namespace {

Client remote(const std::string& name) { return Client::remote(name); }
Client local(uid_t uid) { return Client::user(uid); }

void fail_from(Sessions& s, const Client& client, int times, int64_t now) {
  for (int i = 0; i < times; ++i) s.failed(client, now);
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
  fail_from(s, remote("192.0.2.7"), 4, 100);
  EXPECT_FALSE(s.throttled(remote("192.0.2.7"), 100));
  s.failed(remote("192.0.2.7"), 100);
  EXPECT_TRUE(s.throttled(remote("192.0.2.7"), 159));
  EXPECT_FALSE(s.throttled(remote("192.0.2.8"), 159));  // another host
  EXPECT_FALSE(s.throttled(remote("192.0.2.7"), 160));
  s.failed(remote("192.0.2.7"), 160);
  s.succeeded(remote("192.0.2.7"));
  fail_from(s, remote("192.0.2.7"), 4, 161);
  EXPECT_FALSE(s.throttled(remote("192.0.2.7"), 161));  // a success forgets the failures before it
}

// Before, all of loopback was one client: five wrong guesses by any local user shut the host's
// own admin out of the console for a minute, again and again.
TEST(SessionsTest, AnotherLocalUsersGuessesDoNotShutTheHostsAdminOut) {
  Sessions s;
  fail_from(s, local(65534), 5, 100);
  EXPECT_TRUE(s.throttled(local(65534), 100));
  EXPECT_FALSE(s.throttled(local(0), 100));
}

TEST(SessionsTest, SixtyFailuresFromAnywhereShutEveryoneButLoopbackOutForAMinute) {
  Sessions s;
  for (int i = 0; i < 60; ++i) s.failed(remote("198.51.100." + std::to_string(i)), 100);
  EXPECT_TRUE(s.throttled(remote("203.0.113.1"), 130));
  EXPECT_FALSE(s.throttled(local(0), 130));  // the host's own admin
  EXPECT_FALSE(s.throttled(remote("203.0.113.1"), 160));
  for (int i = 0; i < 60; ++i) s.failed(local(static_cast<uid_t>(i)), 200);
  EXPECT_FALSE(s.throttled(remote("203.0.113.1"), 200));  // local users' guesses shut nobody else out
}

}  // namespace
}  // namespace cmkfs::web
