// A command's key provider, watched: see store.h.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

double& provider_timeout() {
  static double seconds = 10;
  return seconds;
}

}  // namespace

double default_provider_timeout() { return provider_timeout(); }
void override_default_provider_timeout(double seconds) { provider_timeout() = seconds; }

std::shared_ptr<keyclient::CallWatchdog> command_watchdog(double timeout_seconds,
                                                          std::function<void(const std::string& why)> report) {
  double limit = std::min(kProviderHungAfter * timeout_seconds, 86400.0);  // no overflow in the clock
  char shown[32];
  std::snprintf(shown, sizeof shown, "%g", std::round(limit * 10) / 10);
  std::string why = std::string("the key provider has not answered in ") + shown +
                    " s (a PKCS#11 module or token that hangs, or a vault that does not answer); giving up";
  return std::make_shared<keyclient::CallWatchdog>(
      std::chrono::milliseconds(static_cast<int64_t>(limit * 1000)), [why, report = std::move(report)] {
        report(why);
        std::_Exit(kExitKey);  // not exit(): the call still runs in the module, which a destructor could reach
      });
}

Result<std::unique_ptr<keyclient::KeyProvider>> command_provider(const keyclient::KekConfig& config,
                                                                 const Id128& store_id, double timeout_seconds,
                                                                 std::shared_ptr<keyclient::CallWatchdog> watchdog) {
  // A vault client and a KMS plugin's gRPC bound their own requests (their retries and a vault's
  // Retry-After can take longer than four timeouts, and still answer); a key command has its own
  // deadline. Only a module's call runs in this process without one.
  if (config.provider != keyclient::ProviderKind::kPkcs11) return keyclient::make_provider(config, store_id, timeout_seconds);
  if (!watchdog) {
    watchdog = command_watchdog(timeout_seconds, [](const std::string& why) {
      std::string line = "cmkfs: " + why + "\n";
      (void)!::write(STDERR_FILENO, line.data(), line.size());
    });
  }
  Result<std::unique_ptr<keyclient::KeyProvider>> provider = Status::Unavailable("not made");
  {
    keyclient::CallObserver::Inside in(*watchdog);  // loading a module (C_Initialize) may hang
    provider = keyclient::make_provider(config, store_id, timeout_seconds);
  }
  if (!provider.ok()) return provider.status();
  return keyclient::observed(std::move(*provider), std::move(watchdog));
}

}  // namespace cmkfs::fs
