#include "fs/cli.h"

#include <CLI/CLI.hpp>
#include <ostream>

namespace cmkfs::fs {

int exit_code_for(const Status& s) {
  switch (s.code()) {
    case 0: return kExitOk;
    case EBUSY: return kExitBusy;
    case ENOKEY: case EKEYREJECTED: case EKEYREVOKED: case EACCES: return kExitKey;
    case ENOTSUP: return kExitNotAStore;
    default: return kExitError;
  }
}

int parse_command_line(int argc, const char* const* argv, Command* cmd, std::ostream& out, std::ostream& err) {
  CLI::App app{"cmkfs: an encrypted FUSE filesystem for container registry storage, with keys you own"};
  app.set_version_flag("--version", "cmkfs 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();  // global options also after the subcommand
  app.add_option("--log-level", cmd->log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  std::string chunk_size = "64KiB";
  auto* init = app.add_subcommand("init", "Turn an empty directory into an encrypted store");
  init->add_option("STORE", cmd->init.store, "The directory to hold the store (created if missing)")->required();
  init->add_option("--chunk-size", chunk_size, "Encryption chunk size, a power of two from 4KiB to 1MiB")
      ->capture_default_str();
  init->add_option("--local-key-file", cmd->init.kek.key_file,
                   "Where to keep the built-in key (default /etc/cmkfs/keys/<store id>.key for root)");

  auto* mount = app.add_subcommand("mount", "Mount a store; returns once the mount is ready");
  mount->add_option("STORE", cmd->mount.store, "The store directory")->required();
  mount->add_option("MOUNTPOINT", cmd->mount.mountpoint, "An existing directory")->required();
  mount->add_flag("-f,--foreground", cmd->mount.foreground, "Stay in the foreground and log to stderr");
  mount->add_option("-o", cmd->mount.fuse_options,
                    "Mount options, comma separated: ro, allow_other (enforces permissions), ...")
      ->allow_extra_args(false);
  mount->add_option("--attr-timeout", cmd->mount.attr_timeout, "Seconds the kernel caches attributes")
      ->capture_default_str();
  mount->add_option("--entry-timeout", cmd->mount.entry_timeout, "Seconds the kernel caches names")
      ->capture_default_str();
  mount->add_option("--threads", cmd->mount.max_threads, "Most FUSE worker threads")->capture_default_str();
  mount->add_option("--log-file", cmd->mount.log_file,
                    "Log file when daemonized (default /var/log/cmkfs/<store id>.log for root)");

  auto* umount = app.add_subcommand("umount", "Unmount, waiting until everything is flushed");
  umount->add_option("MOUNTPOINT", cmd->mountpoint, "The mountpoint")->required();

  auto* encryption = app.add_subcommand("encryption", "Show or change how the store's data key is protected");
  encryption->require_subcommand(1);
  auto* show = encryption->add_subcommand("show", "Print the encryption settings as JSON");
  show->add_option("STORE", cmd->store, "The store directory")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e, out, err);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (init->parsed()) {
    cmd->kind = Command::Kind::kInit;
    auto size = parse_size(chunk_size);
    if (!size || !crypto::ChunkLayout::valid_chunk_size(*size)) {
      err << "cmkfs: --chunk-size " << chunk_size << " is not a power of two from 4KiB to 1MiB\n";
      return kExitUsage;
    }
    cmd->init.chunk_size = static_cast<uint32_t>(*size);
  } else if (mount->parsed()) {
    cmd->kind = Command::Kind::kMount;
  } else if (umount->parsed()) {
    cmd->kind = Command::Kind::kUmount;
  } else if (show->parsed()) {
    cmd->kind = Command::Kind::kEncryptionShow;
  }
  return -1;
}

}  // namespace cmkfs::fs
