#include "fs/view/view.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <semaphore>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"
#include "fs/view/rootfs.h"
#include "fs/view/store_walk.h"

namespace cmkfs::fs {

using view::InodeRef;

namespace {

constexpr size_t kMaxEntries = 1 << 20;  // per directory scanned
constexpr int kMaxRepositoryDepth = 16;  // nested repository components
constexpr uint64_t kMaxLinkSize = 256;   // a link file holds one digest
constexpr int kMaxLayoutDepth = 4;       // OCI layouts are looked for this far below the root
constexpr size_t kMaxLayoutDirs = 4096;  // ... in at most this many directories per scan

std::string join(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  return std::string(a) + "/" + std::string(b);
}

std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> parts;
  while (!path.empty()) {
    size_t slash = path.find('/');
    parts.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

// The digest in a registry link file under `dir`, or nullopt.
std::optional<oci::Digest> read_link(Filesystem& fs, const InodeRef& dir, std::string_view rel) {
  InodeRef file;
  std::string text;
  if (view::walk(fs, dir, rel, &file) != 0 || view::read_small(fs, file, kMaxLinkSize, &text) != 0) return std::nullopt;
  return oci::parse_digest(text);
}

}  // namespace

// What a view path names: a directory of repositories ("namespace"), an image, an image's
// layers directory, a blob, or an entry of an image's rootfs/.
struct RegistryView::Node {
  enum class Kind { kNamespace, kImage, kLayers, kBlob, kRootfs } kind = Kind::kNamespace;
  std::string ns;       // kNamespace: its path in the catalog; kRootfs: its path in the rootfs
  oci::Digest digest;   // kImage, kLayers, kRootfs: the manifest; kBlob: the blob
  std::string layout;   // where the blobs are: "" the registry, else an OCI layout's directory
};

struct RegistryView::Catalog {
  struct ImageRef {
    oci::Digest digest;  // the manifest
    std::string layout;  // "" the registry, else the OCI layout holding its blobs
  };
  // Catalog directory ("" is the top) -> entry name -> an image, or nullopt for a nested
  // namespace.
  std::map<std::string, std::map<std::string, std::optional<ImageRef>>> dirs;
  // Every enclosing namespace of `ns`, up to the top.
  void add_namespaces(const std::string& ns) {
    for (std::string p = ns; !p.empty();) {
      size_t s = p.rfind('/');
      std::string parent = s == std::string::npos ? "" : p.substr(0, s);
      dirs[parent].emplace(s == std::string::npos ? p : p.substr(s + 1), std::nullopt);
      p = parent;
    }
  }
};

struct RegistryView::Image {
  oci::Manifest manifest;
  std::vector<std::pair<std::string, oci::Digest>> platforms;  // an index's per-platform names
};

struct RegistryView::File {
  InodeRef blob;
  Handle* handle = nullptr;
  // A rootfs/ file: its bytes are [offset, offset + size) of the layer's decompressed stream.
  std::shared_ptr<oci::LayerIndex> layer;
  uint64_t offset = 0, size = 0;
  // Where its last read stopped in a compressed layer; the kernel's reads of one file (the
  // reader's and its readahead) take turns with it.
  oci::DecoderCursor cursor;
};

namespace {

// The compressed stream of a blob open in `fs`.
oci::ReadAt blob_reader(Filesystem& fs, Handle* h) {
  return [&fs, h](uint64_t off, uint8_t* buf, size_t len, size_t* n) {
    int err = fs.read(h, off, crypto::MutableBytes(buf, len), n);
    return err == 0 ? Status::Ok() : Status(err, "reading a layer blob");
  };
}

// Layer indexes and image trees kept beyond this are dropped (and rebuilt when used again).
constexpr size_t kMaxLayerMemory = size_t{512} << 20;
// More than runtimes accept (overlayfs stacks up to 128 or so); bounds the work one image makes.
constexpr size_t kMaxLayers = 256;
// An image whose layers failed to build is not tried again sooner (a bomb takes minutes each).
constexpr auto kRetryUnbuildable = std::chrono::seconds(60);
// Layer indexes built at once, process-wide: each inflates up to 64 GiB and keeps up to 128 MiB
// of access points while it builds; more than the cores only adds memory, not speed.
constexpr std::ptrdiff_t kMaxLayerBuilds = 2;
std::counting_semaphore<kMaxLayerBuilds> layer_builds(kMaxLayerBuilds);
struct LayerBuildSlot {
  LayerBuildSlot() { layer_builds.acquire(); }
  ~LayerBuildSlot() { layer_builds.release(); }
};

}  // namespace

RegistryView::RegistryView(Filesystem& fs, Keyring& keyring, ViewOptions options)
    : fs_(fs), keyring_(keyring), options_(std::move(options)) {
  paths_[1] = InodeEntry{"", 1, {}};  // the view's root, never forgotten
  inos_[""] = 1;
  std::string r = options_.registry_root;
  while (!r.empty() && r.front() == '/') r.erase(0, 1);
  while (!r.empty() && r.back() == '/') r.pop_back();
  options_.registry_root = r;
}

RegistryView::~RegistryView() = default;

std::string RegistryView::registry_root() {
  (void)catalog();
  std::lock_guard<std::mutex> g(mu_);
  return root_;
}

std::vector<uint64_t> RegistryView::inodes() {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<uint64_t> out;
  out.reserve(paths_.size());
  for (const auto& [ino, e] : paths_) out.push_back(ino);
  return out;
}

void RegistryView::forget(uint64_t ino, uint64_t n) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = paths_.find(ino);
  if (ino == 1 || it == paths_.end() || it->second.lookups == 0) return;
  it->second.lookups -= std::min(n, it->second.lookups);
  if (it->second.lookups == 0) it->second.idle = idle_.insert(idle_.end(), ino);
}

std::string RegistryView::blob_path(const std::string& layout, const oci::Digest& d) {
  if (!layout.empty()) return layout + "/blobs/sha256/" + d.hex;
  std::lock_guard<std::mutex> g(mu_);
  return join(root_, oci::registry_blob_path(d));
}

uint64_t RegistryView::ino_of(const std::string& path, bool lookup) {
  std::lock_guard<std::mutex> g(mu_);
  auto [it, added] = inos_.emplace(path, next_ino_);
  uint64_t ino = it->second;
  if (added) {
    ++next_ino_;
    InodeEntry& e = paths_[ino];
    e.path = path;
    e.idle = idle_.insert(idle_.end(), ino);
  }
  InodeEntry& e = paths_[ino];
  if (lookup) {
    if (e.lookups++ == 0 && ino != 1) idle_.erase(e.idle);
  } else if (e.lookups == 0 && ino != 1) {
    idle_.splice(idle_.end(), idle_, e.idle);  // used just now: the last to go
  }
  while (idle_.size() > options_.idle_inodes) {
    auto gone = paths_.find(idle_.front());
    inos_.erase(gone->second.path);
    paths_.erase(gone);
    idle_.pop_front();
  }
  return ino;
}

// Scans the registry's link files into a new catalog, at most once per refresh interval.
std::shared_ptr<const RegistryView::Catalog> RegistryView::catalog() {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (catalog_ && std::chrono::steady_clock::now() - scanned_at_ < options_.refresh) return catalog_;
  }
  std::lock_guard<std::mutex> scanning(scan_mu_);
  {
    std::lock_guard<std::mutex> g(mu_);  // another thread may have scanned meanwhile
    if (catalog_ && std::chrono::steady_clock::now() - scanned_at_ < options_.refresh) return catalog_;
  }
  auto cat = std::make_shared<Catalog>();
  cat->dirs[""];
  std::string root = find_root();
  InodeRef repos;
  if (!root.empty() || options_.registry_root.empty()) {
    if (view::walk_from_root(fs_, join(root == "." ? "" : root, std::string(oci::kRegistryDir) + "/repositories"), &repos) == 0) {
      scan_repositories(repos, "", 0, cat.get());
    }
  }
  InodeRef top;
  size_t budget = kMaxLayoutDirs;
  if (view::walk_from_root(fs_, "", &top) == 0) {
    scan_layouts(top, "", 0, &budget, join(root == "." ? "" : root, "docker"), cat.get());
  }
  std::lock_guard<std::mutex> g(mu_);
  root_ = root == "." ? "" : root;
  catalog_ = cat;
  scanned_at_ = std::chrono::steady_clock::now();
  return catalog_;
}

