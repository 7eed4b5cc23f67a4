#include "fs/view/rootfs.h"

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

}  // namespace

const RootfsNode* Rootfs::find(std::string_view path) const {
  const RootfsNode* node = root_.get();
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (!S_ISDIR(node->mode)) return nullptr;
    auto it = node->children.find(std::string(part));
    if (it == node->children.end()) return nullptr;
    node = it->second.get();
  }
  return node;
}

std::shared_ptr<const Rootfs> Rootfs::apply(const std::vector<std::shared_ptr<oci::LayerIndex>>& layers) {
  auto fs = std::make_shared<Rootfs>();
  fs->layers_ = layers;
  // The directory at `path`, made (as 0755 root) where missing; nullptr when a non-directory is
  // in the way.
  std::function<RootfsNode*(std::string_view)> dir = [&](std::string_view path) -> RootfsNode* {
    if (path.empty()) return fs->root_.get();
    auto [parent_path, name] = split_last(path);
    RootfsNode* parent = dir(parent_path);
    if (parent == nullptr) return nullptr;
    auto& slot = parent->children[std::string(name)];
    if (!slot) slot = std::make_shared<RootfsNode>();
    return S_ISDIR(slot->mode) ? slot.get() : nullptr;
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
      if (e.path.empty()) {  // "./": the root's own attributes
        if (e.type != '5') continue;
        RootfsNode& r = *fs->root_;
        r.mode = S_IFDIR | e.mode, r.uid = e.uid, r.gid = e.gid, r.mtime = e.mtime, r.mtime_nsec = e.mtime_nsec;
        continue;
      }
      auto [parent_path, name] = split_last(e.path);
      if (name.substr(0, kWhiteout.size()) == kWhiteout) continue;
      RootfsNode* parent = dir(parent_path);
      if (parent == nullptr) continue;
      auto& slot = parent->children[std::string(name)];
      if (e.type == '1') {  // a hard link: another name for the node the target names now
        auto target = lookup(e.link);
        if (target && !S_ISDIR(target->mode)) slot = target;
        else if (!slot) parent->children.erase(std::string(name));
        continue;
      }
      uint32_t type = type_bits(e.type);
      if (e.type != '0' && e.type != '2' && e.type != '3' && e.type != '4' && e.type != '5' && e.type != '6') continue;
      if (type == S_IFDIR && slot && S_ISDIR(slot->mode)) {  // a directory again: new attributes, same entries
        slot->mode = S_IFDIR | e.mode;
        slot->uid = e.uid, slot->gid = e.gid, slot->mtime = e.mtime, slot->mtime_nsec = e.mtime_nsec;
        continue;
      }
      auto node = std::make_shared<RootfsNode>();
      node->mode = type | e.mode;
      node->uid = e.uid, node->gid = e.gid, node->mtime = e.mtime, node->mtime_nsec = e.mtime_nsec;
      node->size = type == S_IFREG ? e.size : type == S_IFLNK ? e.link.size() : 0;
      node->link = type == S_IFLNK ? e.link : "";
      node->rdev = makedev(e.dev_major, e.dev_minor);
      node->layer = l;
      node->offset = e.offset;
      slot = std::move(node);
    }
  }
  // Link counts and each node's first name, in name order.
  std::unordered_map<const RootfsNode*, uint32_t> names;
  std::function<void(RootfsNode&, const std::string&)> walk = [&](RootfsNode& n, const std::string& path) {
    uint32_t subdirs = 0;
    for (auto& [name, child] : n.children) {
      std::string p = path.empty() ? name : path + "/" + name;
      if (names[child.get()]++ == 0) child->path = p;
      if (S_ISDIR(child->mode)) {
        ++subdirs;
        walk(*child, p);
      }
    }
    n.nlink = 2 + subdirs;
  };
  walk(*fs->root_, "");
  for (auto& [node, count] : names) {
    if (!S_ISDIR(node->mode)) const_cast<RootfsNode*>(node)->nlink = count;
  }
  return fs;
}

}  // namespace cmkfs::fs::view
