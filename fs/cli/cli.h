// fs/cli: the cmkfs command line. A parser that only fills a Command (tested on its own) from the
// option structs of the libraries below, whose defaults it shows; main.cc runs the command. Nothing
// includes this library.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include "fs/admin/admin.h"
#include "fs/console/console.h"
#include "fs/daemon/daemon.h"
#include "fs/store/store.h"

namespace cmkfs::fs {

struct Command {
  enum class Kind {
    kNone, kInit, kMount, kUmount, kEncryptionShow, kEncryptionEnable, kRotateKey, kRotateDataKey, kFsck, kInspect,
    kTrust, kView, kCat, kExport, kStatus, kConsole
  } kind = Kind::kNone;
  std::string log_level = "info";
  std::string log_format = "text";  // or json
  InitOptions init;
  MountOptions mount;      // mount; view (the view directory in `mountpoint`)
  std::string store;       // encryption show, fsck, inspect
  std::string registry_root = "/";  // inspect
  std::string image;       // inspect --image
  bool json = false;       // inspect --image --json
  std::string path, dest;  // cat, export
  FsckOptions fsck;
  std::string mountpoint;  // umount; view of a mounted store
  VaultKeyOptions vault;   // init, encryption enable, encryption rotate-key, trust
  TrustOptions trust;      // trust (its vault options are in `vault`)
  LocalKeyOptions local;   // encryption rotate-key to another local key
  std::string audit_log;   // the offline commands' key audit log (init and mount have their own)
  std::chrono::milliseconds provider_timeout{0};  // their key provider's request timeout; 0: the default
  ConsoleOptions console;  // console
  bool set_password = false;  // console --set-password
  std::string password_file;
};

// Parses sizes such as "65536", "64K", "64KiB", "1MiB". nullopt when malformed.
std::optional<uint64_t> parse_size(std::string_view text);
// The shortest exact form of a size: 4096 -> "4KiB", 4194304 -> "4MiB", 1000 -> "1000".
std::string format_size(uint64_t bytes);

// Parses durations such as "500ms", "30s", "15m", "1h" (a bare number is seconds).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// Parses argv. Returns -1 when `cmd` is ready to run, otherwise the exit code to end with
// (0 after --help, kExitUsage after a usage error, with the message already written).
int parse_command_line(int argc, const char* const* argv, Command* cmd, std::ostream& out, std::ostream& err);

// What cmkfs and cmkfs-console do first: parse argv, then ready the process for the command
// (logging, the offline commands' audit log, no core file and no swap for key material). -1
// when `cmd` is ready to run; otherwise the exit code to end with (start.cc).
int start_command(int argc, const char* const* argv, Command* cmd);

}  // namespace cmkfs::fs
