// An image's filesystem: its layers' tar entries applied in order, as a container runtime
// unpacks them. OCI whiteouts (".wh.<name>" deletes <name> from the layers below, ".wh..wh..opq"
// empties a directory of them), hard links (one node under several names), symlinks, devices,
// modes, owners and times as in the tar. Private to fs/view.
#pragma once

#include <sys/stat.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fs/oci/oci.h"

namespace cmkfs::fs::view {

struct RootfsNode {
  uint32_t mode = S_IFDIR | 0755;  // st_mode
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;
  uint64_t rdev = 0;
  std::string link;       // a symlink's target
  size_t layer = 0;       // regular files: which layer holds the bytes, and where
  uint64_t offset = 0;
  uint32_t nlink = 1;
  std::string path;       // the first of its names: hard links share one inode
  std::map<std::string, std::shared_ptr<RootfsNode>> children;
};

class Rootfs {
 public:
  // Applies `layers` (lowest first). Entries that cannot apply (a hard link to nothing, a path
  // through a non-directory) are skipped, as runtimes do.
  static std::shared_ptr<const Rootfs> apply(const std::vector<std::shared_ptr<oci::LayerIndex>>& layers);
  // The node at `path` ("" for the root), or nullptr.
  const RootfsNode* find(std::string_view path) const;
  const std::vector<std::shared_ptr<oci::LayerIndex>>& layers() const { return layers_; }

 private:
  std::shared_ptr<RootfsNode> root_ = std::make_shared<RootfsNode>();
  std::vector<std::shared_ptr<oci::LayerIndex>> layers_;
};

}  // namespace cmkfs::fs::view
