// Who is at the other end of a TCP connection to one of our HTTPS servers: its address, and on
// loopback the local user whose socket it is.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <optional>
#include <string>

namespace cmkfs::web {

// The two ends of an accepted TCP connection. An IPv4 client of a dual-stack socket is held as
// IPv4, not as its mapped IPv6 form.
struct Connection {
  sockaddr_storage client{};
  sockaddr_storage server{};
};

// The ends of the connected socket `fd`; nullopt when it is not a TCP/IP connection.
std::optional<Connection> connection_of(int fd);
// The same from printed addresses and ports (what an httplib request carries: "fe80::1%eth0"
// names the link).
std::optional<Connection> connection_of(const std::string& client_addr, int client_port, const std::string& server_addr,
                                        int server_port);

bool on_loopback(const Connection& c);

// The uid owning the client end of a connection made on this host: what SO_PEERCRED gives for a
// unix socket, asked of the kernel's socket table for exactly these two ends (sock_diag). Only
// an established connection counts (one lingering in TIME_WAIT is listed as root's). nullopt
// when no socket of this host has those ends (a remote client) or the kernel cannot say.
std::optional<uid_t> socket_owner(const Connection& c);
// socket_owner() for a connection on loopback only (the token endpoints' callers).
std::optional<uid_t> loopback_owner(const Connection& c);

// Who a connection counts as when one client's connections or failed sign-ins are limited: a
// process of this host by its user ("local uid 1000", whichever address it came from), an IPv4
// client by its address, an IPv6 one by its /64 (one host's usual allocation: it can pick any
// address inside it), a link-local one by its /64 on its link ("fe80::/64%eth0": each link's
// neighbours are others). A connection from one of this host's addresses whose socket the kernel
// does not list (its process closed it, bound it to another device to hide, reached us through
// a port redirection; or this host cannot be asked) is "local, owner unknown": one client, however
// many addresses the host has, and trusted by nobody.
struct Client {
  std::string name;
  bool local = false;        // a process of this host
  std::optional<uid_t> uid;  // a local client's user, when the kernel said

  static Client remote(std::string name) { return {std::move(name), false, std::nullopt}; }
  static Client user(uid_t uid) { return {"local uid " + std::to_string(uid), true, uid}; }
  static Client local_unknown() { return {"local, owner unknown", true, std::nullopt}; }
};
Client client_of(const Connection& c);
// The client of a request, from the addresses httplib read off its connection; one whose
// addresses do not parse is a client of its own, named by its printed address.
Client client_of(const std::string& client_addr, int client_port, const std::string& server_addr, int server_port);

}  // namespace cmkfs::web
