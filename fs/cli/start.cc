#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "crypto/crypto.h"
#include "fs/cli/cli.h"

namespace cmkfs::fs {

int start_command(int argc, const char* const* argv, Command* cmd) {
  int rc = parse_command_line(argc, argv, cmd, std::cout, std::cerr);
  if (rc >= 0) return rc;
  use_stderr_log(cmd->log_level, cmd->log_format);
  if (!cmd->audit_log.empty()) override_default_audit_path(std::filesystem::absolute(cmd->audit_log).string());
  if (cmd->provider_timeout.count() > 0) {
    override_default_provider_timeout(std::chrono::duration<double>(cmd->provider_timeout).count());
  }
  cmd->mount.log_format = cmd->log_format;
  // Every command may hold a key: none may leave it in a core file or in swap.
  if (Status h = crypto::harden_process(/*lock_memory=*/::geteuid() == 0); !h.ok()) {
    std::cerr << "cmkfs: cannot protect key material: " << h.message() << "\n";
    return kExitError;
  }
  return -1;
}

}  // namespace cmkfs::fs
