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

#include "crypto/base/status.h"
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
  size_t* live = nullptr;  // the tree's count of nodes, taken down when this one goes

  RootfsNode() = default;
  RootfsNode(const RootfsNode&) = delete;
  RootfsNode& operator=(const RootfsNode&) = delete;
  ~RootfsNode() {
    if (live != nullptr) --*live;
  }
};

// What one image's filesystem may hold: the layers are hostile, and a layer of a few megabytes
// can name millions of directories (every path up to 4 KiB makes its parents) whose paths sum to
// gigabytes. Past either, the image is not viewed (EFBIG).
struct RootfsLimits {
  size_t nodes = size_t{1} << 20;          // files, links and directories at once, about 300 bytes each
  size_t made = size_t{1} << 22;           // ... made in all (the work: layers replace and delete)
  size_t path_bytes = size_t{128} << 20;   // every node's first name, in full
};

class Rootfs {
 public:
  // Applies `layers` (lowest first). Entries that cannot apply (a hard link to nothing, a path
  // through a non-directory, a type no runtime makes) are skipped, as runtimes do.
  static Result<std::shared_ptr<const Rootfs>> apply(const std::vector<std::shared_ptr<oci::LayerIndex>>& layers,
                                                     const RootfsLimits& limits = {});
  // The node at `path` ("" for the root), or nullptr.
  const RootfsNode* find(std::string_view path) const;
  const std::vector<std::shared_ptr<oci::LayerIndex>>& layers() const { return layers_; }
  // Bytes held, about: what a cache of them counts.
  size_t memory() const { return memory_; }

 private:
  size_t live_nodes_ = 0;  // before root_: the nodes count it down as they go, after it
  std::shared_ptr<RootfsNode> root_ = std::make_shared<RootfsNode>();
  std::vector<std::shared_ptr<oci::LayerIndex>> layers_;
  size_t memory_ = 0;
};

}  // namespace cmkfs::fs::view
