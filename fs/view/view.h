// fs/view: a read-only view of the registry content in a store, named like image references:
//
//   <repository>:<tag>/  and  <repository>@sha256:<hex>/    (repository names nest as directories)
//     manifest.json, config.json, layers/<n>-<hex>.tar.gz   for an image
//     rootfs/                                              its filesystem, layers applied
//     index.json, <os>-<arch>[-<variant>]/                  for an image index (one image per platform)
//   oci/<layout path>:<ref>/                               the same for OCI image layouts
//
// Files are the registry's own blobs, read through the Filesystem (no copy); a blob is checked
// against its digest once, when first opened, and reads EIO when it does not match. Names come
// from the registry's link files, rescanned at most once per `refresh` while the view is used,
// so pushes, tag moves and deletes show up. Everything read from the store is untrusted: names are
// checked against the distribution grammar, links are never followed, manifests are size-capped.
// rootfs/ is built on first use from an index of each layer (fs/oci/layer.h: its tar entries and
// gzip access points every MiB), made in one pass over the layer and kept in memory; reading a
// file then inflates at most a MiB it does not return.
// While the keyring is revoked every operation answers EACCES.
//
// Operations return 0 or an errno, like Filesystem's; fs/fuse serves them. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fs/core/filesystem.h"
#include "fs/oci/oci.h"

namespace cmkfs::fs {
namespace view {
class InodeRef;
class Rootfs;
struct RootfsNode;
}

struct ViewOptions {
  std::string registry_root;  // the directory holding docker/registry/v2; "" finds it
  std::chrono::milliseconds refresh{500};
  // Inode numbers kept that the kernel holds no lookup of (a readdir hands them out too): past
  // these, the least recently used go, and their paths get new numbers when next used.
  size_t idle_inodes = size_t{1} << 18;
};

struct ViewAttr {
  uint64_t ino = 0;
  uint32_t mode = 0;  // S_IFDIR | 0555 or S_IFREG | 0444; in rootfs/, the image's own
  uint64_t size = 0;
  uint32_t uid = 0, gid = 0;
  uint32_t nlink = 1;
  uint64_t rdev = 0;
  meta::Timespec mtime;
};

class RegistryView {
 public:
  RegistryView(Filesystem& fs, Keyring& keyring, ViewOptions options);
  ~RegistryView();

  int lookup(uint64_t parent, std::string_view name, ViewAttr* out);
  int getattr(uint64_t ino, ViewAttr* out);
  // Calls fn(name, ino, mode, next_offset) per entry after `offset` until it returns false.
  using Filler = std::function<bool(std::string_view, uint64_t, uint32_t, uint64_t)>;
  // Where an open directory's last readdir stopped, so that the next, at that offset, goes on
  // from there: a rootfs/ directory of a million entries is read in thousands of calls, each of
  // which would otherwise walk to its offset. One per opendir; optional.
  struct DirCursor;
  static DirCursor* new_dir_cursor();
  static void free_dir_cursor(DirCursor* c);
  int readdir(uint64_t ino, uint64_t offset, const Filler& fn, DirCursor* cursor = nullptr);
  struct File;  // an open view file
  int open(uint64_t ino, int flags, File** out);
  int read(File* f, uint64_t offset, crypto::MutableBytes buf, size_t* n);
  void release(File* f);
  int readlink(uint64_t ino, std::string* out);

  std::string registry_root();  // as found; "" while none is
  // The kernel let go of `n` lookups of `ino` (FORGET). Once it holds none, the number may go
  // (ViewOptions::idle_inodes), and the path gets another when next used.
  void forget(uint64_t ino, uint64_t n);
  std::vector<uint64_t> inodes();  // the inode numbers in use now

 private:
  struct Node;     // what a view path names
  struct Catalog;  // the registry's names, from one scan
  struct Image;    // a parsed manifest
  // A blob file as it is now: (store inode, size, ctime, object). A write or a utimensat moves
  // ctime, a replacement the object.
  using BlobStamp = std::tuple<uint64_t, uint64_t, int64_t, std::string>;
  static BlobStamp stamp_of(const meta::InodeRecord& rec);
  void blob_checked(const oci::Digest& d, const meta::InodeRecord& rec, bool matches);  // REQUIRES: mu_ held

