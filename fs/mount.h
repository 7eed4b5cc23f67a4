// The commands that run a store: mount (composition of every layer), umount, encryption show.
#pragma once

#include <iosfwd>
#include <string>

#include "fs/cli.h"

namespace cmkfs::fs {

// Mounts and serves until unmounted or signalled (SIGTERM, SIGINT, SIGHUP), then flushes
// everything. Unless opts.foreground, returns in the parent once the mount is ready (or failed).
int run_mount(const MountOptions& opts, const std::string& log_level);

// Unmounts and waits until the daemon has flushed and let go of the store.
Status run_umount(const std::string& mountpoint, std::ostream& out);

// Prints the store's encryption settings as JSON, in the shape of `az acr encryption show`.
Status show_encryption(const std::string& store, std::ostream& out);

}  // namespace cmkfs::fs
