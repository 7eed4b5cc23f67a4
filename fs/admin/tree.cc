#include "fs/admin/tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <ostream>

#include "fs/admin/offline.h"
#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {


Status errno_status(const std::string& what) { return Status::IOError(errno, what + ": " + std::strerror(errno)); }

// An unmounted store, read with its key.
class OfflineTree : public StoreTree {
 public:
  explicit OfflineTree(std::unique_ptr<OfflineStore> o) : o_(std::move(o)) {}

  Result<TreeStat> stat(const std::string& path) override {
    auto rec = record(path);
    if (!rec.ok()) return rec.status();
    TreeStat st;
    st.mode = rec->mode, st.uid = rec->uid, st.gid = rec->gid, st.size = rec->size, st.ino = rec->ino;
    st.rdev = rec->rdev, st.nlink = rec->nlink, st.symlink = rec->symlink, st.dek_generation = rec->dek_generation;
    st.atime = {static_cast<time_t>(rec->atime.sec), static_cast<long>(rec->atime.nsec)};
    st.mtime = {static_cast<time_t>(rec->mtime.sec), static_cast<long>(rec->mtime.nsec)};
    return st;
  }
  Result<std::vector<std::string>> list(const std::string& dir) override {
    auto rec = record(dir);
    if (!rec.ok()) return rec.status();
    if (!S_ISDIR(rec->mode)) return Status(ENOTDIR, dir + " is not a directory");
    auto txn = begin();
    if (!txn.ok()) return txn.status();
    std::vector<std::string> names;
    Status s = txn->list_entries(rec->ino, 0, [&](const meta::DirEntry& e) { return names.push_back(e.name), true; });
    if (!s.ok()) return s;
    return names;
  }
  Status read(const std::string& path, const std::function<Status(crypto::Bytes)>& fn) override {
    auto rec = record(path);
    if (!rec.ok()) return rec.status();
    if (!S_ISREG(rec->mode)) return Status(EINVAL, path + " is not a regular file");
    Status inner;
    Status s = read_plaintext(*o_->store, o_->keyring, *rec, [&](crypto::Bytes b) {
      if (inner.ok()) inner = fn(b);
    });
    return s.ok() ? inner : Status(s.code(), path + ": " + s.message());
  }
  bool mounted() const override { return false; }
  std::string protection() override {
    const auto& kek = o_->store->kek;
    return kek.customer_managed() ? kek.versioned_key_identifier : "the local key file";
  }

 private:
  Result<meta::Txn> begin() {
    auto access = o_->keyring.access();
    return o_->store->meta->begin(false, &access.store_keys());
  }
  Result<meta::InodeRecord> record(const std::string& path) {
    auto txn = begin();
    if (!txn.ok()) return txn.status();
    uint64_t ino = meta::kRootIno;
    for (size_t pos = 0; pos < path.size();) {
      size_t slash = path.find('/', pos);
      std::string part = path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      pos = slash == std::string::npos ? path.size() : slash + 1;
      if (part.empty() || part == ".") continue;
      if (part == "..") return Status(EINVAL, "a path with .. : " + path);
      auto dir = txn->get_inode(ino);
      if (!dir.ok()) return dir.status();
      if (!S_ISDIR(dir->mode)) return Status(ENOTDIR, path + ": a part of it is not a directory");
      auto e = txn->lookup(ino, part);
      if (!e.ok()) return e.status().code() == ENOENT ? Status(ENOENT, path + " does not exist") : e.status();
      ino = e->ino;
    }
    return txn->get_inode(ino);
  }
  std::unique_ptr<OfflineStore> o_;
};

// A mounted store, read through its mountpoint: the daemon decrypts. Every path is resolved
// below the mountpoint's descriptor with no symbolic link followed (openat2), so a directory
// swapped for a link while we walk cannot lead out of the mount.
class MountedTree : public StoreTree {
 public:
  explicit MountedTree(int root) : root_(root) {}
  ~MountedTree() override { ::close(root_); }
  Result<TreeStat> stat(const std::string& path) override {
    int fd = open_beneath(path, O_PATH | O_NOFOLLOW);
    if (fd < 0) return errno_status(path);
    struct stat s;
    TreeStat st;
    if (::fstatat(fd, "", &s, AT_EMPTY_PATH) != 0) return close_with(fd, errno_status(path));
    st.mode = s.st_mode, st.uid = s.st_uid, st.gid = s.st_gid, st.size = static_cast<uint64_t>(s.st_size);
    st.ino = s.st_ino, st.rdev = s.st_rdev, st.nlink = static_cast<uint32_t>(s.st_nlink);
    st.atime = s.st_atim, st.mtime = s.st_mtim;
    if (S_ISLNK(s.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlinkat(fd, "", buf, sizeof buf);
      if (n < 0) return close_with(fd, errno_status(path));
      st.symlink.assign(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return st;
  }
  Result<std::vector<std::string>> list(const std::string& dir) override {
    int fd = open_beneath(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return errno_status(dir);
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) return close_with(fd, errno_status(dir));
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    return names;
  }
  Status read(const std::string& path, const std::function<Status(crypto::Bytes)>& fn) override {
    int fd = open_beneath(path, O_RDONLY);
    if (fd < 0) return errno_status(path);
    std::vector<uint8_t> buf(1 << 20);
    Status s;
    for (;;) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) s = errno_status(path);
      if (n <= 0 || !s.ok()) break;
      s = fn(crypto::Bytes(buf.data(), static_cast<size_t>(n)));
      if (!s.ok()) break;
    }
    ::close(fd);
    return s;
  }
  bool mounted() const override { return true; }
  std::string protection() override { return ""; }

 private:
  int open_beneath(const std::string& path, uint64_t flags) const {
    open_how how{};
    how.flags = flags | O_CLOEXEC | O_NOFOLLOW;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    std::string p = path.empty() ? "." : path;
    return static_cast<int>(::syscall(SYS_openat2, root_, p.c_str(), &how, sizeof how));
  }
  template <typename T>
  static T close_with(int fd, T result) {
    ::close(fd);
    return result;
  }
  int root_;
};

}  // namespace

Result<std::string> StoreTree::read_small(const std::string& path, uint64_t max) {
  auto st = stat(path);
  if (!st.ok()) return st.status();
  if (!S_ISREG(st->mode)) return Status(EINVAL, path + " is not a regular file");
  if (st->size > max) return Status(EFBIG, path + " is larger than " + std::to_string(max) + " bytes");
  std::string out;
  Status s = read(path, [&](crypto::Bytes b) {
    out.append(b.begin(), b.end());
    return out.size() > max ? Status(EFBIG, path + " grew") : Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

std::unique_ptr<StoreTree> open_tree(const std::string& target, const std::string& mountpoint, const char* reason,
                                     std::ostream& err, int* exit_code) {
  if (!mountpoint.empty()) {
    int root = ::open(mountpoint.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0) {
      err << "cmkfs: " << mountpoint << ": " << std::strerror(errno) << "\n";
      *exit_code = kExitMount;
      return nullptr;
    }
    return std::make_unique<MountedTree>(root);
  }
  auto o = open_offline(target, reason, err, exit_code);
  if (!o) return nullptr;
  return std::make_unique<OfflineTree>(std::move(o));
}

}  // namespace cmkfs::fs