  int resolve(uint64_t ino, std::string* path, Node* out);
  int resolve_path(const std::vector<std::string>& parts, Node* out);
  int child(const Node& dir, const std::string& name, Node* out);
  std::string find_root();
  void scan_repositories(const view::InodeRef& dir, const std::string& repo, int depth, Catalog* cat);
  void add_repository(const view::InodeRef& dir, const std::string& repo, Catalog* cat);
  void scan_layouts(const view::InodeRef& dir, const std::string& path, int depth, size_t* budget,
                    const std::string& skip, Catalog* cat);
  void add_layout(const view::InodeRef& dir, const std::string& path, Catalog* cat);
  int children(const Node& dir, std::vector<std::pair<std::string, Node>>* out);
  // The attributes of rootfs/ node `n`, named `ns` in its image and `path` in the view.
  void rootfs_attr(const std::string& path, const std::string& ns, const view::RootfsNode& n, ViewAttr* out, bool lookup);
  int readdir_rootfs(const std::string& path, const Node& dir, uint64_t offset, const Filler& fn, DirCursor* cursor);
  // `lookup`: the kernel takes a reference to the inode (a LOOKUP reply).
  int attr_of(const std::string& path, const Node& node, ViewAttr* out, bool lookup = false);
  uint64_t ino_of(const std::string& path, bool lookup = false);  // `lookup`: the kernel takes a reference
  std::shared_ptr<const Catalog> catalog();
  Result<std::shared_ptr<const Image>> image(const oci::Digest& digest, const std::string& layout);
  std::string blob_path(const std::string& layout, const oci::Digest& d);
  Status verify_blob(const oci::Digest& d, Handle* h, const meta::InodeRecord& rec);
  int open_rootfs_file(const Node& node, File** out);
  Result<std::shared_ptr<const view::Rootfs>> rootfs(const oci::Digest& manifest, const std::string& layout);
  Result<std::shared_ptr<const view::Rootfs>> build_rootfs(const oci::Digest& manifest, const std::string& layout);
  std::vector<BlobStamp> layer_stamps(const oci::Digest& manifest, const std::string& layout);
  Result<std::shared_ptr<oci::LayerIndex>> layer_index(const oci::Digest& layer, const std::string& layout);

  Filesystem& fs_;
  Keyring& keyring_;
  ViewOptions options_;
  meta::InodeRecord root_attr_;  // owner and times of the store's root, for directories

  std::mutex scan_mu_;   // one catalog scan at a time
  // One build of each rootfs, layer index or blob check at a time (the first builds, the others
  // wait for it); other images build meanwhile. From build_lock(), under mu_.
  std::shared_ptr<std::mutex> build_lock(const std::string& key);
  std::mutex mu_;       // guards everything below
  std::string root_;  // the registry root found, relative to the store's root
  std::shared_ptr<const Catalog> catalog_;
  std::chrono::steady_clock::time_point scanned_at_;
  // Inode numbers by view path and back, each with the kernel's lookups of it. Numbers are never
  // reused; one the kernel holds no lookup of waits in idle_ (oldest first) and goes past
  // options_.idle_inodes, so a crawl over every image's rootfs/ does not keep a number per path forever.
  struct InodeEntry {
    std::string path;
    uint64_t lookups = 0;
    std::list<uint64_t>::iterator idle;  // its place in idle_, when lookups == 0
  };
  std::unordered_map<std::string, uint64_t> inos_;
  std::unordered_map<uint64_t, InodeEntry> paths_;
  std::list<uint64_t> idle_;
  uint64_t next_ino_ = 2;
  std::map<std::string, std::shared_ptr<const Image>> images_;  // by manifest digest hex
  std::map<std::string, std::shared_ptr<oci::LayerIndex>> layers_;     // by layer digest hex
  std::map<std::string, std::shared_ptr<const view::Rootfs>> rootfs_;  // by manifest digest hex
  size_t layer_memory_ = 0;  // held by layers_
  std::map<std::string, std::weak_ptr<std::mutex>> building_;  // "rootfs <hex>", "layer <hex>", "blob <hex> <ino>"
  // Images whose rootfs could not be built from their content (a corrupt or oversized layer, a
  // bomb): the error, when, and their layer blobs then, so that each look does not inflate the
  // layers again until a blob changes or a minute has passed.
  struct Unbuildable {
    Status error;
    std::chrono::steady_clock::time_point at;
    std::vector<BlobStamp> layers;
  };
  std::map<std::string, Unbuildable> unbuildable_;
  // Blobs checked against their digest: (digest hex, store inode) -> the blob's stamp then, and
  // whether it matched (a forged blob is not hashed again at every open while it stays as it is).
  // By inode too: the same digest in two layouts is two files, either of which may be forged.
  std::map<std::pair<std::string, uint64_t>, std::pair<BlobStamp, bool>> verified_;
};

}  // namespace cmkfs::fs
