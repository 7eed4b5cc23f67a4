// Reading the store through a Filesystem the way the view needs it: by path, never following a
// symbolic link, with every size bounded. Private to fs/view.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/core/filesystem.h"

namespace cmkfs::fs::view {

// A looked-up inode, as the kernel holds one: forgotten when dropped. Move-only.
class InodeRef {
 public:
  InodeRef() = default;
  InodeRef(Filesystem* fs, const meta::InodeRecord& rec, bool counted) : fs_(fs), rec_(rec), counted_(counted) {}
  InodeRef(InodeRef&& o) noexcept { *this = std::move(o); }
  InodeRef& operator=(InodeRef&& o) noexcept {
    reset();
    std::swap(fs_, o.fs_);
    std::swap(rec_, o.rec_);
    std::swap(counted_, o.counted_);
    return *this;
  }
  ~InodeRef() { reset(); }
  const meta::InodeRecord& rec() const { return rec_; }
  uint64_t ino() const { return rec_.ino; }

 private:
  void reset() {
    if (fs_ != nullptr && counted_) fs_->forget(rec_.ino, 1);
    fs_ = nullptr;
    counted_ = false;
  }
  Filesystem* fs_ = nullptr;
  meta::InodeRecord rec_;
  bool counted_ = false;
};

// Resolves `rel` ("a/b/c", "" for `from` itself) below the directory `from`. ELOOP when a
// component is a symbolic link, ENOTDIR when a middle one is not a directory.
int walk(Filesystem& fs, const InodeRef& from, std::string_view rel, InodeRef* out);
int walk_from_root(Filesystem& fs, std::string_view rel, InodeRef* out);

// The entries of a directory (without "." and ".."): name and S_IFMT type; at most `max`.
int list(Filesystem& fs, uint64_t dir, size_t max, std::vector<std::pair<std::string, uint32_t>>* out);

// The whole of a regular file of at most `max` bytes (EFBIG when larger).
int read_small(Filesystem& fs, const InodeRef& file, uint64_t max, std::string* out);

}  // namespace cmkfs::fs::view