// The registry root relative to the store's root: as configured, else the first directory
// (breadth first, three levels deep) that holds docker/registry/v2. "." for the store's root,
// "" when there is none.
std::string RegistryView::find_root() {
  if (!options_.registry_root.empty()) return options_.registry_root;
  std::vector<std::string> level = {""};
  for (int depth = 0; depth <= 3 && !level.empty(); ++depth) {
    std::vector<std::string> next;
    for (const auto& dir : level) {
      InodeRef ref;
      if (view::walk_from_root(fs_, join(dir, oci::kRegistryDir), &ref) == 0 && S_ISDIR(ref.rec().mode)) {
        return dir.empty() ? "." : dir;
      }
      InodeRef d;
      std::vector<std::pair<std::string, uint32_t>> entries;
      if (view::walk_from_root(fs_, dir, &d) != 0 || view::list(fs_, d.ino(), 64, &entries) != 0) continue;
      for (const auto& [name, type] : entries) {
        if (type == S_IFDIR && next.size() < 256) next.push_back(join(dir, name));
      }
    }
    level = std::move(next);
  }
  return "";
}

// Adds every repository at or below `dir` (whose repository path is `repo`) to the catalog.
void RegistryView::scan_repositories(const InodeRef& dir, const std::string& repo, int depth, Catalog* cat) {
  std::vector<std::pair<std::string, uint32_t>> entries;
  if (view::list(fs_, dir.ino(), kMaxEntries, &entries) != 0) return;
  bool is_repo = false;
  for (const auto& [name, type] : entries) {
    if (name == "_manifests" && type == S_IFDIR) is_repo = !repo.empty();
  }
  if (is_repo) add_repository(dir, repo, cat);
  if (depth >= kMaxRepositoryDepth) return;
  for (const auto& [name, type] : entries) {
    if (type != S_IFDIR || !oci::valid_repository_component(name)) continue;
    InodeRef child;
    if (view::walk(fs_, dir, name, &child) == 0) scan_repositories(child, join(repo, name), depth + 1, cat);
  }
}

