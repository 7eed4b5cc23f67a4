// POSIX semantics through a real mount: what a registry and common tools rely on.
#include <dirent.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cstring>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "tests/support/metrics_scrape.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/test_util.h"

namespace cmkfs::testing {
namespace {

class PosixTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    init("--chunk-size 4KiB");  // small chunks put many boundaries in small files
    mount();
  }
  // After every test, whatever it did, the store must check clean offline: link counts, names,
  // chunks and objects all agree.
  void TearDown() override {
    if (mounted) umount();
    if (!HasFailure() && stdfs::exists(store + "/meta")) {
      auto r = run(cmkfs_binary() + " fsck " + store);
      EXPECT_EQ(r.rc, 0) << r.output;
    }
    MountTest::TearDown();
  }

  static std::string bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
  void expect_sigterm_keeps_open_file(size_t size);
  void expect_files_read_back(const std::string& mount_options);
};

int open_or_die(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags, mode);
  EXPECT_GE(fd, 0) << path << ": " << std::strerror(errno);
  return fd;
}

void pwrite_all(int fd, const std::string& data, off_t off) {
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), off), static_cast<ssize_t>(data.size())) << std::strerror(errno);
}

// Files of awkward sizes read back byte for byte: from the page cache, after the kernel dropped it
// (every byte through READ), and after a remount with `mount_options`.
void PosixTest::expect_files_read_back(const std::string& mount_options) {
  std::map<std::string, std::string> files;
  for (size_t n : {0, 1, 4095, 4096, 4097, 65536 * 3 + 5, 3 << 20}) {
    files["f" + std::to_string(n)] = bytes(pattern(n, static_cast<uint32_t>(n)));
  }
  for (auto& [name, data] : files) write_file(at(name), data);
  for (auto& [name, data] : files) EXPECT_EQ(read_file(at(name)), data) << name;
  write_file("/proc/sys/vm/drop_caches", "3");
  for (auto& [name, data] : files) EXPECT_EQ(read_file(at(name)), data) << name << " after dropping caches";
  umount();
  mount(mount_options);
  for (auto& [name, data] : files) EXPECT_EQ(read_file(at(name)), data) << name << " after a remount";
}

TEST_F(PosixTest, WrittenBytesReadBackAcrossRemount) { expect_files_read_back(""); }

bool kernel_has_fuse_uring() { return ::access("/sys/module/fuse/parameters/enable_uring", F_OK) == 0; }

TEST_F(PosixTest, RequestsComeOverIoUringWhereTheKernelHasIt) {
  if (::geteuid() != 0 || !kernel_has_fuse_uring()) GTEST_SKIP() << "needs root and Linux 6.14+";
  expect_files_read_back("");
  EXPECT_NE(read_file(log).find("FUSE over io_uring"), std::string::npos) << read_file(log);
}

// The workers poll their rings briefly after a reply; once the requests stop, the daemon sleeps.
TEST_F(PosixTest, AnIdleDaemonUsesNoCpu) {
  for (int i = 0; i < 200; ++i) write_file(at("f" + std::to_string(i % 20)), "busy");
  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  auto cpu_ticks = [pid] {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stol(field);
      if (i == 15) stime = std::stol(field);
    }
    return utime + stime;
  };
  ::usleep(200000);
  long before = cpu_ticks();
  ::sleep(2);
  long used = cpu_ticks() - before;
  EXPECT_LE(used, 10) << "clock ticks of CPU in 2 idle seconds (" << ::sysconf(_SC_CLK_TCK) << " per second)";
}

TEST_F(PosixTest, WithoutIoUringRequestsComeOverDevFuse) {
  umount();
  stdfs::remove(log);
  mount("--no-io-uring");
  expect_files_read_back("--no-io-uring");
  EXPECT_EQ(read_file(log).find("FUSE over io_uring"), std::string::npos) << read_file(log);
}

TEST_F(PosixTest, OverwriteInTheMiddleKeepsTheRest) {
  std::string data = bytes(pattern(20000, 1));
  write_file(at("f"), data);
  int fd = open_or_die(at("f"), O_RDWR);
  std::string patch(5000, 'x');
  pwrite_all(fd, patch, 3000);
  data.replace(3000, 5000, patch);
  EXPECT_EQ(pread_n(fd, 30000, 0), data);
  ::close(fd);
  remount();
  EXPECT_EQ(read_file(at("f")), data);
}

