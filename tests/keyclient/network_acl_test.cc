// The development vault's firewall rules alone: CIDR ranges, IPv4 and IPv6, and what they admit.
#include <gtest/gtest.h>

#include "keyclient/devvault/network.h"

namespace cmkfs::testing {
namespace {

using devvault::Cidr;
using devvault::NetworkAcls;

TEST(NetworkAcls, RangesParseToOneSpellingAndContainTheirAddresses) {
  auto r = Cidr::parse("10.1.2.3/8");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->to_string(), "10.0.0.0/8");
  EXPECT_TRUE(r->contains("10.255.0.1"));
  EXPECT_TRUE(r->contains("::ffff:10.9.9.9"));  // IPv4 mapped into IPv6 is the same address
  EXPECT_FALSE(r->contains("11.0.0.1"));
  EXPECT_FALSE(r->contains("not an address"));
  auto host = Cidr::parse("127.0.0.1");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->to_string(), "127.0.0.1/32");
  EXPECT_FALSE(host->contains("127.0.0.2"));
  auto v6 = Cidr::parse("2001:db8::1/32");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->to_string(), "2001:db8::/32");
  EXPECT_TRUE(v6->contains("2001:db8:ffff::5"));
  EXPECT_FALSE(v6->contains("2001:db9::5"));
  EXPECT_FALSE(v6->contains("10.0.0.1"));
  auto all = Cidr::parse("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->contains("192.168.1.1"));
  EXPECT_FALSE(all->contains("2001:db8::1"));  // every IPv4 address, no IPv6 one
}

TEST(NetworkAcls, MalformedRangesAreRefused) {
  for (const char* bad : {"", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x", "2001:db8::/129", "300.1.1.1",
                          "10.0.0.0/8/8", "example.com", "::ffff:10.0.0.0/8", "::ffff:0.0.0.0/95"}) {
    EXPECT_FALSE(Cidr::parse(bad).ok()) << bad;
  }
  // As IPv6, its IPv4 part prefixed: the same range as the IPv4 spelling, nothing more.
  auto mapped = Cidr::parse("::ffff:10.0.0.0/104");
  ASSERT_TRUE(mapped.ok());
  EXPECT_EQ(mapped->to_string(), "10.0.0.0/8");
  EXPECT_TRUE(mapped->contains("10.9.8.7"));
  EXPECT_FALSE(mapped->contains("192.168.1.1"));
}

TEST(NetworkAcls, DenyAdmitsOnlyTheRulesAndRoundTripsAsKeyVaultsShape) {
  NetworkAcls acls;
  EXPECT_TRUE(acls.admits("203.0.113.9"));  // Allow by default, as Azure
  acls.deny_by_default = true;
  EXPECT_FALSE(acls.admits("203.0.113.9"));
  acls.ip_rules.push_back(*Cidr::parse("203.0.113.0/24"));
  EXPECT_TRUE(acls.admits("203.0.113.9"));
  EXPECT_FALSE(acls.admits("198.51.100.1"));
  auto j = acls.to_json();
  EXPECT_EQ(j["defaultAction"], "Deny");
  EXPECT_EQ(j["bypass"], "AzureServices");
  EXPECT_EQ(j["ipRules"][0]["value"], "203.0.113.0/24");
  auto back = NetworkAcls::from_json(j);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->deny_by_default);
  EXPECT_TRUE(back->admits("203.0.113.200"));
  EXPECT_FALSE(NetworkAcls::from_json({{"ipRules", {{{"value", "nonsense"}}}}}).ok());
}

}  // namespace
}  // namespace cmkfs::testing