void RegistryView::add_repository(const InodeRef& dir, const std::string& repo, Catalog* cat) {
  size_t slash = repo.rfind('/');
  std::string ns = slash == std::string::npos ? "" : repo.substr(0, slash);
  std::string leaf = slash == std::string::npos ? repo : repo.substr(slash + 1);
  auto& images = cat->dirs[ns];
  cat->add_namespaces(ns);
  std::vector<std::pair<std::string, uint32_t>> entries;
  InodeRef tags;
  if (view::walk(fs_, dir, "_manifests/tags", &tags) == 0 && view::list(fs_, tags.ino(), kMaxEntries, &entries) == 0) {
    for (const auto& [tag, type] : entries) {
      if (type != S_IFDIR || !oci::valid_tag(tag)) continue;
      if (auto d = read_link(fs_, tags, tag + "/current/link")) images[leaf + ":" + tag] = Catalog::ImageRef{*d, ""};
    }
  }
  InodeRef revisions;
  if (view::walk(fs_, dir, "_manifests/revisions/sha256", &revisions) == 0 &&
      view::list(fs_, revisions.ino(), kMaxEntries, &entries) == 0) {
    for (const auto& [hex, type] : entries) {
      if (type != S_IFDIR || !oci::is_digest_hex(hex)) continue;
      auto d = read_link(fs_, revisions, hex + "/link");
      if (d && d->hex == hex) images[leaf + "@sha256:" + hex] = Catalog::ImageRef{*d, ""};
    }
  }
}

// OCI image layouts (a directory with oci-layout and index.json, as skopeo and umoci write them)
// a few levels below the root, shown as oci/<layout path>:<ref>. The registry's own tree and
// layouts' blobs are not searched.
void RegistryView::scan_layouts(const InodeRef& dir, const std::string& path, int depth, size_t* budget,
                                const std::string& skip, Catalog* cat) {
  if (*budget == 0) return;
  --*budget;
  std::vector<std::pair<std::string, uint32_t>> entries;
  if (view::list(fs_, dir.ino(), kMaxEntries, &entries) != 0) return;
  bool layout = false, index = false;
  for (const auto& [name, type] : entries) {
    layout |= name == "oci-layout" && type == S_IFREG;
    index |= name == "index.json" && type == S_IFREG;
  }
  if (layout && index && !path.empty()) add_layout(dir, path, cat);
  if (depth >= kMaxLayoutDepth) return;
  for (const auto& [name, type] : entries) {
    std::string child = join(path, name);
    if (type != S_IFDIR || (layout && name == "blobs") || child == skip) continue;
    InodeRef sub;
    if (view::walk(fs_, dir, name, &sub) == 0) scan_layouts(sub, child, depth + 1, budget, skip, cat);
  }
}

void RegistryView::add_layout(const InodeRef& dir, const std::string& path, Catalog* cat) {
  InodeRef file;
  std::string text;
  if (view::walk(fs_, dir, "index.json", &file) != 0 || view::read_small(fs_, file, oci::kMaxManifestSize, &text) != 0) return;
  auto index = oci::parse_manifest(text);
  if (!index.ok() || index->kind != oci::Manifest::Kind::kIndex) return;
  size_t slash = path.rfind('/');
  std::string ns = join("oci", slash == std::string::npos ? "" : path.substr(0, slash));
  std::string leaf = slash == std::string::npos ? path : path.substr(slash + 1);
  cat->add_namespaces(ns);
  auto& images = cat->dirs[ns];
  for (const auto& m : index->manifests) {
    const std::string& ref = m.ref_name;
    std::string name = oci::valid_tag(ref) ? leaf + ":" + ref : leaf + "@" + m.digest.str();
    images[name] = Catalog::ImageRef{m.digest, path};
  }
}

