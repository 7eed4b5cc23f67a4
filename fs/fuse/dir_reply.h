// A READDIR reply being filled: entries go into the kernel's buffer until it is full, then the
// reply is sent once. Shared by the store's and the views' operation tables.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <string>
#include <string_view>
#include <vector>

namespace cmkfs::fs {

class DirReply {
 public:
  DirReply(fuse_req_t req, size_t size) : req_(req), size_(size) {
    buf_.resize(size);
    used_ = 0;
  }
  // False once the buffer is full (the entry is not added; the kernel asks again from it).
  bool add(std::string_view name, uint64_t ino, uint32_t mode, uint64_t next) {
    struct stat st {};
    st.st_ino = ino;
    st.st_mode = mode;
    std::string n(name);
    size_t need = fuse_add_direntry(req_, buf_.data() + used_, size_ - used_, n.c_str(), &st, static_cast<off_t>(next));
    if (need > size_ - used_) return false;
    used_ += need;
    return true;
  }
  // The entries added, or the error.
  void send(int err) {
    if (err != 0) fuse_reply_err(req_, err);
    else fuse_reply_buf(req_, buf_.data(), used_);
  }

 private:
  fuse_req_t req_;
  size_t size_;
  static thread_local std::vector<char> buf_;
  size_t used_ = 0;
};

inline thread_local std::vector<char> DirReply::buf_;

}  // namespace cmkfs::fs
