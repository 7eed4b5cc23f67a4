// A store's files by path, for the commands that read them without serving them (cat, export,
// inspect --image): from an unmounted store with its key (a read transaction and the mount's own
// read path), or through the mountpoint of a mounted one. Paths are relative to the store's root;
// symbolic links are never followed.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/base/status.h"
#include "crypto/crypto.h"

namespace cmkfs::fs {

struct TreeStat {
  uint32_t mode = 0;  // st_mode
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0, ino = 0, rdev = 0;
  uint32_t nlink = 1;
  struct timespec atime {}, mtime {};
  std::string symlink;                      // a symbolic link's target
  std::optional<uint32_t> dek_generation;   // known offline only
};

class StoreTree {
 public:
  virtual ~StoreTree() = default;
  virtual Result<TreeStat> stat(const std::string& path) = 0;
  virtual Result<std::vector<std::string>> list(const std::string& dir) = 0;
  // Calls fn with the file's bytes in order.
  virtual Status read(const std::string& path, const std::function<Status(crypto::Bytes)>& fn) = 0;
  virtual bool mounted() const = 0;
  virtual std::string protection() = 0;  // the key-encryption key wrapping the data key, or ""

  Result<std::string> read_small(const std::string& path, uint64_t max);
};

// Reads through `mountpoint` when the store is mounted there (the caller finds it in the mount
// table), else opens the store directory `target` with its key. On failure writes one line to
// `err`, sets *exit_code and returns null.
std::unique_ptr<StoreTree> open_tree(const std::string& target, const std::string& mountpoint, const char* reason,
                                     std::ostream& err, int* exit_code);

}  // namespace cmkfs::fs