// A manifest, read from its blob, checked against its digest and parsed; kept once it is.
Result<std::shared_ptr<const RegistryView::Image>> RegistryView::image(const oci::Digest& digest, const std::string& layout) {
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = images_.find(digest.hex);
    if (it != images_.end()) return it->second;
  }
  InodeRef blob;
  std::string bytes;
  int err = view::walk_from_root(fs_, blob_path(layout, digest), &blob);
  if (err == 0) err = view::read_small(fs_, blob, oci::kMaxManifestSize, &bytes);
  if (err != 0) return Status(err, "manifest " + digest.str());
  if (!oci::digest_matches(digest, bytes)) {
    spdlog::error("view: manifest blob {} does not match its digest", digest.str());
    return Status(EIO, "manifest " + digest.str() + " does not match its digest");
  }
  auto parsed = oci::parse_manifest(bytes);
  if (!parsed.ok()) {
    spdlog::error("view: manifest {}: {}", digest.str(), parsed.status().message());
    return Status(EIO, parsed.status().message());
  }
  auto img = std::make_shared<Image>();
  img->manifest = std::move(*parsed);
  for (const auto& m : img->manifest.manifests) {
    std::string name = m.platform.empty() ? "unknown" : m.platform;
    bool taken = std::any_of(img->platforms.begin(), img->platforms.end(), [&](const auto& p) { return p.first == name; });
    if (taken) name += "-" + m.digest.hex.substr(0, 12);
    img->platforms.emplace_back(name, m.digest);
  }
  std::lock_guard<std::mutex> g(mu_);
  images_[digest.hex] = img;
  blob_checked(digest, blob.rec(), true);
  return std::shared_ptr<const Image>(img);
}

int RegistryView::children(const Node& dir, std::vector<std::pair<std::string, Node>>* out) {
  out->clear();
  using Kind = Node::Kind;
  if (dir.kind == Kind::kNamespace) {
    auto cat = catalog();
    auto it = cat->dirs.find(dir.ns);
    if (it == cat->dirs.end()) return ENOENT;
    for (const auto& [name, digest] : it->second) {
      if (digest) out->emplace_back(name, Node{Kind::kImage, "", digest->digest, digest->layout});
      else out->emplace_back(name, Node{Kind::kNamespace, join(dir.ns, name), {}, ""});
    }
    return 0;
  }
  if (dir.kind == Kind::kBlob) return ENOTDIR;
  if (dir.kind == Kind::kRootfs) return EINVAL;  // read by name: readdir_rootfs(), child()
  auto img = image(dir.digest, dir.layout);
  if (!img.ok()) return img.status().code();
  const oci::Manifest& m = (*img)->manifest;
  if (dir.kind == Kind::kLayers) {
    for (size_t i = 0; i < m.layers.size(); ++i) {
      out->emplace_back(oci::layer_file_name(i, m.layers[i]), Node{Kind::kBlob, "", m.layers[i].digest, dir.layout});
    }
    return 0;
  }
  if (m.kind == oci::Manifest::Kind::kIndex) {
    out->emplace_back("index.json", Node{Kind::kBlob, "", dir.digest, dir.layout});
    for (const auto& [name, digest] : (*img)->platforms) out->emplace_back(name, Node{Kind::kImage, "", digest, dir.layout});
    return 0;
  }
  out->emplace_back("manifest.json", Node{Kind::kBlob, "", dir.digest, dir.layout});
  out->emplace_back("config.json", Node{Kind::kBlob, "", m.config.digest, dir.layout});
  out->emplace_back("layers", Node{Kind::kLayers, "", dir.digest, dir.layout});
  out->emplace_back("rootfs", Node{Kind::kRootfs, "", dir.digest, dir.layout});
  return 0;
}

// The entry `name` of the directory `dir`. In rootfs/ by name (directories there may be huge);
// elsewhere from the directory's list, which is short.
int RegistryView::child(const Node& dir, const std::string& name, Node* out) {
  if (dir.kind == Node::Kind::kRootfs) {
    auto fs = rootfs(dir.digest, dir.layout);
    if (!fs.ok()) return fs.status().code();
    const view::RootfsNode* n = (*fs)->find(dir.ns);
    if (n == nullptr) return ENOENT;
    if (!S_ISDIR(n->mode)) return ENOTDIR;
    if (!n->children.contains(name)) return ENOENT;
    *out = Node{Node::Kind::kRootfs, join(dir.ns, name), dir.digest, dir.layout};
    return 0;
  }
  std::vector<std::pair<std::string, Node>> entries;
  if (int err = children(dir, &entries); err != 0) return err;
  auto it = std::find_if(entries.begin(), entries.end(), [&](const auto& e) { return e.first == name; });
  if (it == entries.end()) return ENOENT;
  *out = std::move(it->second);
  return 0;
}

