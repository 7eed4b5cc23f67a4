#include "keyclient/web/peer.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <ifaddrs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <mutex>

namespace cmkfs::web {
namespace {

// An IPv4 address seen through a dual-stack socket (::ffff:a.b.c.d) as the IPv4 one.
void unmap(sockaddr_storage& ss) {
  if (ss.ss_family != AF_INET6) return;
  const auto& six = reinterpret_cast<const sockaddr_in6&>(ss);
  if (!IN6_IS_ADDR_V4MAPPED(&six.sin6_addr)) return;
  sockaddr_in four{};
  four.sin_family = AF_INET;
  four.sin_port = six.sin6_port;
  std::memcpy(&four.sin_addr, six.sin6_addr.s6_addr + 12, 4);
  ss = {};
  std::memcpy(&ss, &four, sizeof four);
}

bool is_ip(const sockaddr_storage& ss) { return ss.ss_family == AF_INET || ss.ss_family == AF_INET6; }

std::optional<sockaddr_storage> parse(const std::string& printed, int port) {
  if (port <= 0 || port > 65535) return std::nullopt;
  size_t percent = printed.find('%');
  std::string addr = printed.substr(0, percent);
  sockaddr_storage ss{};
  auto& four = reinterpret_cast<sockaddr_in&>(ss);
  auto& six = reinterpret_cast<sockaddr_in6&>(ss);
  if (percent == std::string::npos && inet_pton(AF_INET, addr.c_str(), &four.sin_addr) == 1) {
    four.sin_family = AF_INET;
    four.sin_port = htons(static_cast<uint16_t>(port));
  } else if (inet_pton(AF_INET6, addr.c_str(), &six.sin6_addr) == 1) {
    six.sin6_family = AF_INET6;
    six.sin6_port = htons(static_cast<uint16_t>(port));
    if (percent != std::string::npos) {
      std::string scope = printed.substr(percent + 1);
      six.sin6_scope_id = if_nametoindex(scope.c_str());
      if (six.sin6_scope_id == 0) return std::nullopt;  // a link this host does not have
    }
  } else {
    return std::nullopt;
  }
  unmap(ss);
  return ss;
}

bool loopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) return (ntohl(reinterpret_cast<const sockaddr_in&>(ss).sin_addr.s_addr) >> 24) == 127;
  return ss.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr);
}

// The address bytes and port of an IP end, in the form inet_diag's socket id holds them.
void put_end(const sockaddr_storage& ss, __be16* port, __be32* addr) {
  if (ss.ss_family == AF_INET) {
    const auto& four = reinterpret_cast<const sockaddr_in&>(ss);
    *port = four.sin_port;
    std::memcpy(addr, &four.sin_addr, 4);
  } else {
    const auto& six = reinterpret_cast<const sockaddr_in6&>(ss);
    *port = six.sin6_port;
    std::memcpy(addr, &six.sin6_addr, 16);
  }
}

bool same_address(const sockaddr* a, const sockaddr_storage& b) {
  if (a == nullptr || a->sa_family != b.ss_family) return false;
  if (a->sa_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr == reinterpret_cast<const sockaddr_in&>(b).sin_addr.s_addr;
  }
  return IN6_ARE_ADDR_EQUAL(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr, &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr);
}

// Whether `ss` is an address of this host's interfaces (asked each time: addresses come and go).
bool this_hosts(const sockaddr_storage& ss) {
  if (loopback(ss)) return true;
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0) return false;
  bool found = false;
  for (ifaddrs* i = all; i != nullptr && !found; i = i->ifa_next) found = same_address(i->ifa_addr, ss);
  ::freeifaddrs(all);
  return found;
}

// Said once: without sock_diag every local client is "local, owner unknown", trusted by nobody.
void report_unavailable(int error) {
  static std::once_flag once;
  std::call_once(once, [error] {
    std::cerr << "cannot ask the kernel who owns a connection (sock_diag: " << std::strerror(error)
              << "): every local client is one, \"local, owner unknown\", and none is trusted\n";
  });
}

}  // namespace

