// cmkfs cat and cmkfs export: one file, or a subtree, out of a store without serving it (a backup,
// say), with its key; through the mountpoint when the store is mounted. Names from the store are
// checked before they name anything on the host, and nothing written is followed.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <ostream>

#include "fs/admin/admin.h"
#include "fs/admin/tree.h"
#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

namespace stdfs = std::filesystem;

Status sys(const std::string& what) { return Status::IOError(errno, what + ": " + std::strerror(errno)); }

bool safe_name(const std::string& n) { return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos; }

std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "/" + b; }

struct Exporter {
  Exporter(StoreTree& t, std::string dest) : tree(t), dest_root(std::move(dest)) {}
  StoreTree& tree;
  std::string dest_root;  // absolute
  bool as_root = ::geteuid() == 0;
  std::map<uint64_t, std::string> linked;  // inode -> its first exported path (hard links)
  uint64_t files = 0, dirs = 0, links = 0, bytes = 0, skipped = 0;

  // Owner, mode and times of what `name` in `dirfd` now is (fd >= 0: through it).
  Status finish(int dirfd, const std::string& name, int fd, const TreeStat& st) {
    struct timespec times[2] = {st.atime, st.mtime};
    if (S_ISLNK(st.mode)) {
      if (as_root && ::fchownat(dirfd, name.c_str(), st.uid, st.gid, AT_SYMLINK_NOFOLLOW) != 0) return sys("chown " + name);
      if (::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) return sys("utimensat " + name);
      return Status::Ok();
    }
    if (as_root && ::fchown(fd, st.uid, st.gid) != 0) return sys("chown " + name);
    if (::fchmod(fd, st.mode & 07777) != 0) return sys("chmod " + name);
    if (::futimens(fd, times) != 0) return sys("utimens " + name);
    return Status::Ok();
  }

  Status entry(const std::string& src, int dirfd, const std::string& name, const std::string& rel) {
    auto st = tree.stat(src);
    if (!st.ok()) return st.status();
    if (S_ISREG(st->mode) && st->nlink > 1) {
      auto first = linked.find(st->ino);
      if (first != linked.end()) {
        if (::linkat(AT_FDCWD, (dest_root + "/" + first->second).c_str(), dirfd, name.c_str(), 0) != 0) {
          return sys("link " + rel);
        }
        ++links;
        return Status::Ok();
      }
      linked[st->ino] = rel;
    }
    if (S_ISREG(st->mode)) {
      int fd = ::openat(dirfd, name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) return sys("create " + rel);
      Status s = tree.read(src, [&](crypto::Bytes b) {
        for (size_t done = 0; done < b.size();) {
          ssize_t n = ::write(fd, b.data() + done, b.size() - done);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return sys("write " + rel);
          done += static_cast<size_t>(n);
        }
        bytes += b.size();
        return Status::Ok();
      });
      if (s.ok() && ::fsync(fd) != 0) s = sys("fsync " + rel);
      if (s.ok()) s = finish(dirfd, name, fd, *st);
      ::close(fd);
      ++files;
      return s;
    }
    if (S_ISLNK(st->mode)) {
      if (::symlinkat(st->symlink.c_str(), dirfd, name.c_str()) != 0) return sys("symlink " + rel);
      ++files;
      return finish(dirfd, name, -1, *st);
    }
    if (S_ISDIR(st->mode)) {
      if (::mkdirat(dirfd, name.c_str(), 0700) != 0) return sys("mkdir " + rel);
      int fd = ::openat(dirfd, name.c_str(), O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
      if (fd < 0) return sys("open " + rel);
      ++dirs;
      auto names = tree.list(src);
      Status s = names.status();
      for (const auto& n : names.ok() ? *names : std::vector<std::string>{}) {
        if (!s.ok()) break;
        if (!safe_name(n)) {
          ++skipped;
          continue;
        }
        s = entry(join(src, n), fd, n, join(rel, n));
      }
      if (s.ok()) s = finish(dirfd, name, fd, *st);  // after its entries: they change its times
      ::close(fd);
      return s;
    }
    // Devices and FIFOs: as root, made again; otherwise left out.
    if (!as_root || ::mknodat(dirfd, name.c_str(), st->mode, static_cast<dev_t>(st->rdev)) != 0) {
      ++skipped;
      return Status::Ok();
    }
    ++files;
    struct timespec times[2] = {st->atime, st->mtime};
    if (::fchownat(dirfd, name.c_str(), st->uid, st->gid, AT_SYMLINK_NOFOLLOW) != 0 ||
        ::fchmodat(dirfd, name.c_str(), st->mode & 07777, 0) != 0 ||
        ::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return sys("attributes of " + rel);
    }
    return Status::Ok();
  }
};

std::string clean(std::string path) {
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  while (!path.empty() && path.back() == '/') path.pop_back();
  return path;
}

}  // namespace

int run_cat(const std::string& target, const std::string& mountpoint, const std::string& path, std::ostream& out,
            std::ostream& err) {
  int code = kExitOk;
  auto tree = open_tree(target, mountpoint, "cat", err, &code);
  if (!tree) return code;
  std::string p = clean(path);
  auto st = tree->stat(p);
  Status s = st.status();
  if (s.ok() && S_ISLNK(st->mode)) s = Status(EINVAL, path + " is a symbolic link to " + st->symlink);
  if (s.ok() && S_ISDIR(st->mode)) s = Status(EISDIR, path + " is a directory (cmkfs export copies a tree)");
  if (s.ok()) {
    s = tree->read(p, [&](crypto::Bytes b) {
      out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
      return out ? Status::Ok() : Status(EIO, "writing to the output failed");
    });
  }
  if (!s.ok()) return err << "cmkfs: " << s.message() << "\n", s.code() == EIO ? kExitNotAStore : kExitError;
  out.flush();
  return kExitOk;
}

int run_export(const std::string& target, const std::string& mountpoint, const std::string& path,
               const std::string& dest, std::ostream& out, std::ostream& err) {
  int code = kExitOk;
  std::error_code ec;
  stdfs::path d = stdfs::absolute(dest, ec).lexically_normal();
  if (d.filename().empty()) d = d.parent_path();
  if (stdfs::exists(stdfs::symlink_status(d, ec))) {
    return err << "cmkfs: " << dest << " exists; export makes it\n", kExitUsage;
  }
  auto tree = open_tree(target, mountpoint, "export", err, &code);
  if (!tree) return code;
  int parent = ::open(d.parent_path().c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (parent < 0) return err << "cmkfs: " << d.parent_path().string() << ": " << std::strerror(errno) << "\n", kExitError;
  Exporter x(*tree, d.string());
  Status s = x.entry(clean(path), parent, d.filename().string(), "");
  ::close(parent);
  if (!s.ok()) return err << "cmkfs: " << s.message() << "\n", s.code() == EIO ? kExitNotAStore : kExitError;
  out << "exported " << x.files << " files, " << x.dirs << " directories, " << x.links << " hard links, " << x.bytes
      << " bytes to " << d.string();
  if (x.skipped) out << " (" << x.skipped << " entries left out: devices or FIFOs without root, or unsafe names)";
  out << "\n";
  return kExitOk;
}

}  // namespace cmkfs::fs