int RegistryView::resolve_path(const std::vector<std::string>& parts, Node* out) {
  Node node;  // the top namespace
  for (const auto& part : parts) {
    Node next;
    if (int err = child(node, part, &next); err != 0) return err;
    node = std::move(next);
  }
  *out = std::move(node);
  return 0;
}

int RegistryView::resolve(uint64_t ino, std::string* path, Node* out) {
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = paths_.find(ino);
    if (it == paths_.end()) return ESTALE;
    *path = it->second.path;
  }
  return resolve_path(split(*path), out);
}

int RegistryView::attr_of(const std::string& path, const Node& node, ViewAttr* out, bool lookup) {
  *out = ViewAttr{};
  if (node.kind == Node::Kind::kRootfs) {
    auto fs = rootfs(node.digest, node.layout);
    if (!fs.ok()) return fs.status().code();
    const view::RootfsNode* n = (*fs)->find(node.ns);
    if (n == nullptr) return ENOENT;
    rootfs_attr(path, node.ns, *n, out, lookup);
    return 0;
  }
  // The number last, once nothing can fail: a lookup that fails takes no reference.
  if (node.kind != Node::Kind::kBlob) {
    meta::InodeRecord root;
    if (int err = fs_.getattr(meta::kRootIno, &root); err != 0) return err;
    out->mode = S_IFDIR | 0555;
    out->nlink = 2;
    out->uid = root.uid;
    out->gid = root.gid;
    out->mtime = root.mtime;
  } else {
    InodeRef blob;
    if (int err = view::walk_from_root(fs_, blob_path(node.layout, node.digest), &blob); err != 0) return err;
    if (!S_ISREG(blob.rec().mode)) return EIO;
    out->mode = S_IFREG | 0444;
    out->size = blob.rec().size;
    out->uid = blob.rec().uid;
    out->gid = blob.rec().gid;
    out->mtime = blob.rec().mtime;
  }
  out->ino = ino_of(path, lookup);
  return 0;
}

int RegistryView::lookup(uint64_t parent, std::string_view name, ViewAttr* out) {
  if (!keyring_.access().ok()) return EACCES;
  std::string path;
  Node dir;
  if (int err = resolve(parent, &path, &dir); err != 0) return err;
  Node node;
  if (int err = child(dir, std::string(name), &node); err != 0) return err;
  return attr_of(join(path, name), node, out, /*lookup=*/true);
}

int RegistryView::getattr(uint64_t ino, ViewAttr* out) {
  if (!keyring_.access().ok() && ino != 1) return EACCES;
  if (ino == 1) return attr_of("", Node{}, out);
  std::string path;
  Node node;
  if (int err = resolve(ino, &path, &node); err != 0) return err;
  return attr_of(path, node, out);
}

struct RegistryView::DirCursor {
  std::mutex mu;  // the kernel sends an open directory's READDIRs one at a time; in case not
  // Not held: a tree dropped from the cache goes (an open directory falls back to walking).
  std::weak_ptr<const view::Rootfs> fs;
  const view::RootfsNode* node = nullptr;
  std::map<std::string, std::shared_ptr<view::RootfsNode>>::const_iterator next;
  uint64_t offset = 0;  // the offset of `next`
};

RegistryView::DirCursor* RegistryView::new_dir_cursor() { return new DirCursor(); }
void RegistryView::free_dir_cursor(DirCursor* c) { delete c; }

int RegistryView::readdir(uint64_t ino, uint64_t offset, const Filler& fn, DirCursor* cursor) {
  if (!keyring_.access().ok()) return EACCES;
  std::string path;
  Node dir;
  if (int err = resolve(ino, &path, &dir); err != 0) return err;
  if (dir.kind == Node::Kind::kRootfs) return readdir_rootfs(path, dir, offset, fn, cursor);
  std::vector<std::pair<std::string, Node>> entries;
  if (int err = children(dir, &entries); err != 0) return err;
  for (uint64_t i = offset; i < entries.size(); ++i) {
    uint32_t mode = entries[i].second.kind == Node::Kind::kBlob ? S_IFREG : S_IFDIR;
    if (entries[i].second.kind == Node::Kind::kRootfs) {  // an image's rootfs/: shown once it builds
      ViewAttr a;
      if (attr_of(join(path, entries[i].first), entries[i].second, &a) != 0) continue;
      if (!fn(entries[i].first, a.ino, a.mode & S_IFMT, i + 1)) break;
      continue;
    }
    if (!fn(entries[i].first, ino_of(join(path, entries[i].first)), mode, i + 1)) break;
  }
  return 0;
}

