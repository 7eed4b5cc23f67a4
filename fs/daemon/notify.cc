#include "fs/daemon/notify.h"

#include <systemd/sd-daemon.h>

#include <cstdlib>

namespace cmkfs::fs {

ServiceNotifier::ServiceNotifier() {
  enabled_ = std::getenv("NOTIFY_SOCKET") != nullptr;
  uint64_t usec = 0;
  if (enabled_ && sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = usec;
}

void ServiceNotifier::send(const std::string& message) {
  if (enabled_) (void)sd_notify(0, message.c_str());
}

void ServiceNotifier::ready(const std::string& status) {
  std::lock_guard<std::mutex> g(mu_);
  last_status_ = status;
  send("READY=1\nSTATUS=" + status);
}

void ServiceNotifier::status(const std::string& status) {
  std::lock_guard<std::mutex> g(mu_);
  if (status == last_status_) return;
  last_status_ = status;
  send("STATUS=" + status);
}

void ServiceNotifier::stopping() { send("STOPPING=1\nSTATUS=stopping: writing everything back"); }

void ServiceNotifier::watchdog() {
  if (watchdog_usec_ > 0) send("WATCHDOG=1");
}

}  // namespace cmkfs::fs
