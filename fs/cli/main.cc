// cmkfs: the command-line entry point. Parses, then hands over to one command.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <iostream>

#include "crypto/base/printable.h"
#include "fs/cli/cli.h"

using namespace cmkfs;
using namespace cmkfs::fs;

int main(int argc, char** argv) {
  Command cmd;
  if (int rc = start_command(argc, argv, &cmd); rc >= 0) return rc;

  // A key identifier that cannot be one is a usage error, whichever command it came with.
  if (!cmd.vault.key_encryption_key.empty()) {
    if (Status k = check_key_identifier(cmd.vault.key_encryption_key); !k.ok()) {
      std::cerr << "cmkfs: " << printable(k.message()) << "\n";
      return kExitUsage;
    }
  }
  Status s;
  switch (cmd.kind) {
    case Command::Kind::kInit:
      if (cmd.init.kek.customer_managed()) {
        auto kek = customer_kek(cmd.vault);
        if (!kek.ok()) {
          std::cerr << "cmkfs: " << printable(kek.status().message()) << "\n";
          return kExitUsage;
        }
        cmd.init.kek = std::move(*kek);
      }
      s = init_store(cmd.init, std::cout);
      break;
    case Command::Kind::kEncryptionEnable:
      s = enable_vault_key(cmd.store, cmd.vault, std::cout);
      break;
    case Command::Kind::kRotateDataKey: {
      std::string store = mounted_store(cmd.store);
      s = rotate_data_key(store.empty() ? cmd.store : store, std::cout);
      break;
    }
    case Command::Kind::kTrust:
      s = trust_store(cmd.trust, std::cout);
      break;
    case Command::Kind::kRotateKey:
      s = rotate_key(cmd.store, cmd.vault, cmd.local, std::cout);
      break;
    case Command::Kind::kMount:
      return run_mount(cmd.mount, cmd.log_level);
    case Command::Kind::kView:
      if (cmd.mount.view_only) return run_mount(cmd.mount, cmd.log_level);
      s = attach_view(cmd.mountpoint, cmd.mount.mountpoint, cmd.mount.registry_root, std::cout);
      break;
    case Command::Kind::kUmount:
      s = run_umount(cmd.mountpoint, std::cout);
      if (!s.ok()) {  // not mounted, not cmkfs's, or busy: the mountpoint's trouble (README: 12)
        std::cerr << "cmkfs: " << printable(s.message()) << "\n";
        return s.code() == EBUSY || s.code() == EINVAL ? kExitMount : exit_code_for(s);
      }
      break;
    case Command::Kind::kInspect: {
      std::string mp = serving_mountpoint(cmd.store);
      if (!cmd.image.empty()) {
        return run_inspect_image(cmd.store, mp, cmd.registry_root, cmd.image, cmd.json, std::cout, std::cerr);
      }
      return run_inspect(mp.empty() ? cmd.store : mounted_store(mp), mp, cmd.registry_root, std::cout, std::cerr);
    }
    case Command::Kind::kStatus: {
      std::vector<StatusEntry> entries;
      for (const auto& m : served_mounts()) entries.push_back({m.store, m.mountpoint, m.view});
      return run_status(entries, cmd.json, std::cout, std::cerr);
    }
    case Command::Kind::kConsole: {
      // The console is a program of its own beside this one: cmkfs, which serves mounts and
      // holds their keys, links no HTTPS server.
      std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
      std::string console = std::filesystem::path(self).parent_path().string() + "/cmkfs-console";
      ::execv(console.c_str(), argv);
      std::cerr << "cmkfs: cannot run " << console << ": " << std::strerror(errno) << "\n";
      return kExitError;
    }
    case Command::Kind::kCat:
      return run_cat(cmd.store, serving_mountpoint(cmd.store), cmd.path, std::cout, std::cerr);
    case Command::Kind::kExport:
      return run_export(cmd.store, serving_mountpoint(cmd.store), cmd.path, cmd.dest, std::cout, std::cerr);
    case Command::Kind::kFsck:
      return run_fsck(cmd.store, cmd.fsck, std::cout, std::cerr);
    case Command::Kind::kEncryptionShow:
      s = show_encryption(cmd.store, std::cout);
      if (!s.ok() && (s.code() == ENOENT || s.code() == EINVAL || s.code() == ENOTDIR || s.code() == EIO)) {
        std::cerr << "cmkfs: " << printable(s.message()) << "\n";
        return kExitNotAStore;
      }
      break;
    case Command::Kind::kNone:
      return kExitUsage;
  }
  if (!s.ok()) {
    std::cerr << "cmkfs: " << printable(s.message()) << "\n";
    return exit_code_for(s);
  }
  return kExitOk;
}