RegistryView::BlobStamp RegistryView::stamp_of(const meta::InodeRecord& rec) {
  return {rec.ino, rec.size, rec.ctime.sec * 1000000000LL + rec.ctime.nsec, to_hex(rec.file_id)};
}

void RegistryView::blob_checked(const oci::Digest& d, const meta::InodeRecord& rec, bool matches) {
  verified_[{d.hex, rec.ino}] = {stamp_of(rec), matches};
}

// A rootfs/ directory: its entries in name order, each with its own type and inode.
void RegistryView::rootfs_attr(const std::string& path, const std::string& ns, const view::RootfsNode& n, ViewAttr* out,
                               bool lookup) {
  // Hard links: every name of a node has the inode of its first.
  std::string top = path.substr(0, path.size() - ns.size());
  out->ino = ino_of(n.path == ns ? path : top + n.path, lookup);
  out->mode = n.mode;
  out->size = n.size;
  out->uid = n.uid;
  out->gid = n.gid;
  out->nlink = n.nlink;
  out->rdev = n.rdev;
  out->mtime = meta::Timespec{n.mtime, n.mtime_nsec};
}

int RegistryView::readdir_rootfs(const std::string& path, const Node& dir, uint64_t offset, const Filler& fn,
                                 DirCursor* cursor) {
  auto fs = rootfs(dir.digest, dir.layout);
  if (!fs.ok()) return fs.status().code();
  const view::RootfsNode* node = (*fs)->find(dir.ns);
  if (node == nullptr) return ENOENT;
  if (!S_ISDIR(node->mode)) return ENOTDIR;
  std::unique_lock<std::mutex> held;
  if (cursor != nullptr) held = std::unique_lock<std::mutex>(cursor->mu);
  auto it = node->children.begin();
  if (cursor != nullptr && cursor->fs.lock() == *fs && cursor->node == node && cursor->offset == offset) {
    it = cursor->next;
  } else {
    std::advance(it, std::min<uint64_t>(offset, node->children.size()));
  }
  uint64_t i = offset;
  for (; it != node->children.end(); ++it, ++i) {  // the node at hand, not found again from the root
    ViewAttr a;
    rootfs_attr(join(path, it->first), join(dir.ns, it->first), *it->second, &a, /*lookup=*/false);
    if (!fn(it->first, a.ino, a.mode & S_IFMT, i + 1)) break;
  }
  if (cursor != nullptr) cursor->fs = *fs, cursor->node = node, cursor->next = it, cursor->offset = i;
  return 0;
}

// Hashes the whole blob through `h` unless it was found to match since it last changed.
Status RegistryView::verify_blob(const oci::Digest& d, Handle* h, const meta::InodeRecord& rec) {
  auto mismatch = [&] { return Status(EIO, "blob " + d.str() + " does not match its digest"); };
  auto known = [&]() -> std::optional<bool> {  // its last check, if the blob has not changed since
    std::lock_guard<std::mutex> g(mu_);
    auto it = verified_.find({d.hex, rec.ino});
    if (it == verified_.end() || it->second.first != stamp_of(rec)) return std::nullopt;
    return it->second.second;
  };
  if (auto matched = known()) return *matched ? Status::Ok() : mismatch();
  // One hash of a blob at a time: the others wait for its answer (a layer may be gigabytes).
  auto lock = build_lock("blob " + d.hex + " " + std::to_string(rec.ino));
  std::lock_guard<std::mutex> checking(*lock);
  if (auto matched = known()) return *matched ? Status::Ok() : mismatch();
  crypto::Sha256 sha;
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < rec.size;) {
    size_t n = 0;
    if (int err = fs_.read(h, off, crypto::MutableBytes(buf.data(), buf.size()), &n); err != 0) {
      return Status(err, "reading blob " + d.str());
    }
    if (n == 0) break;
    sha.update(crypto::Bytes(buf.data(), n));
    off += n;
  }
  bool matches = to_hex(sha.finish()) == d.hex;
  if (!matches) spdlog::error("view: blob {} does not match its digest", d.str());
  std::lock_guard<std::mutex> g(mu_);
  blob_checked(d, rec, matches);
  return matches ? Status::Ok() : mismatch();
}

