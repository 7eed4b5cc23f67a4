// Who a connection to our HTTPS servers comes from, and how many connections each client may hold.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "keyclient/web/connection_limit.h"
#include "keyclient/web/https.h"
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
  EXPECT_EQ(client_of(*c).name, "local uid " + std::to_string(::geteuid()));
  EXPECT_TRUE(client_of(*c).local);
  ::close(mine);
  ::close(accepted);

  if (::geteuid() != 0) GTEST_SKIP() << "a socket of another user needs root to make";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  if (child == 0) {
    if (::setuid(65534) != 0) _exit(1);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int s = l.connect();
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    ::pause();  // holds the connection until killed
    ::close(s);
    _exit(0);
  }
  ASSERT_GE(child, 0) << "fork failed";
  ::close(ready[1]);  // a child that ends without a word ends the read below
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid <= 0) return;  // kill(-1) would signal every process there is
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{child};
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  int theirs = ::accept(l.fd, nullptr, nullptr);
  auto other = connection_of(theirs);
  ASSERT_TRUE(other);
  EXPECT_EQ(web::loopback_owner(*other), 65534u);
  EXPECT_EQ(client_of(*other).name, "local uid 65534");
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  reap.pid = 0;  // reaped: the guard has nothing left to do
  // Its end is gone: the kernel no longer lists an established connection, so nobody owns it.
  EXPECT_EQ(web::loopback_owner(*other), std::nullopt);
  ::close(theirs);
  ::close(ready[0]);
}

// A client that changes its address within what it holds anyway is still the same client.
TEST(WebPeer, ARemoteClientIsItsAddressAndAnIpv6OneItsSlash64) {
  auto name = [](const std::string& address) { return client_of(address, 40000, "192.0.2.1", 443).name; };
  auto name6 = [](const std::string& address) { return client_of(address, 40000, "2001:db8::1", 443).name; };
  auto four = connection_of("192.0.2.7", 40000, "192.0.2.1", 443);
  ASSERT_TRUE(four);
  EXPECT_FALSE(web::on_loopback(*four));
  EXPECT_EQ(web::loopback_owner(*four), std::nullopt);
  EXPECT_FALSE(client_of(*four).local);
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

// A local connection the kernel does not list (here: made up) is local, with no owner.
TEST(WebPeer, ALocalConnectionWithoutAKnownOwnerHasNoUser) {
  for (auto [client, server] : {std::pair{"127.0.0.2", "127.0.0.1"}, {"127.200.0.1", "127.0.0.1"}, {"::1", "::1"}}) {
    auto c = client_of(client, 40000, server, 443);
    EXPECT_EQ(c.name, "local, owner unknown") << client;
    EXPECT_TRUE(c.local) << client;
    EXPECT_FALSE(c.uid) << client;
  }
}

// A socket bound to the loopback device is still found (with no device named in the lookup, it
// was not, and its owner could hide).
TEST(WebPeer, ASocketBoundToLoopbackIsStillItsOwners) {
  Listener l;
  int mine = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::setsockopt(mine, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) != 0) GTEST_SKIP() << "SO_BINDTODEVICE refused";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(l.port));
  ASSERT_EQ(::connect(mine, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  int accepted = ::accept(l.fd, nullptr, nullptr);
  auto c = connection_of(accepted);
  ASSERT_TRUE(c);
  EXPECT_EQ(client_of(*c).uid, ::geteuid());
  ::close(mine);
  ::close(accepted);
}

// A socket bound to another device is not found by its owner: it is still this host's, and
// whichever of its addresses it comes from, one client ("local, owner unknown"), not one per address.
TEST(WebPeer, ASocketHiddenBehindAnotherDeviceIsLocalWithNoOwner) {
  ifaddrs* all = nullptr;
  ASSERT_EQ(::getifaddrs(&all), 0);
  std::string device;
  sockaddr_in address{};
  for (ifaddrs* i = all; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK)) continue;
    device = i->ifa_name;
    std::memcpy(&address, i->ifa_addr, sizeof address);
    break;
  }
  ::freeifaddrs(all);
  if (device.empty()) GTEST_SKIP() << "no IPv4 address but loopback";
  int listening = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t n = sizeof address;
  address.sin_port = 0;
  ASSERT_EQ(::bind(listening, reinterpret_cast<sockaddr*>(&address), n), 0);
  ASSERT_EQ(::listen(listening, 1), 0);
  ::getsockname(listening, reinterpret_cast<sockaddr*>(&address), &n);
  int hidden = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::setsockopt(hidden, SOL_SOCKET, SO_BINDTODEVICE, device.c_str(), device.size() + 1) != 0 ||
      ::connect(hidden, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(hidden);
    ::close(listening);
    GTEST_SKIP() << "cannot connect to " << device << "'s address through " << device;
  }
  int accepted = ::accept(listening, nullptr, nullptr);
  auto c = connection_of(accepted);
  ASSERT_TRUE(c);
  web::Client who = client_of(*c);
  EXPECT_EQ(who.name, "local, owner unknown");
  EXPECT_TRUE(who.local);
  EXPECT_FALSE(who.uid);
  ::close(accepted);
  ::close(hidden);
  ::close(listening);
}

