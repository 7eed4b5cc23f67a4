// A registry view's own FUSE session: mounted read-only beside the store's mount (or alone, for a
// store that is not mounted) and served on its own threads by the same process, so it shares the
// unwrapped key, the inode table and the store lock. The kernel answers EROFS to every write.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "fs/view/view.h"

namespace cmkfs::fs {

struct ViewContext;

class ViewSession {
 public:
  // Mounts `view` at `mountpoint` (mount-table source `source`) and starts serving it.
  static Result<std::unique_ptr<ViewSession>> start(std::unique_ptr<RegistryView> view, const std::string& mountpoint,
                                                    const std::string& source);
  ~ViewSession();  // unmounts, if still mounted, and waits for the serving threads
  ViewSession(const ViewSession&) = delete;
  ViewSession& operator=(const ViewSession&) = delete;

  const std::string& mountpoint() const { return mountpoint_; }
  bool finished() const { return finished_.load(); }  // unmounted (cmkfs umount VIEWDIR)
  void invalidate();  // drops what the kernel caches of the view: after a revocation

 private:
  ViewSession() = default;
  bool abort_connection();
  std::unique_ptr<RegistryView> view_;
  std::unique_ptr<ViewContext> context_;
  std::string mountpoint_;
  std::string device_;  // "0:N": the FUSE connection, /sys/fs/fuse/connections/N
  fuse_session* se_ = nullptr;
  int dir_fd_ = -1;  // as root: the directory mounted on, by /proc/self/fd
  std::thread loop_;
  std::atomic<bool> finished_{false};
};

}  // namespace cmkfs::fs
