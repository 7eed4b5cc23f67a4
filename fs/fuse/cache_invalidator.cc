#include "fs/fuse/cache_invalidator.h"

namespace cmkfs::fs {

bool CacheInvalidator::enter() {
  std::lock_guard<std::mutex> g(mu_);
  if (closed_) return false;
  ++under_way_;
  return true;
}

void CacheInvalidator::leave() {
  std::lock_guard<std::mutex> g(mu_);
  if (--under_way_ == 0) idle_.notify_all();
}

void CacheInvalidator::inode(uint64_t ino) {
  if (!enter()) return;
  fuse_lowlevel_notify_inval_inode(se_, ino, 0, 0);
  leave();
}

void CacheInvalidator::entry(uint64_t parent, std::string_view name) {
  if (!enter()) return;
  fuse_lowlevel_notify_inval_entry(se_, parent, name.data(), name.size());
  leave();
}

void CacheInvalidator::close() {
  std::unique_lock<std::mutex> lock(mu_);
  closed_ = true;
  idle_.wait(lock, [this] { return under_way_ == 0; });
}

}  // namespace cmkfs::fs
