// How many connections one client may hold at once on one of our HTTPS servers.
//
// httplib (0.11) serves each connection on one thread of a fixed pool and gives the client 5 s
// (its read timeout) for each step of the TLS handshake and of every request. A client that
// opens connections and sends nothing holds a thread with each, and a few hundred of them queued
// ahead of everyone else kept every thread of the vault busy for minutes: the mounts' key checks
// timed out, and after the offline grace the mounts failed closed. The firewall could not help,
// since it looks at a request, which these never send. So each connection is counted against its
// client (peer.h: an address, or a local user) from the start of its TLS handshake, before a byte
// is read, and one over a limit is shut down right there, freeing its thread at once:
// - each client holds at most kPerClient;
// - all clients but the trusted local users (root, the server's own user: the mounts and the
//   commands of this host) hold kServerThreads - kReserved together, so no number of other
//   clients, however slowly each sends, can take the threads the trusted ones need;
// - local connections whose owner the kernel does not list are one client, not trusted: hiding
//   a socket's owner gains one share of kPerClient for all who hide, not one per address.
// A client that sends its request slowly still holds its thread (httplib's timeout is per read,
// not per request), within these limits.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "keyclient/web/peer.h"

namespace cmkfs::web {

inline constexpr size_t kServerThreads = 64;  // the pool that serves connections
inline constexpr size_t kReserved = 16;       // of them, for trusted local users only
inline constexpr size_t kPerClient = 8;
inline constexpr size_t kPerTrustedClient = 32;  // root: every mount of the host, and the commands

class ConnectionLimit {
 public:
  // `trusted`: the local users of kReserved. `name` starts the line a refusal logs
  // ("cmkfs-vault"); at most one such line each 10 s.
  ConnectionLimit(std::set<uid_t> trusted, std::string name) : trusted_(std::move(trusted)), name_(std::move(name)) {}

  // Counts one more connection of `client`; false (and it is not counted) when a limit refuses it.
  bool acquire(const Client& client);
  void release(const Client& client);

  size_t held(const std::string& client) const;
  size_t refused() const;

 private:
  bool trusted(const Client& c) const { return c.uid && trusted_.contains(*c.uid); }
  std::string refusal_line(const Client& client, const char* why);  // REQUIRES: mu_; "" between reports

  const std::set<uid_t> trusted_;
  const std::string name_;
  mutable std::mutex mu_;
  std::map<std::string, size_t> held_;  // only clients holding at least one
  size_t untrusted_ = 0;                // held by clients not trusted
  size_t refused_ = 0;
  size_t unreported_ = 0;
  std::chrono::steady_clock::time_point last_report_{};
};

// Serves `server` on kServerThreads threads and counts each of its connections against `limit`
// from the start of its TLS handshake to its end (the server's SSL_CTX holds `limit`). Once.
void limit_connections(httplib::SSLServer& server, std::shared_ptr<ConnectionLimit> limit);

}  // namespace cmkfs::web
