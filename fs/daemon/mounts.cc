// The kernel's mount table as cmkfs reads it: which stores are mounted where, and unmounting.
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <thread>

#include "fs/daemon/daemon.h"
#include "crypto/base/fd.h"
#include "fs/fuse/fuse.h"
#include "fs/store/store.h"

namespace cmkfs::fs {

namespace stdfs = std::filesystem;

namespace {

// A path as the mount table names mountpoints: absolute, normalised, no trailing '/'.
std::string normalised(const std::string& path) {
  std::error_code ec;
  std::string p = stdfs::absolute(path, ec).lexically_normal().string();
  if (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The store a cmkfs mount or view serves, named by its source; nullopt for any other mount, and
// for a cmkfs one not made by a daemon of this user or root unless `any_owner`.
std::optional<ServedMount> served(const MountEntry& m, bool any_owner = false) {
  if (!any_owner && !cmkfs_mount_of(m, ::geteuid())) return std::nullopt;
  if (m.source.rfind("cmkfs:", 0) == 0) return ServedMount{m.source.substr(6), m.target, false};
  if (m.source.rfind("cmkfs-view:", 0) == 0) return ServedMount{m.source.substr(11), m.target, true};
  return std::nullopt;
}

// An unprivileged user's unmount, through the setuid helper; the mountpoint goes as one argument,
// never through a shell.
Status run_fusermount(const std::string& mp) {
  std::vector<std::string> args = {"fusermount3", "-u", "--", mp};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, "fusermount3", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return Status(EPERM, "cannot run fusermount3: " + std::string(std::strerror(rc)));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Status(EPERM, "fusermount3 -u " + mp + " failed");
  return Status::Ok();
}

// Whether a mount of `source` is at `mp`.
bool listed(const std::string& mp, const std::string& source) {
  for (const auto& m : current_mounts()) {
    if (m.target == mp && m.source == source) return true;
  }
  return false;
}

// What the unmounting process (start_umount) says through its pipe: kStarted just before its
// umount2, then umount2's errno (0: unmounted).
constexpr int kStarted = -1;

// umount2(mp) in a grandchild that nobody waits for. Why a process of its own: the kernel
// detaches the mount and aborts its FUSE connection (the daemon flushes, lets go of the store
// and exits), and only then, still inside the unmounting process's umount2, frees every dentry
// and inode it cached for the mount: seconds at a million files (README, Scale). That is the
// kernel's memory, not the store's, and need not keep the user waiting. The grandchild checks
// that `mp` is still the mount of device `dev` (major:minor), so that it cannot unmount a later
// one if another unmount won the race; it leaves no zombie behind in a caller that lives on, and
// holds nothing of the caller's: no descriptor (a shell or ctest waits for every holder of its
// pipes), no working directory, no process group (a ^C of the command does not stop it).
Result<Fd> start_umount(const std::string& mp, const std::string& dev) {
  unsigned major = 0, minor = 0;
  auto colon = dev.find(':');
  if (colon == std::string::npos || std::from_chars(dev.data(), dev.data() + colon, major).ec != std::errc() ||
      std::from_chars(dev.data() + colon + 1, dev.data() + dev.size(), minor).ec != std::errc()) {
    return Status::IOError(EINVAL, "the mount table names no device for " + mp);
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::IOError(errno, std::string("pipe: ") + std::strerror(errno));
  Fd said(fds[0]), says(fds[1]);  // this process's copy of the write end closes on return
  // Split before the fork: the child may only make async-signal-safe calls.
  auto slash = mp.rfind('/');
  if (slash == std::string::npos || slash + 1 == mp.size()) return Status::IOError(EINVAL, mp + " is not a mountpoint's path");
  const std::string parent = slash == 0 ? "/" : mp.substr(0, slash), name = mp.substr(slash + 1);
  pid_t child = ::fork();
  if (child < 0) return Status::IOError(errno, std::string("fork: ") + std::strerror(errno));
  if (child == 0) {  // only async-signal-safe calls from here: the caller may have threads
    if (::_Fork() != 0) _exit(0);
    int w = ::fcntl(fds[1], F_DUPFD, 3);
    int null = ::open("/dev/null", O_RDWR);
    if (w < 0 || null < 0 || ::setsid() < 0) _exit(1);  // its working directory: set below
    ::dup2(null, 0), ::dup2(null, 1), ::dup2(null, 2);
    if ((w > 3 && ::close_range(3, w - 1, 0) != 0) || ::close_range(w + 1, ~0U, 0) != 0) _exit(1);
    auto say = [w](int v) { (void)!::write(w, &v, sizeof v); };
    // The directory above the mountpoint is walked once and made the working directory; the
    // check and the unmount then name the mountpoint from it, so a directory on the way renamed
    // and a link put in its place meanwhile (by whoever owns one) cannot have root unmount
    // another mount. (An open descriptor of the mount itself would make it busy.) The device
    // comes from the kernel's cached attributes: nothing asked of the daemon, which may be dead.
    int above = ::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (above < 0 || ::fchdir(above) != 0) {
      say(errno);
      _exit(0);
    }
    struct statx st;
    if (::statx(AT_FDCWD, name.c_str(), AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT | AT_SYMLINK_NOFOLLOW, 0, &st) == 0 &&
        (st.stx_dev_major != major || st.stx_dev_minor != minor)) {
      say(EINVAL);
      _exit(0);
    }
    say(kStarted);
    say(::umount2(name.c_str(), UMOUNT_NOFOLLOW) == 0 ? 0 : errno);
    _exit(0);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return said;
}

// The next thing said on `fd` within `ms`: kStarted or an errno; nullopt when nothing was;
// EOF (the process gone without a word more) as `ended`.
std::optional<int> next_said(int fd, int ms, bool& ended) {
  struct pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return std::nullopt;
  int v = 0;
  ssize_t n = ::read(fd, &v, sizeof v);
  if (n == static_cast<ssize_t>(sizeof v)) return v;
  ended = n == 0;
  return std::nullopt;
}

// Whether another process holds `fd`'s lock (the store's, which its daemon holds until it exits).
bool locked_by_another(int fd) {
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) return true;
  ::flock(fd, LOCK_UN);
  return false;
}

}  // namespace

std::string mounted_store(const std::string& mountpoint) {
  std::string mp = normalised(mountpoint), store;
  for (const auto& m : current_mounts()) {  // the topmost mount there decides
    if (m.target != mp) continue;
    auto s = served(m);
    store = s && !s->view ? s->store : "";
  }
  return store;
}

std::vector<ServedMount> served_mounts() {
  std::vector<ServedMount> out;
  for (const auto& m : current_mounts()) {
    if (auto s = served(m)) out.push_back(*s);
  }
  return out;
}

std::string serving_mountpoint(const std::string& target) {
  std::string abs = normalised(target);
  if (!mounted_store(abs).empty()) return abs;
  std::error_code ec;
  std::string store = stdfs::canonical(target, ec).string();
  if (ec) return "";
  for (const auto& s : served_mounts()) {
    if (!s.view && s.store == store) return s.mountpoint;
  }
  return "";
}

Status run_umount(const std::string& mp_arg, std::ostream& out) {
  std::string mp = normalised(mp_arg), store, source, device;
  bool found = false, view = false, trusted = false;
  for (const auto& m : current_mounts()) {  // the topmost mount there decides
    if (m.target != mp) continue;
    found = true;
    auto s = served(m, /*any_owner=*/true);
    store = s ? s->store : "", view = s && s->view, source = m.source, device = m.device;
    trusted = cmkfs_mount_of(m, ::geteuid());  // its source names a store: another user's names anything
  }
  if (!found) return Status(EINVAL, mp + " is not mounted");
  if (store.empty()) return Status(EINVAL, mp + " is not a cmkfs mount");
  // A view beside a mount: its daemon serves on. A view alone: its daemon lets go of the store.
  bool store_still_mounted = false;
  for (const auto& m : current_mounts()) store_still_mounted |= view && m.source == "cmkfs:" + store;
  auto unmounting = start_umount(mp, device);
  if (!unmounting.ok()) return unmounting.status();
  // Opened after the fork: the unmounting process must not hold it. A daemon that holds it (a
  // follower holds none) has flushed and exited once it is free.
  Fd lock(store_still_mounted || !trusted
             ? -1
             : ::open(StorePaths::of(store).lock.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  struct stat lock_st;
  if (lock.get() >= 0 && (::fstat(lock.get(), &lock_st) != 0 || !S_ISREG(lock_st.st_mode))) lock.reset();
  bool daemon_holds_lock = lock.get() >= 0 && locked_by_another(lock.get());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool started = false, ended = false;
  std::optional<int> err;
  while (!err && !ended && std::chrono::steady_clock::now() < deadline) {
    auto said = next_said(unmounting->get(), 20, ended);
    if (said == kStarted) started = true;
    else if (said) err = *said;
    else if (started && daemon_holds_lock && !listed(mp, source) && !locked_by_another(lock.get())) {
      out << "unmounted " << mp << "\n";  // the kernel is still freeing what it cached for the mount
      return Status::Ok();
    }
  }
  if (ended && !err) {  // the unmounting process died: the table tells, or it never began
    if (started) err = listed(mp, source) ? EIO : 0;
    else err = ::umount2(mp.c_str(), UMOUNT_NOFOLLOW) == 0 ? 0 : errno;
  }
  if (!err) return Status(ETIMEDOUT, "umount " + mp + " did not return within 120 s");
  if (*err == EBUSY) return Status(EBUSY, mp + " is busy: files are open or a process is using it");
  if (*err == EPERM) {
    Status s = run_fusermount(mp);
    if (!s.ok()) return s;
  } else if (*err != 0) {
    return Status::IOError(*err, "umount " + mp + ": " + std::strerror(*err));
  }
  while (lock.get() >= 0 && locked_by_another(lock.get())) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(ETIMEDOUT, "unmounted " + mp + ", but its daemon has not let go of the store within 120 s "
                                                   "(still flushing? its log says)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  out << "unmounted " << mp << "\n";
  return Status::Ok();
}

}  // namespace cmkfs::fs
