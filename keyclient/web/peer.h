// Who is at the other end of a TCP connection to one of our HTTPS servers: its address, and on
// loopback the local user whose socket it is.
#pragma once

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
// The same from printed addresses and ports (what an httplib request carries).
std::optional<Connection> connection_of(const std::string& client_addr, int client_port, const std::string& server_addr,
                                        int server_port);

bool on_loopback(const Connection& c);

// The uid owning the client end of a loopback connection: what SO_PEERCRED gives for a unix
// socket, asked of the kernel's socket table for exactly these two ends (sock_diag). Only an
// established connection counts (one lingering in TIME_WAIT is listed as root's). nullopt
// when the connection is not on loopback or the kernel does not know it.
std::optional<uid_t> loopback_owner(const Connection& c);

// What a connection counts against when one client's connections are limited: on loopback the
// local user ("uid 1000 on loopback"), an IPv4 client by its address, an IPv6 one by its /64
// (one host's usual allocation: it can pick any address inside it).
std::string client_name(const Connection& c);

}  // namespace cmkfs::web
