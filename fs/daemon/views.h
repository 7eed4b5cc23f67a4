// The registry views a daemon serves beside (or instead of) its mount: attached by `cmkfs view`,
// detached by unmounting them, all unmounted when the daemon stops.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fs/fuse/fuse.h"

namespace cmkfs::fs {

class Views {
 public:
  Views(Filesystem& fs, Keyring& keyring, std::string source) : fs_(fs), keyring_(keyring), source_(std::move(source)) {}
  ~Views() { clear(); }
  Views(const Views&) = delete;
  Views& operator=(const Views&) = delete;

  // Mounts a view of the registry at `registry_root` ("" finds it) on the directory `dir`.
  Status attach(const std::string& dir, const std::string& registry_root);
  size_t reap();      // forgets the views the kernel unmounted; returns how many are left
  void invalidate();  // after a revocation: the kernel must ask again
  void clear();       // unmounts them all

 private:
  Filesystem& fs_;
  Keyring& keyring_;
  std::string source_;
  std::mutex mu_;
  std::vector<std::unique_ptr<ViewSession>> sessions_;
};

}  // namespace cmkfs::fs