int RegistryView::open(uint64_t ino, int flags, File** out) {
  if (!keyring_.access().ok()) return EACCES;
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) return EROFS;
  std::string path;
  Node node;
  if (int err = resolve(ino, &path, &node); err != 0) return err;
  if (node.kind == Node::Kind::kRootfs) return open_rootfs_file(node, out);
  if (node.kind != Node::Kind::kBlob) return EISDIR;
  auto f = std::make_unique<File>();
  if (int err = view::walk_from_root(fs_, blob_path(node.layout, node.digest), &f->blob); err != 0) return err;
  if (int err = fs_.open(f->blob.ino(), O_RDONLY, &f->handle); err != 0) return err;
  Status s = verify_blob(node.digest, f->handle, f->blob.rec());
  if (!s.ok()) {
    fs_.release(f->handle);
    return s.code();
  }
  *out = f.release();
  return 0;
}

int RegistryView::open_rootfs_file(const Node& node, File** out) {
  auto fs = rootfs(node.digest, node.layout);
  if (!fs.ok()) return fs.status().code();
  const view::RootfsNode* n = (*fs)->find(node.ns);
  if (n == nullptr) return ENOENT;
  if (S_ISDIR(n->mode)) return EISDIR;
  if (!S_ISREG(n->mode)) return ENXIO;  // devices and fifos are shown, not opened
  auto img = image(node.digest, node.layout);
  if (!img.ok()) return img.status().code();
  auto f = std::make_unique<File>();
  f->layer = (*fs)->layers()[n->layer];
  f->offset = n->offset;
  f->size = n->size;
  const oci::Digest& blob = (*img)->manifest.layers[n->layer].digest;
  if (int err = view::walk_from_root(fs_, blob_path(node.layout, blob), &f->blob); err != 0) return err;
  if (f->blob.rec().size != f->layer->blob_size) return EIO;  // not the blob indexed
  if (int err = fs_.open(f->blob.ino(), O_RDONLY, &f->handle); err != 0) return err;
  // The bytes served must be the digest's: the blob indexed may have changed since, or this
  // image's layout may hold another file of the same name and size (the index is by digest).
  // Free when it is the file indexed, unchanged.
  if (Status s = verify_blob(blob, f->handle, f->blob.rec()); !s.ok()) {
    fs_.release(f->handle);
    return s.code();
  }
  *out = f.release();
  return 0;
}

int RegistryView::read(File* f, uint64_t offset, crypto::MutableBytes buf, size_t* n) {
  if (!keyring_.access().ok()) return EACCES;
  if (!f->layer) return fs_.read(f->handle, offset, buf, n);
  *n = 0;
  if (offset >= f->size) return 0;
  size_t len = static_cast<size_t>(std::min<uint64_t>(buf.size(), f->size - offset));
  Status s = f->layer->read(blob_reader(fs_, f->handle), f->offset + offset, buf.data(), len, n, &f->cursor);
  if (!s.ok()) {
    spdlog::error("view: {}", s.message());
    return s.code() == EACCES ? EACCES : EIO;
  }
  return 0;
}

int RegistryView::readlink(uint64_t ino, std::string* out) {
  if (!keyring_.access().ok()) return EACCES;
  std::string path;
  Node node;
  if (int err = resolve(ino, &path, &node); err != 0) return err;
  if (node.kind != Node::Kind::kRootfs) return EINVAL;
  auto fs = rootfs(node.digest, node.layout);
  if (!fs.ok()) return fs.status().code();
  const view::RootfsNode* n = (*fs)->find(node.ns);
  if (n == nullptr) return ENOENT;
  if (!S_ISLNK(n->mode)) return EINVAL;
  *out = n->link;
  return 0;
}

// A layer's index, built from its blob (checking its digest) on first use.
Result<std::shared_ptr<oci::LayerIndex>> RegistryView::layer_index(const oci::Digest& d, const std::string& layout) {
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = layers_.find(d.hex);
    if (it != layers_.end()) return it->second;
  }
  // One build per layer: images sharing a base layer wait for its index instead of each making one.
  auto lock = build_lock("layer " + d.hex);
  std::lock_guard<std::mutex> building(*lock);
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = layers_.find(d.hex);
    if (it != layers_.end()) return it->second;
  }
  InodeRef blob;
  Handle* h = nullptr;
  if (int err = view::walk_from_root(fs_, blob_path(layout, d), &blob); err != 0) return Status(err, "layer " + d.str());
  if (int err = fs_.open(blob.ino(), O_RDONLY, &h); err != 0) return Status(err, "layer " + d.str());
  auto t0 = std::chrono::steady_clock::now();
  Result<std::shared_ptr<oci::LayerIndex>> index = Status::Unavailable("not built");
  {
    LayerBuildSlot slot;
    index = oci::LayerIndex::build(blob_reader(fs_, h), d);
  }
  fs_.release(h);
  if (!index.ok()) {
    spdlog::error("view: {}", index.status().message());
    return index.status();
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("view: indexed layer {}: {} entries, {} bytes in {:.2f} s", d.str(), (*index)->entries.size(),
               (*index)->blob_size, secs);
  std::lock_guard<std::mutex> g(mu_);
  blob_checked(d, blob.rec(), true);  // the index build checked its digest
  layer_memory_ += (*index)->memory();
  if (layer_memory_ > kMaxLayerMemory) {  // crude, and enough: images in use are rebuilt
    layers_.clear();
    rootfs_.clear();
    layer_memory_ = (*index)->memory();
  }
  layers_[d.hex] = *index;
  return *index;
}