using web::Client;
Client user(uid_t uid) { return Client::user(uid); }
Client remote(const std::string& address) { return Client::remote(address); }

TEST(WebConnectionLimit, EachClientHoldsAtMostItsLimitAndReleasingFreesASlot) {
  ConnectionLimit limit({0}, "test");
  for (size_t i = 0; i < web::kPerClient; ++i) EXPECT_TRUE(limit.acquire(user(1000)));
  EXPECT_FALSE(limit.acquire(user(1000)));
  EXPECT_TRUE(limit.acquire(user(1001)));  // another client's slots are its own
  EXPECT_EQ(limit.held("local uid 1000"), web::kPerClient);
  EXPECT_EQ(limit.refused(), 1u);
  limit.release(user(1000));
  EXPECT_TRUE(limit.acquire(user(1000)));
  for (size_t i = 0; i < web::kPerClient + 3; ++i) limit.release(user(1000));  // more releases than acquires change nothing
  EXPECT_EQ(limit.held("local uid 1000"), 0u);
  for (size_t i = 0; i < web::kPerTrustedClient; ++i) EXPECT_TRUE(limit.acquire(user(0)));  // root: every mount
  EXPECT_FALSE(limit.acquire(user(0)));
}

// However many other clients hold their fill, the trusted local users keep threads of their own.
TEST(WebConnectionLimit, OtherClientsTogetherLeaveTheTrustedUsersTheirThreads) {
  ConnectionLimit limit({0}, "test");
  size_t admitted = 0;
  for (int host = 0; host < 20; ++host) {
    for (size_t i = 0; i < web::kPerClient; ++i) admitted += limit.acquire(remote("192.0.2." + std::to_string(host)));
  }
  EXPECT_EQ(admitted, web::kServerThreads - web::kReserved);
  EXPECT_FALSE(limit.acquire(user(1000)));  // a local user who is not trusted shares the rest
  for (size_t i = 0; i < web::kReserved; ++i) EXPECT_TRUE(limit.acquire(user(0)));
  limit.release(remote("192.0.2.0"));
  EXPECT_TRUE(limit.acquire(user(1000)));
}

// Hiding a socket's owner gains one share for all who hide, and none of the trusted users' threads.
TEST(WebConnectionLimit, LocalConnectionsWithoutAKnownOwnerAreOneUntrustedClient) {
  ConnectionLimit limit({0}, "test");
  for (size_t i = 0; i < web::kPerClient; ++i) EXPECT_TRUE(limit.acquire(Client::local_unknown()));
  EXPECT_FALSE(limit.acquire(Client::local_unknown()));
  EXPECT_EQ(limit.refused(), 1u);
}

// The limit on a real server: counted from the handshake's start, before a byte is read, and
// released when the connection ends.
TEST(WebConnectionLimit, AServerShutsTheConnectionPastTheLimitAtOnceAndReleasesEachAtItsEnd) {
  char dir_template[] = "/tmp/cmkfs-web-limit-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::string dir = dir_template;
  auto bound = web::bind_https(dir, "127.0.0.1", 0, "test CA", 1024, "test", {});  // nobody trusted
  ASSERT_TRUE(bound.ok()) << bound.status().message();
  bound->server->Get("/", [](const httplib::Request&, httplib::Response& r) { r.set_content("ok", "text/plain"); });
  std::thread serving([&] { bound->server->listen_after_bind(); });
  struct Stop {
    httplib::Server& server;
    std::thread& serving;
    std::string dir;
    ~Stop() {
      server.stop();
      serving.join();
      std::filesystem::remove_all(dir);
    }
  } stop{*bound->server, serving, dir};
  const std::string me = "local uid " + std::to_string(::geteuid());
  auto wait_for = [](const std::function<bool()>& done) {
    for (int i = 0; i < 1000 && !done(); ++i) ::usleep(10000);
    return done();
  };

  Listener unused;  // for connect(): the same code, another port
  unused.port = bound->port;
  std::vector<int> idle;
  for (size_t i = 0; i <= web::kPerClient; ++i) idle.push_back(unused.connect());
  auto shut = [&] {  // the one refused reads the end of the stream; the others nothing yet
    size_t n = 0;
    for (int fd : idle) {
      char byte;
      n += ::recv(fd, &byte, 1, MSG_DONTWAIT | MSG_PEEK) == 0;
    }
    return n;
  };
  EXPECT_TRUE(wait_for([&] { return shut() == 1; }));
  EXPECT_EQ(bound->limit->refused(), 1u);
  EXPECT_EQ(bound->limit->held(me), web::kPerClient);
  for (int fd : idle) ::close(fd);
  EXPECT_TRUE(wait_for([&] { return bound->limit->held(me) == 0; }));

  httplib::SSLClient client("127.0.0.1", bound->port);
  client.enable_server_certificate_verification(false);
  auto reply = client.Get("/");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "ok");
  client.stop();
  EXPECT_TRUE(wait_for([&] { return bound->limit->held(me) == 0; }));
}

}  // namespace
}  // namespace cmkfs::testing
