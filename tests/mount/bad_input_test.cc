// Every kind of bad input through the real binary: each a clear one-line error and a named exit
// code, nothing lost.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>

#include <atomic>
#include <thread>
#include <nlohmann/json.hpp>
#include <sstream>

#include "crypto/base/fd.h"
#include "fs/store/store.h"
#include "tests/support/lmdb_poke.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/test_util.h"

namespace cmkfs::testing {
namespace {

// One line on stderr, no stack traces, no secrets.
void expect_one_clear_line(const CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
  EXPECT_LE(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

using BadInputTest = MountTest;

TEST_F(BadInputTest, InitRefusesANonEmptyDirectoryAndAnExistingStore) {
  stdfs::create_directories(store);
  write_file(store + "/something", "x");
  auto r = run(cmkfs_binary() + " init " + store + " --local-key-file " + key);
  EXPECT_NE(r.rc, 0);
  expect_one_clear_line(r, "not empty");
  stdfs::remove(store + "/something");
  init();
  r = run(cmkfs_binary() + " init " + store + " --local-key-file " + key + "2");
  EXPECT_NE(r.rc, 0);
  expect_one_clear_line(r, "already a cmkfs store");
}

TEST_F(BadInputTest, LocalKeyFileIsCreatedMode0600OutsideTheStore) {
  init();
  struct stat st;
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string secret = read_file(key).substr(19, 64);
  ASSERT_EQ(secret.size(), 64u);
  for (auto& f : store_files()) EXPECT_EQ(read_file(f).find(secret), std::string::npos) << f;
}

TEST_F(BadInputTest, MountingADirectoryThatIsNotAStore) {
  stdfs::create_directories(store);
  auto r = try_mount();
  EXPECT_EQ(r.rc, fs::kExitNotAStore);
  expect_one_clear_line(r, "is not a cmkfs store");
  r = run(cmkfs_binary() + " mount " + dir + "/missing " + mnt);
  EXPECT_EQ(r.rc, fs::kExitNotAStore);
  expect_one_clear_line(r, "does not exist");
}

TEST_F(BadInputTest, MissingWrongOrExposedKeyFile) {
  init();
  stdfs::rename(key, key + ".away");
  auto r = try_mount();
  EXPECT_EQ(r.rc, fs::kExitKey);
  expect_one_clear_line(r, "does not exist");
  // Another store's key.
  auto other = run(cmkfs_binary() + " init " + dir + "/other --local-key-file " + key);
  ASSERT_EQ(other.rc, 0);
  r = try_mount();
  EXPECT_EQ(r.rc, fs::kExitKey);
  expect_one_clear_line(r, "is not this store's key");
  stdfs::rename(key + ".away", key);
  ::chmod(key.c_str(), 0644);
  r = try_mount();
  EXPECT_EQ(r.rc, fs::kExitKey);
  expect_one_clear_line(r, "chmod 600");
  ::chmod(key.c_str(), 0600);
  // A key file someone else could have put there is theirs: another user's, or in a directory
  // others may write.
  ASSERT_EQ(::chown(key.c_str(), 65534, 65534), 0);
  r = try_mount();
  EXPECT_EQ(r.rc, fs::kExitKey);
  expect_one_clear_line(r, "belongs to another user");
  ASSERT_EQ(::chown(key.c_str(), 0, 0), 0);
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  std::string elsewhere = dir + "-mnt";  // a mountpoint outside the open directory: it is refused too
  stdfs::create_directories(elsewhere);
  ::chmod(dir.c_str(), 0777);
  r = run(cmkfs_binary() + " mount " + store + " " + elsewhere);
  ::chmod(dir.c_str(), st.st_mode & 07777);
  stdfs::remove(elsewhere);
  EXPECT_EQ(r.rc, fs::kExitKey);
  expect_one_clear_line(r, "which may be written by group or others");
  mount();  // and with the right key all is well
}

TEST_F(BadInputTest, CorruptOrTamperedSuperblock) {
  init();
  poke_lmdb(store + "/meta", "super", "superblock", [](std::string& v) { v = "{garbage"; });
  auto r = try_mount();
  EXPECT_EQ(r.rc, fs::kExitNotAStore);
  expect_one_clear_line(r, "superblock is damaged");
}

TEST_F(BadInputTest, SuperblockChangedWithoutTheKeyFailsItsMac) {
  init();
  poke_lmdb(store + "/meta", "super", "superblock", [](std::string& v) {
    auto j = nlohmann::json::parse(v);
    j["chunk_size"] = 8192;
    v = j.dump();
  });
  auto r = try_mount();
  EXPECT_EQ(r.rc, fs::kExitNotAStore);
  expect_one_clear_line(r, "superblock MAC does not match");
}

// A store's settings are the store writer's words: an escape sequence in one (here OSC 52, which
// sets the terminal's clipboard) reaches the admin's terminal only escaped.
TEST_F(BadInputTest, AnEscapeSequenceInTheStoreIsShownEscaped) {
  init();
  poke_lmdb(store + "/meta", "super", "superblock", [](std::string& v) {
    auto j = nlohmann::json::parse(v);
    j["objects"] = {{"kind", "\x1b]52;c;aGk=\x07\xc2\x9b" "2J \\x1b"}};  // and text that looks escaped
    v = j.dump();
  });
  for (const std::string& command :
       {" mount " + store + " " + mnt, " mount --foreground " + store + " " + mnt, " encryption show " + store}) {
    auto r = run(cmkfs_binary() + command);
    EXPECT_NE(r.rc, 0) << command;
    EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << command << ": " << r.output;
    EXPECT_EQ(r.output.find("\xc2\x9b"), std::string::npos) << command << ": " << r.output;  // C1 CSI
    EXPECT_NE(r.output.find("\\x1b]52"), std::string::npos) << command << ": " << r.output;
    EXPECT_NE(r.output.find("2J \\x5cx1b"), std::string::npos) << command << ": " << r.output;
  }
}

TEST_F(BadInputTest, UnknownFormatVersionIsRefused) {
  init();
  poke_lmdb(store + "/meta", "super", "superblock", [](std::string& v) {
    auto j = nlohmann::json::parse(v);
    j["format_version"] = 2;
    v = j.dump();
  });
  auto r = try_mount();
  EXPECT_EQ(r.rc, fs::kExitNotAStore);
  expect_one_clear_line(r, "format version 2 is not supported");
}

TEST_F(BadInputTest, MissingOrBusyMountpoint) {
  init();
  auto r = run(cmkfs_binary() + " mount " + store + " " + dir + "/nowhere");
  EXPECT_EQ(r.rc, fs::kExitMount);
  expect_one_clear_line(r, "does not exist");
  // Under a directory others may change, root's mount could be moved onto a link they swap in
  // (onto /etc) while the key is unwrapped.
  stdfs::create_directories(dir + "/open/mnt");
  ::chmod((dir + "/open").c_str(), 0777);
  r = run(cmkfs_binary() + " mount " + store + " " + dir + "/open/mnt");
  EXPECT_EQ(r.rc, fs::kExitMount);
  expect_one_clear_line(r, "which may be written by group or others");
  // In a sticky directory, another user's mountpoint: they may rename it and put a link there.
  std::string sticky = dir + "/sticky";
  stdfs::create_directories(sticky + "/theirs");
  ::chmod(sticky.c_str(), 01777);
  ASSERT_EQ(::chown((sticky + "/theirs").c_str(), 65534, 65534), 0);
  r = run(cmkfs_binary() + " mount " + store + " " + sticky + "/theirs");
  EXPECT_EQ(r.rc, fs::kExitMount);
  expect_one_clear_line(r, "belongs to another user in a sticky directory");
  mount();
  stdfs::create_directories(dir + "/other");
  auto s2 = run(cmkfs_binary() + " init " + dir + "/s2 --local-key-file " + dir + "/k2");
  ASSERT_EQ(s2.rc, 0);
  // Named as the mount table names it, with a trailing slash, relatively, or through a link.
  stdfs::create_directory_symlink(mnt, dir + "/link-to-mnt");
  for (const std::string& as : {mnt, mnt + "/", std::string("mnt"), dir + "/link-to-mnt"}) {
    r = run("cd " + dir + " && " + cmkfs_binary() + " mount " + dir + "/s2 " + as);
    EXPECT_EQ(r.rc, fs::kExitMount) << as;
    expect_one_clear_line(r, "is busy");
  }
  r = run(cmkfs_binary() + " mount " + store + " " + dir + "/other");
  EXPECT_EQ(r.rc, fs::kExitBusy);
  expect_one_clear_line(r, "is in use");
}

TEST_F(BadInputTest, UmountOfSomethingNotMounted) {
  auto r = run(cmkfs_binary() + " umount " + mnt);
  EXPECT_NE(r.rc, 0);
  expect_one_clear_line(r, "is not mounted");
}

// Another filesystem mounted over the store's mountpoint is what a path there reaches: `cmkfs
// umount` refuses it (it used to unmount it, being below it, then report the store unmounted).
TEST_F(BadInputTest, UmountRefusesAMountStackedOverTheStore) {
  init();
  mount();
  write_file(at("f"), "under the tmpfs");
  ASSERT_EQ(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  auto r = run(cmkfs_binary() + " umount " + mnt);
  EXPECT_NE(r.rc, 0);
  expect_one_clear_line(r, "is not a cmkfs mount");
  struct statfs over;
  ASSERT_EQ(::statfs(mnt.c_str(), &over), 0);
  EXPECT_EQ(over.f_type, TMPFS_MAGIC);  // still there
  ASSERT_EQ(::umount2(mnt.c_str(), 0), 0) << std::strerror(errno);
  EXPECT_EQ(read_file(at("f")), "under the tmpfs");
  umount();
}

// `cmkfs umount` as root walks the path to the mountpoint once. Before, it checked the mount's
// device by the path, then unmounted by the path again: whoever owns a directory on the way could
// exchange it in between and have root unmount another mount. Raced for real: a thread exchanges
// the mountpoint's directory with one holding a decoy mount of the same name, as fast as it can,
// while the unmount runs; the decoy must survive every round.
TEST_F(BadInputTest, UmountUnmountsWhatItCheckedWhileADirectoryAboveIsExchanged) {
  init();
  std::string up = dir + "/up";
  stdfs::create_directories(up + "/sub/m");
  stdfs::create_directories(up + "/decoy/m");
  ASSERT_EQ(::mount("cmkfs-decoy", (up + "/decoy/m").c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
  struct stat decoy;
  ASSERT_EQ(::stat((up + "/decoy/m").c_str(), &decoy), 0);
  Fd up_fd(::open(up.c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_GE(up_fd.get(), 0);
  auto exchange = [&] { return ::renameat2(up_fd.get(), "sub", up_fd.get(), "decoy", RENAME_EXCHANGE) == 0; };
  auto swapped = [&] {  // "sub" holds the decoy
    struct stat st;
    return ::stat((up + "/sub/m").c_str(), &st) == 0 && st.st_dev == decoy.st_dev;
  };
  auto decoy_mounted = [&] { return read_file("/proc/self/mounts").find("cmkfs-decoy ") != std::string::npos; };
  auto store_mounted = [&] { return read_file("/proc/self/mounts").find("cmkfs:" + store + " ") != std::string::npos; };
  mnt = up + "/sub/m";
  int unmounted = 0, exchanges = 0;
  for (int round = 0; round < 30 && decoy_mounted(); ++round) {
    mount();
    std::atomic<bool> stop{false};
    std::atomic<int> n{0};
    std::thread swapper([&] {
      while (!stop.load()) n += exchange();
    });
    auto r = run(cmkfs_binary() + " umount " + mnt);
    stop = true;
    swapper.join();
    exchanges += n.load();
    if (swapped()) {
      ASSERT_TRUE(exchange());
    }
    if (!store_mounted()) ++unmounted;
    else run(cmkfs_binary() + " umount " + mnt);  // refused: the decoy was what it found there
    mounted = store_mounted();
    ASSERT_FALSE(mounted) << r.output;
  }
  bool decoy_survived = decoy_mounted();
  if (decoy_survived) ::umount2((up + "/decoy/m").c_str(), 0);
  EXPECT_TRUE(decoy_survived) << "root's umount unmounted the decoy";
  EXPECT_GT(exchanges, 1000) << "the race was never run";
  EXPECT_GT(unmounted, 0) << "no unmount got past the check while exchanged";
}

// A real full disk: a 24 MiB tmpfs under the store. With the kernel's writeback cache (the default)
// the error reaches the writer at fsync(2) or close(2); with --no-writeback-cache, at write(2).
void fill_the_disk(MountTest& t, const std::string& mount_flags, bool error_at_write) {
  std::string small = t.dir + "/small";
  stdfs::create_directories(small);
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=24m"), 0) << std::strerror(errno);
  struct Unmount {
    std::string p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } guard{small};
  t.store = small + "/store";
  t.init();
  t.mount(mount_flags);
  std::string keep = std::string(2 << 20, 'k');
  write_file(t.at("keep"), keep);
  int fd = ::open(t.at("big").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  std::string chunk(1 << 20, 'b');
  int write_err = 0, later_err = 0;
  for (int i = 0; i < 64 && write_err == 0; ++i) {
    if (::write(fd, chunk.data(), chunk.size()) < 0) write_err = errno;
  }
  if (::fsync(fd) != 0) later_err = errno;
  if (::close(fd) != 0 && later_err == 0) later_err = errno;
  if (error_at_write) {
    EXPECT_EQ(write_err, ENOSPC);
  } else {
    EXPECT_TRUE(write_err == ENOSPC || later_err == ENOSPC) << write_err << " " << later_err;
  }
  EXPECT_EQ(read_file(t.at("keep")), keep);
  struct stat st;
  ASSERT_EQ(::stat(t.at("big").c_str(), &st), 0);
  // What was stored reads back whole. With the writeback cache the kernel may still hold pages
  // whose write failed (and reads them back) or may have dropped them: those read as EIO, never
  // as zeros.
  int big_fd = ::open(t.at("big").c_str(), O_RDONLY);
  ASSERT_GE(big_fd, 0);
  ::posix_fadvise(big_fd, 0, 0, POSIX_FADV_DONTNEED);  // as memory pressure would, every time
  size_t good = 0, lost = 0;
  for (off_t off = 0; off < st.st_size; off += 4096) {
    char page[4096];
    ssize_t got = ::pread(big_fd, page, sizeof page, off);
    if (got < 0) {
      EXPECT_EQ(errno, EIO) << "at " << off;
      EXPECT_FALSE(error_at_write) << "the write(2) that failed added nothing";
      ++lost;
      continue;
    }
    ASSERT_EQ(got, std::min<off_t>(4096, st.st_size - off));
    ASSERT_EQ(std::string(page, got), std::string(got, 'b')) << "at " << off;
    ++good;
  }
  ::close(big_fd);
  EXPECT_GT(good, 0u);
  if (!error_at_write && later_err == ENOSPC) {
    EXPECT_GT(lost, 0u) << "the failed write read back";
  }
  std::printf("big: %zu pages read back, %zu lost (EIO)\n", good, lost);
  ASSERT_EQ(::unlink(t.at("big").c_str()), 0);
  write_file(t.at("after"), "space again");
  t.remount();
  EXPECT_EQ(read_file(t.at("keep")), keep);
  EXPECT_EQ(read_file(t.at("after")), "space again");
  t.umount();
}

TEST_F(BadInputTest, FullBackingDiskGivesEnospcAtFsyncOrCloseAndLosesNothing) { fill_the_disk(*this, "", false); }

TEST_F(BadInputTest, FullBackingDiskWithoutTheWritebackCacheFailsTheWrite) {
  fill_the_disk(*this, "--no-writeback-cache", true);
}

TEST_F(BadInputTest, EncryptionShowForALocalKeyStore) {
  init("--chunk-size 128KiB");
  auto r = run(cmkfs_binary() + " encryption show " + store + " 2>/dev/null");
  ASSERT_EQ(r.rc, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["status"], "disabled");
  EXPECT_TRUE(j["keyVaultProperties"].contains("keyIdentifier"));
  EXPECT_TRUE(j["keyVaultProperties"]["keyIdentifier"].is_null());
  EXPECT_EQ(j["cipher"], "AES-256-GCM");
  EXPECT_EQ(j["chunkSize"], 131072);
  EXPECT_EQ(j["formatVersion"], 1);
}

}  // namespace
}  // namespace cmkfs::testing
