// The libfuse low-level operation table over a Filesystem: each callback calls one Filesystem
// operation and replies exactly once.
#pragma once

#define FUSE_USE_VERSION 314
#include <atomic>
#include <fuse_lowlevel.h>

#include "fs/filesystem.h"

namespace cmkfs::fs {

struct BridgeConfig {
  double attr_timeout = 1.0;   // seconds the kernel may cache attributes
  double entry_timeout = 1.0;  // ... names, and the absence of names
  uint32_t max_write = 1 << 20;
  bool writeback_cache = true;  // the kernel gathers writes and writes them back in large requests
};

struct Bridge {
  Filesystem* fs;
  BridgeConfig config;
  std::atomic<bool> initialized{false};  // INIT has been answered (or is being answered)
};

// The operations; fuse_session_new's userdata must be a Bridge*.
const fuse_lowlevel_ops& fuse_operations();

}  // namespace cmkfs::fs
