// The control socket of a mount's daemon: one JSON request per connection, one JSON reply, from
// the daemon's own user or root only (SO_PEERCRED). It lives in a directory only that user can
// enter (/run/cmkfs/control as root, else $XDG_RUNTIME_DIR/cmkfs/control), named by the mountpoint, so commands
// that are given a mountpoint find it without trusting anything in the store.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <memory>

#include "crypto/base/status.h"
#include "fs/daemon/accept_loop.h"

namespace cmkfs::fs {

// Where the daemon serving `mountpoint` (absolute, normalised) listens; creates the directory.
Result<std::string> control_socket_path(const std::string& mountpoint);

class ControlServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;
  // Listens on `path` (replacing a stale socket) and serves requests on a thread.
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path, Handler handler);
  ~ControlServer();  // stops listening and removes the socket
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

 private:
  ControlServer() = default;
  void answer(int fd);
  std::string path_;
  Handler handler_;
  std::unique_ptr<AcceptLoop> loop_;
};

// Sends `request` to the daemon serving `mountpoint` and returns its reply.
Result<nlohmann::json> control_request(const std::string& mountpoint, const nlohmann::json& request);

}  // namespace cmkfs::fs
