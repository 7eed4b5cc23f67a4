// Who a connection to our HTTPS servers comes from, and how many connections each client may hold.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keyclient/web/connection_limit.h"
#include "keyclient/web/peer.h"

namespace cmkfs::testing {
namespace {

using web::client_of;
using web::connection_of;
using web::ConnectionLimit;

// A listening socket on 127.0.0.1 and the port it got.
struct Listener {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int port = 0;
  Listener() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), n), 0);
    EXPECT_EQ(::listen(fd, 8), 0);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
  int connect() const {
    int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    EXPECT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return c;
  }
};

TEST(WebPeer, ALoopbackClientIsTheUserOwningItsSocket) {
  Listener l;
  int mine = l.connect();
  int accepted = ::accept(l.fd, nullptr, nullptr);
  auto c = connection_of(accepted);
  ASSERT_TRUE(c);
  EXPECT_TRUE(web::on_loopback(*c));
  EXPECT_EQ(web::loopback_owner(*c), ::geteuid());
  EXPECT_EQ(client_of(*c).name, "uid " + std::to_string(::geteuid()) + " on loopback");
  EXPECT_TRUE(client_of(*c).loopback);
  ::close(mine);
  ::close(accepted);

  if (::geteuid() != 0) GTEST_SKIP() << "a socket of another user needs root to make";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  if (child == 0) {
    if (::setuid(65534) != 0) _exit(1);
    int s = l.connect();
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    ::pause();  // holds the connection until killed
    ::close(s);
    _exit(0);
  }
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  int theirs = ::accept(l.fd, nullptr, nullptr);
  auto other = connection_of(theirs);
  ASSERT_TRUE(other);
  EXPECT_EQ(web::loopback_owner(*other), 65534u);
  EXPECT_EQ(client_of(*other).name, "uid 65534 on loopback");
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  // Its end is gone: the kernel no longer lists an established connection, so nobody owns it.
  EXPECT_EQ(web::loopback_owner(*other), std::nullopt);
  ::close(theirs);
  ::close(ready[0]);
  ::close(ready[1]);
}

// A client that changes its address within what it holds anyway is still the same client.
TEST(WebPeer, ARemoteClientIsItsAddressAndAnIpv6OneItsSlash64) {
  auto name = [](const std::string& address) { return client_of(address, 40000, "192.0.2.1", 443).name; };
  auto name6 = [](const std::string& address) { return client_of(address, 40000, "2001:db8::1", 443).name; };
  auto four = connection_of("192.0.2.7", 40000, "192.0.2.1", 443);
  ASSERT_TRUE(four);
  EXPECT_FALSE(web::on_loopback(*four));
  EXPECT_EQ(web::loopback_owner(*four), std::nullopt);
  EXPECT_FALSE(client_of(*four).loopback);
  EXPECT_EQ(name("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(client_of("::ffff:192.0.2.7", 40000, "::ffff:192.0.2.1", 443).name, "192.0.2.7");  // through a dual-stack socket
  EXPECT_EQ(name6("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(name6("2001:db8:1:2::9"), "2001:db8:1:2::/64");
  EXPECT_EQ(name6("2001:db8:1:3::9"), "2001:db8:1:3::/64");  // the next /64: another host's
  EXPECT_EQ(name6("fe80::1:2:3:4%lo"), "fe80::/64%lo");      // a link's neighbours, on that link
  EXPECT_EQ(name6("fe80::1%no-such-link"), "fe80::1%no-such-link");
  EXPECT_EQ(name("not an address"), "not an address");
  EXPECT_FALSE(connection_of("127.0.0.1", 0, "127.0.0.1", 443));
  EXPECT_FALSE(connection_of("127.0.0.1", 70000, "127.0.0.1", 443));
}

// A loopback connection the kernel does not list (here: made up) is still loopback's, in one
// client of its own.
TEST(WebPeer, LoopbackWithoutAKnownOwnerIsOneLocalClient) {
  for (const char* address : {"127.0.0.2", "127.200.0.1", "::1"}) {
    auto c = client_of(address, 40000, std::string(address) == "::1" ? "::1" : "127.0.0.1", 443);
    EXPECT_EQ(c.name, "loopback") << address;
    EXPECT_TRUE(c.loopback) << address;
  }
}

TEST(WebConnectionLimit, EachClientHoldsAtMostItsLimitAndReleasingFreesASlot) {
  ConnectionLimit limit(2, "test");
  EXPECT_TRUE(limit.acquire("a"));
  EXPECT_TRUE(limit.acquire("a"));
  EXPECT_FALSE(limit.acquire("a"));
  EXPECT_TRUE(limit.acquire("b"));  // another client's slots are its own
  EXPECT_EQ(limit.held("a"), 2u);
  EXPECT_EQ(limit.refused(), 1u);
  limit.release("a");
  EXPECT_TRUE(limit.acquire("a"));
  limit.release("a");
  limit.release("a");
  limit.release("a");  // more releases than acquires change nothing
  EXPECT_EQ(limit.held("a"), 0u);
  EXPECT_TRUE(limit.acquire("a"));
  EXPECT_TRUE(limit.acquire("a"));
  EXPECT_FALSE(limit.acquire("a"));
}

}  // namespace
}  // namespace cmkfs::testing
