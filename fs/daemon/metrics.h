// The daemon's metrics in Prometheus' text format at http://ADDR/metrics (--metrics-listen ADDR):
// FUSE requests, errors and latency by operation, bytes moved, EIO answers, inodes held, group-commit batches
// (size, latency, failures), and the key: its state, the checks against the vault (count by
// result, latency), the last good check, the offline grace left, the data-key generation and the
// key version.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "crypto/base/status.h"
#include "fs/daemon/accept_loop.h"
#include "fs/daemon/key_monitor.h"
#include "fs/fuse/fuse.h"
#include "meta/meta.h"

namespace cmkfs::fs {

struct MetricsSnapshot {
  const OpStats* ops = nullptr;
  uint64_t io_errors = 0;
  uint64_t inodes = 0, inodes_demoted = 0;  // that the kernel holds: whole in memory, as a count only
  KeyState key_state = KeyState::kAvailable;
  KeyMonitor::CheckCounts checks;
  const Histogram<KeyMonitor::kCheckBounds>* check_seconds = nullptr;
  const meta::MetaStore::BatchStats* batches = nullptr;  // null: no group commit
  std::string mountpoint;
};
std::string render_metrics(const MetricsSnapshot& m);

// Answers `GET /metrics` with render() on `listen` (IPv4 HOST:PORT), one connection at a time,
// from its own thread; anything else gets 404. Not a general HTTP server on purpose: the daemon
// holds keys, and this endpoint needs one fixed GET (cpp-httplib, linked in, set up OpenSSL in
// every cmkfs command for a plaintext endpoint).
class MetricsServer {
 public:
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& listen, std::function<std::string()> render);
  ~MetricsServer();

 private:
  MetricsServer() = default;
  void answer(int fd);
  std::function<std::string()> render_;
  std::unique_ptr<AcceptLoop> loop_;
};

}  // namespace cmkfs::fs
