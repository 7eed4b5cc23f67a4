#include "fs/store/private_fs.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "crypto/crypto.h"

namespace cmkfs::fs {
namespace {

Status open_error(int err, const std::string& shown) {
  if (err == ELOOP) return Status::AccessDenied(shown + " is a symbolic link; cmkfs follows none in a store");
  if (err == ENOTDIR) return Status::AccessDenied(shown + " is not a directory");
  if (err == ENOENT) return Status::NotFound(shown + " does not exist");
  if (err == EEXIST) return Status::Exists(shown + " already exists (something else made it meanwhile)");
  return Status::IOError(err, "cannot open " + shown + ": " + std::strerror(err));
}

}  // namespace

Status check_private(const struct stat& st, const std::string& shown, bool dir, bool secret) {
  // Asked once: cmkfs never changes its user, and every object's open checks it.
  static const uid_t euid = ::geteuid();
  if (st.st_uid != euid) {
    return Status::AccessDenied(shown + " is not owned by the user running cmkfs; if it is yours, run: chown -R " +
                                std::to_string(euid) + " " + shown);
  }
  mode_t forbidden = secret ? 077 : 022;
  if ((st.st_mode & forbidden) != 0) {
    return Status::AccessDenied(shown + " is open to other users; run: chmod " +
                                (secret ? std::string(dir ? "700 " : "600 ") : std::string("go-w ")) + shown);
  }
  return Status::Ok();
}

Result<Fd> open_private_dir(int at, const std::string& name, const std::string& shown) {
  Fd fd(::openat(at, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) return open_error(errno, shown);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::IOError(errno, "cannot stat " + shown);
  CMKFS_RETURN_IF_ERROR(check_private(st, shown, true, false));
  return fd;
}

Result<Fd> open_private_file(int at, const std::string& name, int flags, const std::string& shown, struct stat* opened) {
  // O_NONBLOCK: a FIFO planted in a file's place must not hang the open.
  Fd fd(::openat(at, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600));
  if (fd.get() < 0) return open_error(errno, shown);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::IOError(errno, "cannot stat " + shown);
  if (!S_ISREG(st.st_mode)) return Status::AccessDenied(shown + " is not a regular file");
  if (st.st_nlink != 1) return Status::AccessDenied(shown + " has other names (hard links); cmkfs refuses it");
  CMKFS_RETURN_IF_ERROR(check_private(st, shown, false, false));
  if (opened != nullptr) *opened = st;
  // F_SETFL changes only the status flags (O_APPEND, O_DIRECT, O_NONBLOCK...), which are the
  // caller's: no F_GETFL needed.
  if ((flags & O_NONBLOCK) == 0) ::fcntl(fd.get(), F_SETFL, flags);
  return fd;
}

Result<LinkDirectory> LinkDirectory::make(const std::vector<std::pair<std::string, int>>& links) {
  std::error_code ec;
  std::string tmp = std::filesystem::temp_directory_path(ec).string();
  if (ec) tmp = "/tmp";
  LinkDirectory d;
  std::string pattern = tmp + "/cmkfs-links-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return Status::IOError(errno, "cannot make a directory in " + tmp + ": " + std::strerror(errno));
  d.made_ = pattern;
  // Whoever else may write TMPDIR could have put a directory of theirs in its place meanwhile:
  // one not this user's own, or with links of its own (the links below are made O_EXCL).
  auto dir = open_private_dir(AT_FDCWD, pattern, pattern);
  if (!dir.ok()) return dir.status();
  struct stat st;
  if (::fstat(dir->get(), &st) != 0) return Status::IOError(errno, "cannot stat " + pattern);
  CMKFS_RETURN_IF_ERROR(check_private(st, pattern, /*dir=*/true, /*secret=*/true));  // 0700, as made
  d.dir_ = std::move(*dir);
  // thread-self: this thread's descriptors, whichever thread opens the files and whatever the
  // main thread has done meanwhile.
  d.path_ = "/proc/thread-self/fd/" + std::to_string(d.dir_.get());
  for (const auto& [name, fd] : links) {
    std::string target = "/proc/thread-self/fd/" + std::to_string(fd);
    if (::symlinkat(target.c_str(), d.dir_.get(), name.c_str()) != 0) {
      return Status::IOError(errno, "cannot make a link in " + pattern + ": " + std::strerror(errno));
    }
    d.names_.push_back(name);
  }
  return d;
}

LinkDirectory::~LinkDirectory() {
  if (dir_.get() >= 0) {
    for (const auto& name : names_) ::unlinkat(dir_.get(), name.c_str(), 0);
  }
  // By name: only an empty directory goes, so a directory swapped in meanwhile loses nothing.
  if (!made_.empty()) ::rmdir(made_.c_str());
}

Result<std::string> read_secret_file(const std::string& path, size_t max) {
  auto fd = open_private_file(AT_FDCWD, path, O_RDONLY, path);
  if (!fd.ok()) return fd.status();
  struct stat st;
  if (::fstat(fd->get(), &st) != 0) return Status::IOError(errno, "cannot stat " + path);
  CMKFS_RETURN_IF_ERROR(check_private(st, path, /*dir=*/false, /*secret=*/true));
  if (static_cast<uint64_t>(st.st_size) > max) return Status(EFBIG, path + " is larger than " + std::to_string(max) + " bytes");
  std::string s(max + 1, '\0');
  // Whatever was read is wiped on the way out unless it is handed back.
  struct Wipe {
    std::string* s;
    ~Wipe() { if (s != nullptr) crypto::wipe_memory(s->data(), s->size()); }
  } wipe{&s};
  size_t got = 0;
  while (got < s.size()) {
    ssize_t n = ::read(fd->get(), s.data() + got, s.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError(errno, "cannot read " + path);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > max) return Status(EFBIG, path + " is larger than " + std::to_string(max) + " bytes");
  s.resize(got);  // shrinks in place: the capacity (max + 1) is the same buffer
  wipe.s = nullptr;
  return s;
}

}  // namespace cmkfs::fs
