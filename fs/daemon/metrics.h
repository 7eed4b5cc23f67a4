// The daemon's metrics in Prometheus' text format at http://ADDR/metrics (--metrics-listen ADDR):
// FUSE requests, errors and latency by operation, bytes moved, EIO answers, and the key: its
// state, the checks against the vault (count, result, last round trip), the last good check, the
// offline grace left, the data-key generation and the key version.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "crypto/base/status.h"
#include "fs/daemon/key_monitor.h"
#include "fs/fuse/fuse.h"

namespace httplib {
class Server;
}

namespace cmkfs::fs {

struct MetricsSnapshot {
  const OpStats* ops = nullptr;
  uint64_t io_errors = 0;
  KeyState key_state = KeyState::kAvailable;
  KeyMonitor::CheckCounts checks;
  std::string mountpoint;
};
std::string render_metrics(const MetricsSnapshot& m);

class MetricsServer {
 public:
  // Serves render() at /metrics on `listen` (HOST:PORT) from its own thread.
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& listen, std::function<std::string()> render);
  ~MetricsServer();

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace cmkfs::fs
