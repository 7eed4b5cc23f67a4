// Reading a daemon's /metrics in tests: a free loopback port to serve it on, and one series'
// value out of the page.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace cmkfs::testing {

// "127.0.0.1:PORT" with a port nobody listens on now.
inline std::string free_loopback_address() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

// The value of the series `series` (its name and labels, as printed) in a /metrics page; -1 if
// the page has no such series.
inline double metric(const std::string& page, const std::string& series) {
  size_t at = page.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(page.substr(at + series.size() + 2));
}

}  // namespace cmkfs::testing
