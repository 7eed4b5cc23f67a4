// systemd's service notifications, when NOTIFY_SOCKET is set (a unit of Type=notify running
// `cmkfs mount --foreground`): READY=1 once the mount serves, STATUS= with the key state when it
// changes, STOPPING=1 at the end, and WATCHDOG=1 every tick while the daemon is healthy, when
// WATCHDOG_USEC is set. Without NOTIFY_SOCKET every call does nothing.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

namespace cmkfs::fs {

class ServiceNotifier {
 public:
  ServiceNotifier();
  void ready(const std::string& status);
  void status(const std::string& status);  // sent when it differs from the last one
  void stopping();
  void watchdog();  // a keep-alive, if systemd asked for them
  bool watchdog_enabled() const { return watchdog_usec_ > 0; }

 private:
  void send(const std::string& message);
  bool enabled_ = false;
  uint64_t watchdog_usec_ = 0;
  std::mutex mu_;
  std::string last_status_;
};

}  // namespace cmkfs::fs
