// The libfuse low-level operation table over a Filesystem: each callback calls one Filesystem
// operation and replies exactly once, before it returns (the io_uring transport relies on it).
#pragma once

#define FUSE_USE_VERSION 314
#include <atomic>
#include <cstdint>
#include <string>
#include <fuse_lowlevel.h>

#include "fs/core/filesystem.h"
#include "fs/fuse/op_stats.h"

namespace cmkfs::fs {

// Filled field by field from the mount's options (fs/daemon/daemon.h holds the defaults).
struct BridgeConfig {
  double attr_timeout = 0;      // seconds the kernel may cache attributes
  double entry_timeout = 0;     // ... names, and the absence of names
  uint32_t max_write = 0;       // the largest WRITE
  bool writeback_cache = false;  // the kernel gathers writes and writes them back in large requests
  uint64_t read_ahead = 0;       // the readahead window set at INIT, when above the kernel's; 0: its own
  std::string mountpoint, source;  // where the mount is, to find it in the mount table
};

struct Bridge {
  Bridge(Filesystem* f, BridgeConfig c) : fs(f), config(std::move(c)) {}
  Filesystem* fs;
  BridgeConfig config;
  std::atomic<uint64_t> writes{0};  // WRITE requests served; a SIGTERM waits until they stop
  OpStats stats;                    // for /metrics: counted only when collect_stats
  bool collect_stats = false;       // set before the session starts
  fuse_session* session = nullptr;  // for a follower's invalidations at open(2); set before it starts
  // --direct-reads, once the kernel lets direct-I/O files be mapped (fs/fuse/fuse_uring.h): files
  // opened read-only bypass the page cache.
  std::atomic<bool> direct_reads{false};
};

// The operations; fuse_session_new's userdata must be a Bridge*.
// save_at_close: close(2) saves a changed file's size and times (Filesystem::flush), for a store
// other mounts follow.
const fuse_lowlevel_ops& fuse_operations(bool save_at_close = false);

}  // namespace cmkfs::fs
