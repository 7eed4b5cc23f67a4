// How many connections one client may hold at once on one of our HTTPS servers.
//
// httplib (0.11) serves each connection on one thread of a fixed pool and gives the client 5 s
// (its read timeout) for each step of the TLS handshake and of every request. A client that
// opens connections and sends nothing holds a thread with each, and a few hundred of them queued
// ahead of everyone else kept every thread of the vault busy for minutes: the mounts' key checks
// timed out, and after the offline grace the mounts failed closed. The firewall could not help,
// since it looks at a request, which these never send. So each connection is counted against its
// client (peer.h: an address, or on loopback a local user) from the start of its TLS handshake,
// before a byte is read, and one over the client's limit is shut down right there, freeing its
// thread at once; the pool is large enough that many clients at their limit still leave threads
// for the rest.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace cmkfs::web {

class ConnectionLimit {
 public:
  // `name` starts the line a refusal logs ("cmkfs-vault"); at most one such line each 10 s.
  ConnectionLimit(size_t per_client, std::string name) : per_client_(per_client), name_(std::move(name)) {}

  // Counts one more connection of `client`; false (and it is not counted) when the client holds
  // per_client already.
  bool acquire(const std::string& client);
  void release(const std::string& client);

  size_t held(const std::string& client) const;
  size_t refused() const;

 private:
  void report_refusal(const std::string& client);  // REQUIRES: mu_

  const size_t per_client_;
  const std::string name_;
  mutable std::mutex mu_;
  std::map<std::string, size_t> held_;  // only clients holding at least one
  size_t refused_ = 0;
  size_t unreported_ = 0;
  std::chrono::steady_clock::time_point last_report_{};
};

// The pool of threads that serve connections, and how many connections a client may hold.
inline constexpr size_t kServerThreads = 64;
inline constexpr size_t kConnectionsPerClient = 8;

// Serves `server` on kServerThreads threads and counts each of its connections against `limit`
// from the start of its TLS handshake to its end (the server's SSL_CTX holds `limit`).
void limit_connections(httplib::SSLServer& server, std::shared_ptr<ConnectionLimit> limit);

}  // namespace cmkfs::web
