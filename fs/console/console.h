// fs/console: `cmkfs console`, a web console for the stores on this host, on HTTPS at
// /console (loopback only unless told otherwise): every cmkfs mount and known store with what
// `encryption show` says, the live key state with a timeline of checks, revocations and restores,
// and the article's "Encryption > Change key" (rotate-key with or without a version, to a
// user-assigned or the system identity), `encryption enable` and data-key rotation with its
// progress. The sign-in, sessions and CSRF rules are the vault console's (keyclient/web).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "crypto/base/status.h"

namespace cmkfs::fs {

struct ConsoleOptions {
  std::string listen = "127.0.0.1:9443";
  std::vector<std::string> stores;  // known stores besides the mounted ones and /etc/cmkfs/mounts/*.conf
  std::string audit_log;            // the console's own audit log (default /var/log/cmkfs/console.audit.jsonl)
  int64_t idle_seconds = 15 * 60;   // a session unused this long ends
};

// Serves until SIGTERM or SIGINT. Returns the exit code.
int run_console(const ConsoleOptions& o, std::ostream& out, std::ostream& err);
// Sets the console's admin password (console.password in the host's config directory).
Status set_console_password(const std::string& from_file);

}  // namespace cmkfs::fs