std::optional<Connection> connection_of(int fd) {
  Connection c;
  socklen_t n = sizeof c.client;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&c.client), &n) != 0) return std::nullopt;
  n = sizeof c.server;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&c.server), &n) != 0) return std::nullopt;
  unmap(c.client);
  unmap(c.server);
  if (!is_ip(c.client) || !is_ip(c.server)) return std::nullopt;
  return c;
}

std::optional<Connection> connection_of(const std::string& client_addr, int client_port, const std::string& server_addr,
                                        int server_port) {
  auto client = parse(client_addr, client_port);
  auto server = parse(server_addr, server_port);
  if (!client || !server) return std::nullopt;
  return Connection{*client, *server};
}

bool on_loopback(const Connection& c) { return loopback(c.client) && c.client.ss_family == c.server.ss_family; }

std::optional<uid_t> socket_owner(const Connection& c) {
  if (c.client.ss_family != c.server.ss_family) return std::nullopt;
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } ask{};
  ask.header.nlmsg_len = sizeof ask;
  ask.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  ask.header.nlmsg_flags = NLM_F_REQUEST;  // one socket by its two ends, not a dump of them all
  ask.request.sdiag_family = static_cast<uint8_t>(c.client.ss_family);
  ask.request.sdiag_protocol = IPPROTO_TCP;
  // The client's own socket: its source is the client's end, its destination ours.
  put_end(c.client, &ask.request.id.idiag_sport, ask.request.id.idiag_src);
  put_end(c.server, &ask.request.id.idiag_dport, ask.request.id.idiag_dst);
  // A connection within this host arrives on loopback: a socket bound to no device, or to lo,
  // matches; with 0 here, one bound to lo would not.
  static const unsigned lo = if_nametoindex("lo");
  ask.request.id.idiag_if = lo;
  ask.request.id.idiag_cookie[0] = ask.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

  int nl = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) {
    report_unavailable(errno);
    return std::nullopt;
  }
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  alignas(nlmsghdr) char reply[1024];
  ssize_t got = -1;
  if (::sendto(nl, &ask, sizeof ask, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) == sizeof ask) {
    got = ::recv(nl, reply, sizeof reply, MSG_DONTWAIT);  // the kernel answered within sendto
  }
  ::close(nl);
  const auto* h = reinterpret_cast<const nlmsghdr*>(reply);
  if (got < 0 || !NLMSG_OK(h, static_cast<size_t>(got))) {
    report_unavailable(got < 0 ? errno : EPROTO);
    return std::nullopt;
  }
  if (h->nlmsg_type == NLMSG_ERROR && h->nlmsg_len >= NLMSG_LENGTH(sizeof(nlmsgerr))) {
    int error = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
    if (error != ENOENT) report_unavailable(error);  // ENOENT: no such connection
    return std::nullopt;
  }
  if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) return std::nullopt;
  const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
  if (m->idiag_state != TCP_ESTABLISHED || m->idiag_inode == 0) return std::nullopt;
  return m->idiag_uid;
}

std::optional<uid_t> loopback_owner(const Connection& c) { return on_loopback(c) ? socket_owner(c) : std::nullopt; }

Client client_of(const Connection& c) {
  if (auto uid = socket_owner(c)) return Client::user(*uid);
  if (this_hosts(c.client)) return Client::local_unknown();
  char text[INET6_ADDRSTRLEN] = "";
  if (c.client.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(c.client).sin_addr, text, sizeof text);
    return Client::remote(text);
  }
  const auto& six = reinterpret_cast<const sockaddr_in6&>(c.client);
  in6_addr prefix = six.sin6_addr;
  std::memset(prefix.s6_addr + 8, 0, 8);
  inet_ntop(AF_INET6, &prefix, text, sizeof text);
  std::string name = std::string(text) + "/64";
  if (six.sin6_scope_id != 0) {
    char link[IF_NAMESIZE] = "";
    name += "%" + std::string(if_indextoname(six.sin6_scope_id, link) ? link : std::to_string(six.sin6_scope_id));
  }
  return Client::remote(name);
}

Client client_of(const std::string& client_addr, int client_port, const std::string& server_addr, int server_port) {
  auto c = connection_of(client_addr, client_port, server_addr, server_port);
  return c ? client_of(*c) : Client::remote(client_addr);
}

}  // namespace cmkfs::web
