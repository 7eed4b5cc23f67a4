// cmkfs-console: what `cmkfs console ...` runs (with the same arguments), so that the cmkfs
// binary, which serves mounts and holds their keys, links no HTTPS server.
#include <iostream>

#include "fs/cli/cli.h"
#include "fs/console/console.h"

using namespace cmkfs;
using namespace cmkfs::fs;

int main(int argc, char** argv) {
  Command cmd;
  if (int rc = start_command(argc, argv, &cmd); rc >= 0) return rc;
  if (cmd.kind != Command::Kind::kConsole) {
    std::cerr << "cmkfs-console: run it as 'cmkfs console [OPTIONS]'\n";
    return kExitUsage;
  }
  if (cmd.set_password) {
    Status s = set_console_password(cmd.password_file);
    std::cerr << "cmkfs: " << (s.ok() ? "the console's admin password is set" : s.message()) << "\n";
    return s.ok() ? kExitOk : exit_code_for(s);
  }
  return run_console(cmd.console, std::cout, std::cerr);
}
