// fs/daemon: a mounted store's life: the composition of every layer (store, core, FUSE), the key
// monitor, the periodic flush, signals; and unmounting. Every mount option and its default is here.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <thread>
#include <vector>

#include "crypto/base/status.h"
#include "fs/core/filesystem.h"

namespace cmkfs::fs {

// How the key monitor watches a revocable key (see key_monitor.h).
struct MonitorOptions {
  std::chrono::milliseconds check_interval{std::chrono::seconds(30)};
  std::chrono::milliseconds rotation_poll_interval{std::chrono::hours(1)};
  std::chrono::milliseconds offline_grace{std::chrono::minutes(15)};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};  // each vault request
  bool writes = true;  // false on a follower: rotations are the writer's to do
};

struct MountOptions {
  std::string store;
  std::string mountpoint;
  std::string log_format = "text";  // or "json": one object per line
  bool foreground = false;
  std::vector<std::string> fuse_options;  // each -o value, comma lists kept as given
  double attr_timeout = 1.0;              // seconds the kernel caches attributes
  double entry_timeout = 1.0;             // ... names, and the absence of names
  // FUSE worker threads; 0: twice the cores (at least 4) for objects on local storage, where
  // idle workers beyond what the cores can run only add cold wake-ups (docs/performance.md),
  // and eight times (at least 16) for objects in a cluster, where a worker waits on the network.
  unsigned max_threads = 0;
  bool writeback_cache = true;
  bool io_uring = true;  // FUSE over io_uring (fs/fuse/fuse_uring.h), where the kernel has it
  bool direct_reads = false;  // files opened read-only bypass the page cache (needs io_uring)
  // Metadata changes reach the disk in batches at most this old (meta/batcher.h); 0: each alone.
  double commit_interval_ms = 10;
  size_t inode_cache = InodeTable::kDefaultCapacity;  // inodes whole in memory (fs/core/inode_table.h)
  uint64_t read_ahead = 4 << 20;  // the kernel's readahead window; 0 leaves its default (128 KiB)
  uint32_t max_write = 1 << 20;   // the largest WRITE request the kernel sends
  std::string log_file;           // default: chosen by store id when daemonized
  std::string audit_log;          // default: default_audit_path(store id)
  MonitorOptions monitor;
  std::string metrics_listen;  // HOST:PORT for /metrics (Prometheus); "" serves none
  // `cmkfs view --store`: serve only a registry view (fs/view) at `mountpoint`, of the registry
  // at `registry_root` ("" finds it).
  bool view_only = false;
  std::string registry_root;
  // Serve, read-only, a store another cmkfs mount writes (metadata in PostgreSQL), following its
  // changes (Filesystem::set_follower).
  bool follow = false;
};

// Mounts and serves until unmounted or signalled (SIGTERM, SIGINT), then flushes everything;
// SIGHUP reopens the log file (logrotate). Unless opts.foreground, returns in the parent once the mount is ready (or failed).
// Returns the exit code (fs/store/store.h).
int run_mount(const MountOptions& opts, const std::string& log_level);

// Every command's log: stderr, as text or JSON lines (`format`); the journal, with each line's
// priority, when systemd connected stderr to it.
void use_stderr_log(const std::string& level, const std::string& format);

// `cmkfs view MOUNTPOINT VIEWDIR`: asks the daemon of the mount to serve a read-only registry
// view on VIEWDIR (over its control socket: no second unwrap, no second store lock).
Status attach_view(const std::string& mountpoint, const std::string& view_dir, const std::string& registry_root,
                   std::ostream& out);

// The store a cmkfs mount at `mountpoint` serves (from the kernel's mount table), or "".
std::string mounted_store(const std::string& mountpoint);
// Every cmkfs mount and view this user (or root) made, from the kernel's mount table:
// (store, mountpoint, is a view).
struct ServedMount {
  std::string store, mountpoint;
  bool view = false;
};
std::vector<ServedMount> served_mounts();

// Where `target` is served: itself when it is a cmkfs mountpoint, the mountpoint of the store
// when `target` is a mounted store directory, else "".
std::string serving_mountpoint(const std::string& target);

// Unmounts a mount or a view and waits until the daemon has flushed and let go of the store (a
// view beside a mount: until it is unmounted).
Status run_umount(const std::string& mountpoint, std::ostream& out);

}  // namespace cmkfs::fs