Result<std::shared_ptr<const view::Rootfs>> RegistryView::rootfs(const oci::Digest& manifest, const std::string& layout) {
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = rootfs_.find(manifest.hex);
    if (it != rootfs_.end()) return it->second;
  }
  auto lock = build_lock("rootfs " + manifest.hex);
  std::lock_guard<std::mutex> building(*lock);
  {
    std::lock_guard<std::mutex> g(mu_);  // built by another thread meanwhile
    auto it = rootfs_.find(manifest.hex);
    if (it != rootfs_.end()) return it->second;
  }
  auto stamps = layer_stamps(manifest, layout);
  {
    std::lock_guard<std::mutex> g(mu_);  // or failed lately, on the same blobs
    auto failed = unbuildable_.find(manifest.hex);
    if (failed != unbuildable_.end() && failed->second.layers == stamps &&
        std::chrono::steady_clock::now() - failed->second.at < kRetryUnbuildable) {
      return failed->second.error;
    }
  }
  auto built = build_rootfs(manifest, layout);
  std::lock_guard<std::mutex> g(mu_);
  // What the content made fail stays failed; a key or store error is tried again at once.
  if (!built.ok() && (built.status().code() == EIO || built.status().code() == EFBIG)) {
    unbuildable_[manifest.hex] = Unbuildable{built.status(), std::chrono::steady_clock::now(), std::move(stamps)};
  }
  if (!built.ok()) return built.status();
  unbuildable_.erase(manifest.hex);
  layer_memory_ += (*built)->memory();
  rootfs_[manifest.hex] = *built;
  return *built;
}

// The image's layer blobs as they are now (a default stamp for one that cannot be found).
std::vector<RegistryView::BlobStamp> RegistryView::layer_stamps(const oci::Digest& manifest, const std::string& layout) {
  std::vector<BlobStamp> stamps;
  auto img = image(manifest, layout);
  if (!img.ok() || (*img)->manifest.layers.size() > kMaxLayers) return stamps;  // fails at once anyway
  for (const auto& l : (*img)->manifest.layers) {
    InodeRef blob;
    stamps.push_back(view::walk_from_root(fs_, blob_path(layout, l.digest), &blob) == 0 ? stamp_of(blob.rec()) : BlobStamp{});
  }
  return stamps;
}

std::shared_ptr<std::mutex> RegistryView::build_lock(const std::string& key) {
  std::lock_guard<std::mutex> g(mu_);
  for (auto it = building_.begin(); it != building_.end();) it = it->second.expired() ? building_.erase(it) : std::next(it);
  auto& slot = building_[key];
  auto lock = slot.lock();
  if (!lock) slot = lock = std::make_shared<std::mutex>();
  return lock;
}

Result<std::shared_ptr<const view::Rootfs>> RegistryView::build_rootfs(const oci::Digest& manifest, const std::string& layout) {
  auto img = image(manifest, layout);
  if (!img.ok()) return img.status();
  if ((*img)->manifest.kind != oci::Manifest::Kind::kImage) return Status(ENOENT, "an index has no rootfs");
  if ((*img)->manifest.layers.size() > kMaxLayers) {
    return Status(EIO, "image " + manifest.str() + " has more than " + std::to_string(kMaxLayers) + " layers");
  }
  std::vector<std::shared_ptr<oci::LayerIndex>> layers;
  for (const auto& l : (*img)->manifest.layers) {
    auto index = layer_index(l.digest, layout);
    if (!index.ok()) return Status(index.status().code() == ENOTSUP ? EIO : index.status().code(), index.status().message());
    layers.push_back(*index);
  }
  auto fs = view::Rootfs::apply(layers);
  if (!fs.ok()) spdlog::error("view: image {}: {}", manifest.str(), fs.status().message());
  return fs;
}

void RegistryView::release(File* f) {
  fs_.release(f->handle);
  delete f;
}

}  // namespace cmkfs::fs
