// The cmkfs command line: a parser that only fills a Command (tested on its own), and the named
// exit codes every command returns.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "crypto/status.h"
#include "fs/store.h"

namespace cmkfs::fs {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,       // anything not listed below
  kExitUsage = 2,       // bad command line
  kExitNotAStore = 10,  // the directory is not a store, or is damaged
  kExitKey = 11,        // the key is missing, wrong, or refused
  kExitMount = 12,      // the mountpoint is missing, busy or the mount failed
  kExitBusy = 13,       // the store is in use by another cmkfs
};

// Maps the Status of a failed command to its exit code.
int exit_code_for(const Status& s);

struct MountOptions {
  std::string store;
  std::string mountpoint;
  bool foreground = false;
  std::vector<std::string> fuse_options;  // each -o value, comma lists kept as given
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  unsigned max_threads = 16;
  std::string log_file;  // default: chosen by store id when daemonized
};

struct Command {
  enum class Kind { kNone, kInit, kMount, kUmount, kEncryptionShow } kind = Kind::kNone;
  std::string log_level = "info";
  InitOptions init;
  MountOptions mount;
  std::string store;       // encryption show
  std::string mountpoint;  // umount
};

// Parses argv. Returns -1 when `cmd` is ready to run, otherwise the exit code to end with
// (0 after --help, kExitUsage after a usage error, with the message already written).
int parse_command_line(int argc, const char* const* argv, Command* cmd, std::ostream& out, std::ostream& err);

}  // namespace cmkfs::fs