TEST_F(PosixTest, TruncateDownAndUpReadsZerosInTheGrownPart) {
  std::string data = bytes(pattern(10000, 2));
  write_file(at("f"), data);
  ASSERT_EQ(::truncate(at("f").c_str(), 5000), 0);
  EXPECT_EQ(read_file(at("f")), data.substr(0, 5000));
  ASSERT_EQ(::truncate(at("f").c_str(), 20000), 0);
  EXPECT_EQ(read_file(at("f")), data.substr(0, 5000) + std::string(15000, '\0'));
  ASSERT_EQ(::truncate(at("f").c_str(), 0), 0);
  EXPECT_EQ(read_file(at("f")), "");
  remount();
  struct stat st;
  ASSERT_EQ(::stat(at("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

TEST_F(PosixTest, OTruncEmptiesTheFile) {
  write_file(at("f"), "some old content");
  write_file(at("f"), "new");
  EXPECT_EQ(read_file(at("f")), "new");
}

TEST_F(PosixTest, SparseWriteReadsZerosInTheHole) {
  int fd = open_or_die(at("sparse"), O_CREAT | O_RDWR);
  pwrite_all(fd, "head", 0);
  pwrite_all(fd, "tail", 1000000);
  ::close(fd);
  remount();
  std::string s = read_file(at("sparse"));
  ASSERT_EQ(s.size(), 1000004u);
  EXPECT_EQ(s.substr(0, 4), "head");
  EXPECT_EQ(s.substr(4, 999996), std::string(999996, '\0'));
  EXPECT_EQ(s.substr(1000000), "tail");
}

TEST_F(PosixTest, AppendModeAppends) {
  int fd = open_or_die(at("log"), O_CREAT | O_WRONLY | O_APPEND);
  for (int i = 0; i < 50; ++i) {
    std::string line = "line " + std::to_string(i) + "\n";
    ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  }
  ::close(fd);
  int fd2 = open_or_die(at("log"), O_WRONLY | O_APPEND);
  ASSERT_EQ(::pwrite(fd2, "end\n", 4, 0), 4);  // O_APPEND wins over the offset
  ::close(fd2);
  std::string s = read_file(at("log"));
  EXPECT_EQ(s.rfind("line 0\n", 0), 0u);
  EXPECT_EQ(s.substr(s.size() - 12), "line 49\nend\n");
}

TEST_F(PosixTest, OffsetsBeyondFourGiB) {
  int fd = open_or_die(at("big"), O_CREAT | O_RDWR);
  off_t off = (off_t{5} << 30) + 12345;
  pwrite_all(fd, "far away", off);
  ::close(fd);
  remount();
  fd = open_or_die(at("big"), O_RDONLY);
  EXPECT_EQ(pread_n(fd, 8, off), "far away");
  EXPECT_EQ(pread_n(fd, 4, off - 4), std::string(4, '\0'));
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, off + 8);
  ::close(fd);
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  EXPECT_NE(d, nullptr);
  if (d == nullptr) return names;
  while (auto* e = ::readdir(d)) names.push_back(e->d_name);
  ::closedir(d);
  return names;
}

TEST_F(PosixTest, MkdirRmdirAndReaddirOfThousandsOfEntries) {
  ASSERT_EQ(::mkdir(at("d").c_str(), 0755), 0);
  EXPECT_EQ(::mkdir(at("d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EEXIST);
  const int n = 3000;
  for (int i = 0; i < n; ++i) write_file(at("d/entry-" + std::to_string(i)), "x");
  auto names = list_dir(at("d"));
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(names.size(), size_t{n + 2});
  EXPECT_EQ(unique.size(), size_t{n + 2});
  EXPECT_TRUE(unique.count(".") && unique.count(".."));
  EXPECT_EQ(::rmdir(at("d").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  struct stat st;
  ASSERT_EQ(::stat(at("").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 3u);  // ".", "..", and d's ".."
}

TEST_F(PosixTest, ReaddirWhileDeletingSeesEveryRemainingEntryOnce) {
  ASSERT_EQ(::mkdir(at("d").c_str(), 0755), 0);
  for (int i = 0; i < 2000; ++i) write_file(at("d/f" + std::to_string(i)), "");
  DIR* d = ::opendir(at("d").c_str());
  ASSERT_NE(d, nullptr);
  std::multiset<std::string> seen;
  int deleted = 0;
  while (auto* e = ::readdir(d)) {
    std::string name = e->d_name;
    seen.insert(name);
    if (name[0] == 'f') {  // delete what was just listed: must not make readdir skip others
      ASSERT_EQ(::unlink(at("d/" + name).c_str()), 0);
      ++deleted;
    }
  }
  ::closedir(d);
  EXPECT_EQ(deleted, 2000);
  for (auto& name : seen) EXPECT_EQ(seen.count(name), 1u) << name;
  EXPECT_EQ(list_dir(at("d")).size(), 2u);
  EXPECT_EQ(::rmdir(at("d").c_str()), 0);
}

// An inode the kernel forgets keeps its unsaved size in memory until the next flush commits it.
// Regression: a lookup racing with that commit once loaded the older record from a stale snapshot
// (a 4096-byte file read as 0 bytes).
TEST_F(PosixTest, SizesSurviveTheKernelForgettingInodesUnderLoad) {
  for (int round = 0; round < 4; ++round) {
    std::string d = at("r" + std::to_string(round));
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0);
    for (int i = 0; i < 1500; ++i) write_file(d + "/f" + std::to_string(i), std::string(4096, 'x'));
    write_file("/proc/sys/vm/drop_caches", "3");  // the kernel forgets them all, now
    for (int i = 0; i < 1500; ++i) {
      struct stat st;
      ASSERT_EQ(::stat((d + "/f" + std::to_string(i)).c_str(), &st), 0);
      ASSERT_EQ(st.st_size, 4096) << "round " << round << " file " << i;
    }
  }
  // The last round was forgotten just now, before any flush: unmounting must commit it.
  write_file("/proc/sys/vm/drop_caches", "3");
  remount();
  for (int i = 0; i < 1500; ++i) {
    struct stat st;
    ASSERT_EQ(::stat(at("r3/f" + std::to_string(i)).c_str(), &st), 0);
    ASSERT_EQ(st.st_size, 4096) << "after remount, file " << i;
  }
}

TEST_F(PosixTest, MkdirPAndNestedPaths) {
  ASSERT_EQ(run("mkdir -p " + at("a/b/c/d/e")).rc, 0);
  write_file(at("a/b/c/d/e/f"), "deep");
  remount();
  EXPECT_EQ(read_file(at("a/b/c/d/e/f")), "deep");
  EXPECT_EQ(run("rm -rf " + at("a")).rc, 0);
  EXPECT_FALSE(stdfs::exists(at("a")));
}

TEST_F(PosixTest, RenameAcrossDirectoriesAndOverAnExistingFile) {
  ASSERT_EQ(::mkdir(at("src").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(at("dst").c_str(), 0755), 0);
  write_file(at("src/a"), "A");
  write_file(at("dst/b"), "B");
  ASSERT_EQ(::rename(at("src/a").c_str(), at("dst/b").c_str()), 0);
  EXPECT_FALSE(stdfs::exists(at("src/a")));
  EXPECT_EQ(read_file(at("dst/b")), "A");
  // A directory moves with its contents, and link counts follow.
  ASSERT_EQ(::mkdir(at("src/sub").c_str(), 0755), 0);
  write_file(at("src/sub/x"), "X");
  ASSERT_EQ(::rename(at("src/sub").c_str(), at("dst/sub").c_str()), 0);
  EXPECT_EQ(read_file(at("dst/sub/x")), "X");
  struct stat s1, s2;
  ASSERT_EQ(::stat(at("src").c_str(), &s1), 0);
  ASSERT_EQ(::stat(at("dst").c_str(), &s2), 0);
  EXPECT_EQ(s1.st_nlink, 2u);
  EXPECT_EQ(s2.st_nlink, 3u);
  // Over a non-empty directory: refused.
  ASSERT_EQ(::mkdir(at("src/sub2").c_str(), 0755), 0);
  EXPECT_EQ(::rename(at("src/sub2").c_str(), at("dst/sub").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  remount();
  EXPECT_EQ(read_file(at("dst/b")), "A");
  EXPECT_EQ(read_file(at("dst/sub/x")), "X");
}

TEST_F(PosixTest, RenameOverAFileIsAtomicForReaders) {
  write_file(at("target"), std::string(10000, 'o'));
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!stop) {
      std::string s = read_file(at("target"));
      if (s != std::string(10000, 'o') && s != std::string(10000, 'n')) ++bad;
    }
  });
  for (int i = 0; i < 200; ++i) {
    write_file(at("tmp"), std::string(10000, i % 2 ? 'n' : 'o'));
    ASSERT_EQ(::rename(at("tmp").c_str(), at("target").c_str()), 0);
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad, 0);
}

TEST_F(PosixTest, RenameNoreplaceRefusesAnExistingTarget) {
  write_file(at("a"), "A");
  write_file(at("b"), "B");
  EXPECT_NE(run("mv --no-clobber " + at("a") + " " + at("b")).rc, 128);
  EXPECT_EQ(::syscall(SYS_renameat2, AT_FDCWD, at("a").c_str(), AT_FDCWD, at("b").c_str(), RENAME_NOREPLACE), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(read_file(at("b")), "B");
}

TEST_F(PosixTest, UnlinkWhileOpenStaysReadableUntilClosed) {
  std::string data = bytes(pattern(100000, 3));
  write_file(at("f"), data);
  int fd = open_or_die(at("f"), O_RDWR);
  ASSERT_EQ(::unlink(at("f").c_str()), 0);
  EXPECT_FALSE(stdfs::exists(at("f")));
  EXPECT_EQ(pread_n(fd, data.size(), 0), data);
  pwrite_all(fd, "still writable", 0);
  EXPECT_EQ(pread_n(fd, 14, 0), "still writable");
  size_t objects_before = object_files().size();
  ::close(fd);
  // Once closed (and forgotten by the kernel) the data is gone from the backing store.
  for (int i = 0; i < 500 && object_files().size() != objects_before - 1; ++i) ::usleep(20000);
  EXPECT_EQ(object_files().size(), objects_before - 1);
}

TEST_F(PosixTest, UnlinkedOpenFileIsReapedAtNextMountAfterACrash) {
  write_file(at("f"), "orphan");
  int fd = open_or_die(at("f"), O_RDONLY);
  ASSERT_EQ(::unlink(at("f").c_str()), 0);
  ASSERT_EQ(object_files().size(), 1u);
  sync_dir(mnt);  // the unlink is on disk (group commit would write it within milliseconds)
  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);  // the daemon dies with the file open
  ASSERT_TRUE(wait_gone(pid, 10));
  ::close(fd);
  detach_mounts_below(mnt);
  mounted = false;
  mount_after_kill();
  EXPECT_EQ(object_files().size(), 0u);
}

// Metadata changes reach the disk in batches; fsync(2) of the directory writes them at once, so a
// crash after it loses none of them, and leaves nothing for fsck to find.
TEST_F(PosixTest, ChangesSyncedBeforeACrashSurviveIt) {
  ASSERT_EQ(::mkdir(at("d").c_str(), 0755), 0);
  for (int i = 0; i < 20; ++i) write_file(at("d/f" + std::to_string(i)), "content " + std::to_string(i));
  ASSERT_EQ(::rename(at("d/f0").c_str(), at("d/renamed").c_str()), 0);
  ASSERT_EQ(::unlink(at("d/f1").c_str()), 0);
  int fd = open_or_die(at("d/f2"), O_RDWR);
  ASSERT_EQ(::fsync(fd), 0);  // the size is saved with the batch
  ::close(fd);
  sync_dir(mnt);
  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(wait_gone(pid, 10));
  detach_mounts_below(mnt);
  mounted = false;
  mount_after_kill();
  EXPECT_EQ(read_file(at("d/renamed")), "content 0");
  EXPECT_EQ(read_file(at("d/f2")), "content 2");
  struct stat st;
  EXPECT_NE(::stat(at("d/f0").c_str(), &st), 0);
  EXPECT_NE(::stat(at("d/f1").c_str(), &st), 0);
  EXPECT_EQ(object_files().size(), 19u);  // the unlinked file's object went with its batch
}

TEST_F(PosixTest, HardLinksShareContentAndCount) {
  write_file(at("a"), "shared");
  ASSERT_EQ(::mkdir(at("d").c_str(), 0755), 0);
  ASSERT_EQ(::link(at("a").c_str(), at("d/b").c_str()), 0);
  struct stat sa, sb;
  ASSERT_EQ(::stat(at("a").c_str(), &sa), 0);
  ASSERT_EQ(::stat(at("d/b").c_str(), &sb), 0);
  EXPECT_EQ(sa.st_ino, sb.st_ino);
  EXPECT_EQ(sa.st_nlink, 2u);
  write_file(at("d/b"), "changed through b");
  EXPECT_EQ(read_file(at("a")), "changed through b");
  ASSERT_EQ(::unlink(at("a").c_str()), 0);
  remount();
  EXPECT_EQ(read_file(at("d/b")), "changed through b");
  ASSERT_EQ(::stat(at("d/b").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_nlink, 1u);
  EXPECT_EQ(::link(at("d").c_str(), at("dlink").c_str()), -1);  // no hard links to directories
}

TEST_F(PosixTest, SymlinksAndReadlink) {
  write_file(at("target"), "pointed at");
  ASSERT_EQ(::symlink("target", at("link").c_str()), 0);
  ASSERT_EQ(::symlink("/nonexistent/dangling", at("dangling").c_str()), 0);
  remount();
  char buf[256];
  ssize_t n = ::readlink(at("link").c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, n), "target");
  EXPECT_EQ(read_file(at("link")), "pointed at");
  n = ::readlink(at("dangling").c_str(), buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n), "/nonexistent/dangling");
  struct stat st;
  ASSERT_EQ(::lstat(at("link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST_F(PosixTest, ChmodChownUtimensPersist) {
  write_file(at("f"), "x");
  ASSERT_EQ(::chmod(at("f").c_str(), 0640), 0);
  ASSERT_EQ(::chown(at("f").c_str(), 1234, 5678), 0);
  struct timespec times[2] = {{1000000000, 111}, {1200000000, 222}};
  ASSERT_EQ(::utimensat(AT_FDCWD, at("f").c_str(), times, 0), 0);
  remount();
  struct stat st;
  ASSERT_EQ(::stat(at("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_mtim.tv_sec, 1200000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 222);
}

// Times the kernel shows while it caches them (writeback cache) are the ones the store keeps,
// whether or not writing moved them (a write within the clock tick of the create does not).
TEST_F(PosixTest, TimesSeenBeforeARemountAreTheTimesStored) {
  // The kernel stamps file times from its coarse clock, up to a tick behind CLOCK_REALTIME: read
  // that one, or a second boundary between the two fails the check below.
  struct timespec before;
  ::clock_gettime(CLOCK_REALTIME_COARSE, &before);
  write_file(at("quick"), std::string(4096, 'q'));
  int fd = ::open(at("slow").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ::usleep(100000);  // many ticks of the coarse clock (4-10 ms, later on a loaded VM): this write moves mtime
  ASSERT_EQ(::write(fd, "s", 1), 1);
  ASSERT_EQ(::close(fd), 0);
  ASSERT_EQ(::mkdir(at("d").c_str(), 0755), 0);
  std::map<std::string, struct stat> seen;
  for (const char* name : {"quick", "slow", "d"}) ASSERT_EQ(::stat(at(name).c_str(), &seen[name]), 0);
  EXPECT_GE(seen["slow"].st_mtim.tv_sec * 1000000000LL + seen["slow"].st_mtim.tv_nsec,
            seen["quick"].st_mtim.tv_sec * 1000000000LL + seen["quick"].st_mtim.tv_nsec + 10000000LL);
  EXPECT_GE(seen["quick"].st_mtim.tv_sec, before.tv_sec);
  remount();
  for (const char* name : {"quick", "slow", "d"}) {
    struct stat st;
    ASSERT_EQ(::stat(at(name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_sec, seen[name].st_mtim.tv_sec) << name;
    EXPECT_EQ(st.st_mtim.tv_nsec, seen[name].st_mtim.tv_nsec) << name;
    EXPECT_EQ(st.st_ctim.tv_sec, seen[name].st_ctim.tv_sec) << name;
    EXPECT_EQ(st.st_ctim.tv_nsec, seen[name].st_ctim.tv_nsec) << name;
    EXPECT_EQ(st.st_size, seen[name].st_size) << name;
  }
}

// A directory's mtime and ctime move when a name is added to it or removed from it, and the
// last ones seen are the ones a remount shows (they are saved lazily, like a file's times).
TEST_F(PosixTest, DirectoryTimesMoveWithItsNamesAndSurviveARemount) {
  auto ns = [](const struct timespec& t) { return t.tv_sec * 1000000000LL + t.tv_nsec; };
  ASSERT_EQ(::mkdir(at("d").c_str(), 0755), 0);
  struct stat made, added, removed;
  ASSERT_EQ(::stat(at("d").c_str(), &made), 0);
  ::usleep(20000);
  write_file(at("d/f"), "x");
  ASSERT_EQ(::stat(at("d").c_str(), &added), 0);
  EXPECT_GT(ns(added.st_mtim), ns(made.st_mtim));
  EXPECT_GT(ns(added.st_ctim), ns(made.st_ctim));
  ::usleep(20000);
  ASSERT_EQ(::unlink(at("d/f").c_str()), 0);
  ASSERT_EQ(::stat(at("d").c_str(), &removed), 0);
  EXPECT_GT(ns(removed.st_mtim), ns(added.st_mtim));
  remount();
  struct stat st;
  ASSERT_EQ(::stat(at("d").c_str(), &st), 0);
  EXPECT_EQ(ns(st.st_mtim), ns(removed.st_mtim));
  EXPECT_EQ(ns(st.st_ctim), ns(removed.st_ctim));
}

TEST_F(PosixTest, StatfsReportsTheBackingFilesystem) {
  struct statvfs st;
  ASSERT_EQ(::statvfs(mnt.c_str(), &st), 0);
  EXPECT_GT(st.f_blocks, 0u);
  EXPECT_EQ(st.f_namemax, 255u);
}

TEST_F(PosixTest, FsyncAndFdatasyncSucceed) {
  int fd = open_or_die(at("f"), O_CREAT | O_RDWR);
  pwrite_all(fd, "durable", 0);
  EXPECT_EQ(::fsync(fd), 0);
  EXPECT_EQ(::fdatasync(fd), 0);
  int dfd = ::open(mnt.c_str(), O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(::fsync(dfd), 0);
  ::close(dfd);
  ::close(fd);
}

TEST_F(PosixTest, NamesUpTo255Bytes) {
  std::string longest(255, 'n');
  write_file(at(longest), "ok");
  EXPECT_EQ(read_file(at(longest)), "ok");
  std::string too_long(256, 'n');
  EXPECT_EQ(::open(at(too_long).c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  std::string utf8 = "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93 layer";
  write_file(at(utf8), "unicode");
  remount();
  EXPECT_EQ(read_file(at(longest)), "ok");
  EXPECT_EQ(read_file(at(utf8)), "unicode");
}

TEST_F(PosixTest, ParallelWritersAndReadersOnDifferentFilesAndOneFile) {
  const int threads = 6;
  const size_t size = 1 << 20;
  std::vector<std::thread> pool;
  // Different files: each thread writes its own file in odd-sized pieces.
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::string data = bytes(pattern(size, 100 + t));
      int fd = ::open(at("p" + std::to_string(t)).c_str(), O_CREAT | O_WRONLY, 0644);
      for (size_t off = 0; off < size; off += 7777) {
        size_t n = std::min<size_t>(7777, size - off);
        (void)!::pwrite(fd, data.data() + off, n, static_cast<off_t>(off));
      }
      ::close(fd);
    });
  }
  for (auto& t : pool) t.join();
  pool.clear();
  // One file: threads write disjoint regions that share chunks at their edges, readers read along.
  int fd = open_or_die(at("shared"), O_CREAT | O_RDWR);
  std::atomic<bool> writing{true};
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::string part = bytes(pattern(100001, 200 + t));
      pwrite_all(fd, part, static_cast<off_t>(t) * 100001);
    });
  }
  std::thread reader([&] {
    while (writing) (void)pread_n(fd, 600006, 0);
  });
  for (auto& t : pool) t.join();
  writing = false;
  reader.join();
  ::close(fd);
  remount();
  for (int t = 0; t < threads; ++t) EXPECT_EQ(read_file(at("p" + std::to_string(t))), bytes(pattern(size, 100 + t)));
  std::string shared = read_file(at("shared"));
  ASSERT_EQ(shared.size(), size_t{threads} * 100001);
  for (int t = 0; t < threads; ++t) {
    EXPECT_EQ(shared.substr(static_cast<size_t>(t) * 100001, 100001), bytes(pattern(100001, 200 + t))) << t;
  }
}

// Writes `size` bytes to a file left open, stops the daemon with SIGTERM, mounts again and
// expects the bytes.
void PosixTest::expect_sigterm_keeps_open_file(size_t size) {
  int fd = open_or_die(at("open-at-exit"), O_CREAT | O_RDWR);
  std::string data = bytes(pattern(size, 9));
  pwrite_all(fd, data, 0);  // not closed, not fsynced
  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_TRUE(wait_gone(pid, 30));
  ::close(fd);
  mounted = false;
  detach_mounts_below(mnt);
  mount();
  EXPECT_EQ(read_file(at("open-at-exit")), data);
}

// With the writeback cache (the default), written data may still be in the kernel when SIGTERM
// comes: it must be written back before the daemon lets go.
TEST_F(PosixTest, SigtermWithOpenFilesFlushesEverything) { expect_sigterm_keeps_open_file(3 << 20); }

TEST_F(PosixTest, SigtermWithoutTheWritebackCacheKeepsOpenFiles) {
  umount();
  mount("--no-writeback-cache");
  expect_sigterm_keeps_open_file(300000);
}

// Two stop signals that arrive together are one stop. The handler adds to an eventfd, and two
// stops read at once had summed to the value meaning "the loop has ended": the watcher left and
// the daemon ignored every stop after. The daemon is stopped while both arrive, so that both
// handlers run before its watcher reads.
TEST_F(PosixTest, ASigtermAndASigintTogetherStopTheDaemon) {
  write_file(at("kept"), "written before the stop");
  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  for (int i = 0; i < 500 && process_state(pid) != 'T'; ++i) ::usleep(10000);
  ASSERT_EQ(process_state(pid), 'T');
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  ASSERT_EQ(::kill(pid, SIGCONT), 0);
  EXPECT_TRUE(wait_gone(pid, 30));
  mounted = false;
  detach_mounts_below(mnt);
  mount();
  EXPECT_EQ(read_file(at("kept")), "written before the stop");
}

// logrotate moves the log away and sends SIGHUP (`postrotate kill -HUP`): the mount serves on
// and logs into a new file at the old path. (SIGHUP used to unmount the store.)
TEST_F(PosixTest, SighupReopensTheLogAndKeepsServing) {
  write_file(at("before"), "written before the rotation");
  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  stdfs::rename(log, log + ".1");
  ASSERT_EQ(::kill(pid, SIGHUP), 0);
  EXPECT_TRUE(wait_for_text(log, "log file reopened", 10)) << read_file(log + ".1");
  EXPECT_EQ(::kill(pid, 0), 0);  // still running
  EXPECT_EQ(read_file(at("before")), "written before the rotation");
  write_file(at("after"), "written after the rotation");
  remount();
  EXPECT_EQ(read_file(at("after")), "written after the rotation");
  EXPECT_NE(read_file(log).find("unmounted"), std::string::npos);  // the new file has the rest
  EXPECT_EQ(read_file(log + ".1").find("unmounted"), std::string::npos);
}

// Past --inode-cache, idle inodes the kernel still references are kept as a count and read again
// on use (a `find` over a million files must not hold a million inodes in the daemon). Every
// attribute and byte survives the round trips, changes made to a demoted inode included, also
// from several threads at once.
TEST_F(PosixTest, PastTheInodeCacheEveryInodeIsReadBackRight) {
  umount();
  std::string addr = free_loopback_address();
  mount("--inode-cache 16 --metrics-listen " + addr);
  constexpr int kDirs = 30, kFiles = 10;
  auto name = [](int d, int f) { return "d" + std::to_string(d) + "/f" + std::to_string(f); };
  auto content = [](int d, int f) { return std::string(100 + d * kFiles + f, static_cast<char>('a' + (d + f) % 26)); };
  for (int d = 0; d < kDirs; ++d) {
    ASSERT_EQ(::mkdir(at("d" + std::to_string(d)).c_str(), 0750), 0);
    for (int f = 0; f < kFiles; ++f) write_file(at(name(d, f)), content(d, f));
  }
  ASSERT_EQ(::link(at(name(0, 0)).c_str(), at("d1/hard").c_str()), 0);
  ASSERT_EQ(::symlink("d0/f1", at("sym").c_str()), 0);
  ASSERT_EQ(::rename(at(name(2, 2)).c_str(), at("d3/moved").c_str()), 0);
  ASSERT_EQ(::chmod(at(name(4, 4)).c_str(), 0600), 0);
  sync_dir(mnt);
  // Every inode referenced by the kernel, most of them long demoted, then changed. O_PATH
  // descriptors pin the references (no FUSE open), so that another test dropping the kernel's
  // caches meanwhile cannot make the daemon forget these inodes instead of demoting them.
  struct stat st;
  struct Pins {
    std::vector<int> fds;
    void close() {
      for (int fd : fds) ::close(fd);
      fds.clear();
    }
    ~Pins() { close(); }
  } pins;
  for (int d = 0; d < kDirs; ++d) {
    for (int f = 0; f < kFiles; ++f) {
      int fd = ::open(at(name(d, f)).c_str(), O_PATH);
      if (fd >= 0) pins.fds.push_back(fd);
    }
  }
  // New files' sizes are saved by a periodic flush; their inodes are demoted after it. A slow
  // machine may save them over two flushes: wait for both counts, not the first alone.
  std::string page, labels = "{mountpoint=\"" + mnt + "\"}";
  auto settled = [&] {
    return metric(page, "cmkfs_inodes_demoted" + labels) >= 200 && metric(page, "cmkfs_inodes_in_memory" + labels) <= 64;
  };
  for (int i = 0; i < 100 && !settled(); ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    page = run("curl -fsS http://" + addr + "/metrics").output;
  }
  EXPECT_GE(metric(page, "cmkfs_inodes_demoted" + labels), 200) << page.substr(0, 2000);
  EXPECT_LE(metric(page, "cmkfs_inodes_in_memory" + labels), 64) << page.substr(0, 2000);
  ASSERT_EQ(::chmod(at(name(5, 5)).c_str(), 0604), 0) << std::strerror(errno);
  ASSERT_EQ(::truncate(at(name(6, 6)).c_str(), 10), 0) << std::strerror(errno);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int d = 10 + t; d < kDirs; d += 4) {
        for (int f = 0; f < kFiles; ++f) {
          int fd = ::open(at(name(d, f)).c_str(), O_WRONLY | O_APPEND);
          if (fd >= 0) (void)!::write(fd, "+", 1), ::close(fd);
          ::chmod(at(name(d, f)).c_str(), 0640);
        }
      }
    });
  }
  for (auto& th : threads) th.join();

  auto expect_all = [&](const std::string& when) {
    for (int d = 0; d < kDirs; ++d) {
      for (int f = 0; f < kFiles; ++f) {
        std::string n = d == 2 && f == 2 ? "d3/moved" : name(d, f);
        std::string want = content(d, f);
        mode_t mode = 0644;
        if (d == 4 && f == 4) mode = 0600;
        if (d == 5 && f == 5) mode = 0604;
        if (d == 6 && f == 6) want.resize(10);
        if (d >= 10) want += "+", mode = 0640;
        ASSERT_EQ(::stat(at(n).c_str(), &st), 0) << n << " " << when;
        EXPECT_EQ(st.st_mode & 07777, mode) << n << " " << when;
        EXPECT_EQ(st.st_nlink, d == 0 && f == 0 ? 2u : 1u) << n << " " << when;
        EXPECT_EQ(read_file(at(n)), want) << n << " " << when;
      }
    }
    EXPECT_EQ(read_file(at("d1/hard")), content(0, 0)) << when;
    EXPECT_EQ(read_file(at("sym")), content(0, 1)) << when;
    EXPECT_FALSE(stdfs::exists(at(name(2, 2)))) << when;
  };
  expect_all("while mounted");
  pins.close();
  remount();
  expect_all("after a remount");
}

TEST_F(PosixTest, AppendWithoutTheWritebackCache) {
  umount();
  mount("--no-writeback-cache");
  int fd = open_or_die(at("log"), O_CREAT | O_WRONLY | O_APPEND);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(::write(fd, "0123456789", 10), 10);
  ::close(fd);
  remount();
  EXPECT_EQ(read_file(at("log")).size(), 200u);
}

// Sequential reads go 1.4x faster with a 4 MiB window than with the kernel's 128 KiB; the
// daemon sets it while answering INIT.
std::string read_ahead_path(const std::string& mnt) {
  struct stat st;
  if (::stat(mnt.c_str(), &st) != 0) return "";
  return "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)) +
         "/read_ahead_kb";
}
std::string read_ahead_kb(const std::string& mnt) {
  std::string kb = read_file(read_ahead_path(mnt));
  return kb.substr(0, kb.find('\n'));
}

TEST_F(PosixTest, ReadAheadWindowIsSetAtMount) {
  if (::geteuid() != 0 || ::access(read_ahead_path(mnt).c_str(), W_OK) != 0) {
    GTEST_SKIP() << "the mount's sysfs entry is not writable here (needs root and a writable /sys)";
  }
  EXPECT_EQ(read_ahead_kb(mnt), "4096");  // the default
  umount();
  mount("--read-ahead 2MiB");
  EXPECT_EQ(read_ahead_kb(mnt), "2048");
  umount();
  mount("--read-ahead 0");
  EXPECT_EQ(std::atoi(read_ahead_kb(mnt).c_str()), 128);  // left as the kernel set it
}

// Readahead is sent as background requests; the kernel's default of 12 in flight held up
// sequential reads, so the daemon asks for more. The kernel shows a connection's setting in
// fusectl, mounted here on a private directory when the system has not mounted it.
TEST_F(PosixTest, ManyBackgroundRequestsMayBeInFlight) {
  struct stat st;
  ASSERT_EQ(::stat(mnt.c_str(), &st), 0);
  std::string conn = std::to_string(minor(st.st_dev));
  std::string ctl = "/sys/fs/fuse/connections";
  if (!stdfs::exists(ctl + "/" + conn)) {
    ctl = dir + "/fusectl";
    stdfs::create_directories(ctl);
    if (::mount("fusectl", ctl.c_str(), "fusectl", 0, nullptr) != 0) {
      GTEST_SKIP() << "fusectl cannot be mounted here: " << std::strerror(errno);
    }
  }
  std::string bg = read_file(ctl + "/" + conn + "/max_background");
  std::string congestion = read_file(ctl + "/" + conn + "/congestion_threshold");
  if (ctl != "/sys/fs/fuse/connections") ::umount2(ctl.c_str(), MNT_DETACH);
  EXPECT_EQ(std::atoi(bg.c_str()), 64);
  EXPECT_EQ(std::atoi(congestion.c_str()), 48);
}

TEST_F(PosixTest, AllowOtherEnforcesPermissions) {
  umount();
  mount("-o allow_other");
  write_file(at("private"), "secret");
  ASSERT_EQ(::chmod(at("private").c_str(), 0600), 0);
  write_file(at("public"), "hello");
  ASSERT_EQ(::chmod(at("public").c_str(), 0644), 0);
  pid_t pid = ::fork();
  if (pid == 0) {  // as nobody: the public file reads, the private one does not
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(10);
    if (::open(at("public").c_str(), O_RDONLY) < 0) _exit(11);
    int fd = ::open(at("private").c_str(), O_RDONLY);
    if (fd >= 0 || errno != EACCES) _exit(12);
    if (::open(at("new").c_str(), O_CREAT | O_WRONLY, 0644) >= 0 || errno != EACCES) _exit(13);
    _exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace cmkfs::testing

namespace cmkfs::testing {
namespace {

using ConfidentialityTest = MountTest;

TEST_F(ConfidentialityTest, BackingStoreHoldsNoNamesContentsOrLinkTargets) {
  init();
  mount();
  const std::vector<std::string> markers = {"MARKER-CONTENT-7f3a9c", "sha256", "_manifests", "_uploads",
                                            "repositories", "e3b0c44298fc1c149afbf4c8996fb924", "link-target-x91"};
  ASSERT_EQ(run("mkdir -p " + at("docker/registry/v2/repositories/app/_manifests/revisions/sha256")).rc, 0);
  ASSERT_EQ(run("mkdir -p " + at("docker/registry/v2/repositories/app/_uploads")).rc, 0);
  write_file(at("docker/registry/v2/repositories/app/_manifests/revisions/sha256/link"),
             "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string content;
  for (int i = 0; i < 2000; ++i) content += "MARKER-CONTENT-7f3a9c ";
  write_file(at("blob"), content);
  ASSERT_EQ(::symlink("link-target-x91", at("sym").c_str()), 0);
  umount();
  for (const auto& f : store_files()) {
    std::string bytes = read_file(f);
    for (const auto& m : markers) EXPECT_EQ(bytes.find(m), std::string::npos) << m << " found in " << f;
  }
  for (auto& e : stdfs::recursive_directory_iterator(store)) {
    for (const auto& m : markers) EXPECT_EQ(e.path().string().find(m), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace cmkfs::testing
