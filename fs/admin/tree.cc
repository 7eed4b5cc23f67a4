#include "fs/admin/tree.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <ostream>

#include "fs/admin/offline.h"

namespace cmkfs::fs {
namespace {

namespace stdfs = std::filesystem;

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
    return kek.provider == keyclient::ProviderKind::kVault ? kek.versioned_key_identifier : "the local key file";
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

// A mounted store, read through its mountpoint: the daemon decrypts.
class MountedTree : public StoreTree {
 public:
  explicit MountedTree(std::string mnt) : mnt_(std::move(mnt)) {}
  Result<TreeStat> stat(const std::string& path) override {
    std::string p = at(path);
    struct stat s;
    if (::lstat(p.c_str(), &s) != 0) return errno_status(p);
    TreeStat st;
    st.mode = s.st_mode, st.uid = s.st_uid, st.gid = s.st_gid, st.size = static_cast<uint64_t>(s.st_size);
    st.ino = s.st_ino, st.rdev = s.st_rdev, st.nlink = static_cast<uint32_t>(s.st_nlink);
    st.atime = s.st_atim, st.mtime = s.st_mtim;
    if (S_ISLNK(s.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
      if (n < 0) return errno_status(p);
      st.symlink.assign(buf, static_cast<size_t>(n));
    }
    return st;
  }
  Result<std::vector<std::string>> list(const std::string& dir) override {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : stdfs::directory_iterator(at(dir), ec)) names.push_back(e.path().filename());
    if (ec) return Status(ec.value(), at(dir) + ": " + ec.message());
    return names;
  }
  Status read(const std::string& path, const std::function<Status(crypto::Bytes)>& fn) override {
    std::string p = at(path);
    int fd = ::open(p.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno_status(p);
    std::vector<uint8_t> buf(1 << 20);
    Status s;
    for (;;) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) s = errno_status(p);
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
  std::string at(const std::string& path) const { return path.empty() ? mnt_ : mnt_ + "/" + path; }
  std::string mnt_;
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
  if (!mountpoint.empty()) return std::make_unique<MountedTree>(mountpoint);
  auto o = open_offline(target, reason, err, exit_code);
  if (!o) return nullptr;
  return std::make_unique<OfflineTree>(std::move(o));
}

}  // namespace cmkfs::fs
