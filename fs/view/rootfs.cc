#include "fs/view/rootfs.h"

#include <limits.h>
#include <sys/sysmacros.h>

#include <functional>
#include <unordered_map>

namespace cmkfs::fs::view {
namespace {

constexpr std::string_view kWhiteout = ".wh.";
constexpr std::string_view kOpaque = ".wh..wh..opq";

std::pair<std::string_view, std::string_view> split_last(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

uint32_t type_bits(char type) {
  switch (type) {
    case '2': return S_IFLNK;
    case '3': return S_IFCHR;
    case '4': return S_IFBLK;
    case '5': return S_IFDIR;
    case '6': return S_IFIFO;
    default: return S_IFREG;
  }
}

// No component longer than a name may be (NAME_MAX): the kernel refuses such a name in a
// directory listing (the whole READDIR fails), and no runtime can unpack it.
bool names_fit(std::string_view path) {
  for (size_t start = 0; start <= path.size();) {
    size_t slash = path.find('/', start);
    size_t end = slash == std::string_view::npos ? path.size() : slash;
    if (end - start > NAME_MAX) return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

const RootfsNode* Rootfs::find(std::string_view path) const {
  const RootfsNode* node = root_.get();
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (!S_ISDIR(node->mode)) return nullptr;
    auto it = node->children.find(std::string(part));
    if (it == node->children.end() || !it->second) return nullptr;
    node = it->second.get();
  }
  return node;
}

Result<std::shared_ptr<const Rootfs>> Rootfs::apply(const std::vector<std::shared_ptr<oci::LayerIndex>>& layers,
                                                    const RootfsLimits& limits) {
  auto fs = std::make_shared<Rootfs>();
  fs->layers_ = layers;
  size_t made = 0;
  auto too_large = [&](const std::string& what) {
    return Status(EFBIG, "an image of more than " + what + " is not viewed");
  };
  auto too_many = [&] {
    return too_large(made > limits.made ? std::to_string(limits.made) + " files and directories made"
                                        : std::to_string(limits.nodes) + " files and directories");
  };
  auto make_node = [&]() -> std::shared_ptr<RootfsNode> {
    if (++made > limits.made || fs->live_nodes_ >= limits.nodes) return nullptr;
    auto node = std::make_shared<RootfsNode>();
    node->live = &fs->live_nodes_;
    ++fs->live_nodes_;
    return node;
  };
  bool over = false;  // a node was refused: the image is not viewed
  // The directory at `path`, made (as 0755 root) where missing; nullptr when a non-directory is
  // in the way or the limit is reached.
  std::function<RootfsNode*(std::string_view)> dir = [&](std::string_view path) -> RootfsNode* {
    if (path.empty()) return fs->root_.get();
    auto [parent_path, name] = split_last(path);
    RootfsNode* parent = dir(parent_path);
    if (parent == nullptr) return nullptr;
    auto it = parent->children.find(std::string(name));
    if (it != parent->children.end()) return S_ISDIR(it->second->mode) ? it->second.get() : nullptr;
    auto made = make_node();
    if (!made) return over = true, nullptr;
    return parent->children.emplace(std::string(name), std::move(made)).first->second.get();
  };
  auto lookup = [&](std::string_view path) -> std::shared_ptr<RootfsNode> {
    auto [parent_path, name] = split_last(path);
    const RootfsNode* parent = fs->find(parent_path);
    if (parent == nullptr || !S_ISDIR(parent->mode)) return nullptr;
    auto it = parent->children.find(std::string(name));
    return it == parent->children.end() ? nullptr : it->second;
  };
  for (size_t l = 0; l < layers.size(); ++l) {
    // Whiteouts first: they delete from the layers below, whatever their place in this tar.
    for (const auto& e : layers[l]->entries) {
      auto [parent_path, name] = split_last(e.path);
      if (e.path.empty() || name.substr(0, kWhiteout.size()) != kWhiteout) continue;
      RootfsNode* parent = const_cast<RootfsNode*>(fs->find(parent_path));
      if (parent == nullptr || !S_ISDIR(parent->mode)) continue;
      if (name == kOpaque) parent->children.clear();
      else parent->children.erase(std::string(name.substr(kWhiteout.size())));
    }
    for (const auto& e : layers[l]->entries) {
      bool known = e.type == '0' || e.type == '1' || e.type == '2' || e.type == '3' || e.type == '4' ||
                   e.type == '5' || e.type == '6';
      if (!known) continue;  // GNU sparse files, volume labels...: nothing a runtime unpacks
      if (!names_fit(e.path)) continue;
      if (e.path.empty()) {  // "./": the root's own attributes
        if (e.type != '5') continue;
        RootfsNode& r = *fs->root_;
        r.mode = S_IFDIR | e.mode, r.uid = e.uid, r.gid = e.gid, r.mtime = e.mtime, r.mtime_nsec = e.mtime_nsec;
        continue;
      }
      auto [parent_path, name] = split_last(e.path);
      if (name.substr(0, kWhiteout.size()) == kWhiteout) continue;
      RootfsNode* parent = dir(parent_path);
      if (over) return too_many();
      if (parent == nullptr) continue;
      // Looked up before anything is put in the entry's place: a hard link may name a path
      // through its own name.
      if (e.type == '1') {  // a hard link: another name for the node the target names now
        auto target = lookup(e.link);
        if (target && !S_ISDIR(target->mode)) parent->children[std::string(name)] = std::move(target);
        continue;
      }
      uint32_t type = type_bits(e.type);
      auto it = parent->children.find(std::string(name));
      if (type == S_IFDIR && it != parent->children.end() && S_ISDIR(it->second->mode)) {
        RootfsNode& d = *it->second;  // a directory again: new attributes, same entries
        d.mode = S_IFDIR | e.mode, d.uid = e.uid, d.gid = e.gid, d.mtime = e.mtime, d.mtime_nsec = e.mtime_nsec;
        continue;
      }
      auto node = make_node();
      if (!node) return too_many();
      node->mode = type | e.mode;
      node->uid = e.uid, node->gid = e.gid, node->mtime = e.mtime, node->mtime_nsec = e.mtime_nsec;
      node->size = type == S_IFREG ? e.size : type == S_IFLNK ? e.link.size() : 0;
      node->link = type == S_IFLNK ? e.link : "";
      node->rdev = makedev(e.dev_major, e.dev_minor);
      node->layer = l;
      node->offset = e.offset;
      parent->children[std::string(name)] = std::move(node);
    }
  }
  // Link counts and each node's first name, in name order.
  std::unordered_map<const RootfsNode*, uint32_t> names;
  size_t path_bytes = 0, link_bytes = 0;
  std::function<bool(RootfsNode&, const std::string&)> walk = [&](RootfsNode& n, const std::string& path) {
    uint32_t subdirs = 0;
    for (auto& [name, child] : n.children) {
      std::string p = path.empty() ? name : path + "/" + name;
      path_bytes += name.size();
      if (names[child.get()]++ == 0) {
        path_bytes += p.size(), link_bytes += child->link.size();
        if (path_bytes > limits.path_bytes) return false;
        child->path = p;
      }
      if (S_ISDIR(child->mode)) {
        ++subdirs;
        if (!walk(*child, p)) return false;
      }
    }
    n.nlink = 2 + subdirs;
    return true;
  };
  if (!walk(*fs->root_, "")) return too_large(std::to_string(limits.path_bytes >> 20) + " MiB of paths");
  for (auto& [node, count] : names) {
    if (!S_ISDIR(node->mode)) const_cast<RootfsNode*>(node)->nlink = count;
  }
  // A node, its control block and its place in its parent's map; its names and link.
  fs->memory_ = names.size() * (sizeof(RootfsNode) + 112) + path_bytes + link_bytes;
  return std::shared_ptr<const Rootfs>(std::move(fs));
}

}  // namespace cmkfs::fs::view
