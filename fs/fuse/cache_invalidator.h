// Invalidations of the kernel's caches (an inode's pages and attributes, a name) sent from
// threads other than the session loop's: the key monitor's revocation, a follower's change feed.
// An invalidation waits for the pages and names it drops, and they wait for the requests in
// flight on them. Once the loop has ended nobody answers those, so an invalidation sent then
// would wait forever, and so would the stop joining its thread. close() is therefore called
// while the loop still serves: it waits for the invalidations under way, and later ones are
// skipped (the mount is going; its kernel caches go with it).
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string_view>

namespace cmkfs::fs {

class CacheInvalidator {
 public:
  explicit CacheInvalidator(fuse_session* se) : se_(se) {}

  void inode(uint64_t ino);                         // its attributes and every cached page
  void entry(uint64_t parent, std::string_view name);  // the name's cached lookup
  // Idempotent. REQUIRES: the session loop still answers requests, or the kernel connection
  // has ended (an invalidation under way may wait for a request in flight).
  void close();

 private:
  bool enter();
  void leave();

  fuse_session* const se_;
  std::mutex mu_;
  std::condition_variable idle_;
  int under_way_ = 0;
  bool closed_ = false;
};

}  // namespace cmkfs::fs
