// The cmkfs command line: a parser that only fills a Command (tested on its own), and the named
// exit codes every command returns.
#pragma once

#include <algorithm>
#include <iosfwd>
#include <string>
#include <thread>
#include <vector>

#include <chrono>
#include <optional>

#include "crypto/status.h"
#include "fs/key_monitor.h"
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
  // FUSE worker threads. Each request wakes the idle worker that has waited longest, so idle
  // workers beyond what the cores can run only add cold wake-ups: on 2 cores, 16 against 4 made
  // creating small files 30% slower and random 4 KiB reads 15% slower, large I/O no faster.
  unsigned max_threads = std::max(4u, 2 * std::thread::hardware_concurrency());
  bool writeback_cache = true;
  bool io_uring = true;  // FUSE over io_uring (fs/fuse_uring.h), where the kernel has it
  // Metadata changes reach the disk in batches at most this old (meta/batcher.h); 0: each alone.
  double commit_interval_ms = 10;
  uint64_t read_ahead = 4 << 20;  // the kernel's readahead window; 0 leaves its default (128 KiB)
  std::string log_file;  // default: chosen by store id when daemonized
  std::string audit_log;  // default: default_audit_path(store id)
  MonitorOptions monitor;
};

// The vault key options shared by init, encryption enable and encryption rotate-key.
struct VaultKeyOptions {
  std::string key_encryption_key;  // https://VAULT/keys/NAME[/VERSION]
  std::string identity;            // client id, or [system]
  std::string identity_endpoint;   // default: the Azure IMDS address
  std::string vault_ca;            // CA file for the vault's and identity endpoint's TLS
};

inline constexpr const char* kAzureImdsEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token";

struct Command {
  enum class Kind { kNone, kInit, kMount, kUmount, kEncryptionShow, kEncryptionEnable, kRotateKey, kFsck, kInspect } kind = Kind::kNone;
  std::string log_level = "info";
  InitOptions init;
  MountOptions mount;
  std::string store;       // encryption show, fsck, inspect
  std::string registry_root = "/";  // inspect
  std::string mountpoint;  // umount
  VaultKeyOptions vault;   // init, encryption enable, encryption rotate-key
};

// Parses durations such as "500ms", "30s", "15m", "1h" (a bare number is seconds).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// Parses argv. Returns -1 when `cmd` is ready to run, otherwise the exit code to end with
// (0 after --help, kExitUsage after a usage error, with the message already written).
int parse_command_line(int argc, const char* const* argv, Command* cmd, std::ostream& out, std::ostream& err);

}  // namespace cmkfs::fs
