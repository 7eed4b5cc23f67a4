// Integration-test fixture: a fresh store in a temporary directory, mounted through the real
// cmkfs binary. Every mount is undone in TearDown; should a test process crash, scripts/test.sh
// lazily unmounts whatever is left under /tmp/cmkfs-it (tests run in parallel, so a fixture only
// ever touches its own directory).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <signal.h>

#include <array>
#include <nlohmann/json.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "fs/store/store.h"

namespace cmkfs::testing {

namespace stdfs = std::filesystem;

struct CommandResult {
  int rc = -1;
  std::string output;  // stdout and stderr
};

inline CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline std::string cmkfs_binary() { return CMKFS_BINARY; }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// Up to `n` bytes at `off`: what pread(2) returned (a failure is a test failure, read as "").
inline std::string pread_n(int fd, size_t n, off_t off) {
  std::string s(n, '\0');
  ssize_t got = ::pread(fd, s.data(), n, off);
  EXPECT_GE(got, 0) << std::strerror(errno);
  s.resize(got < 0 ? 0 : static_cast<size_t>(got));
  return s;
}

// Lazily unmounts every FUSE mount below `root` (left over by a crashed test).
// fsync(2) of a directory: cmkfs writes every metadata change made so far to disk.
inline void sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0) << dir;
  EXPECT_EQ(::fsync(fd), 0) << dir;
  ::close(fd);
}

inline void detach_mounts_below(const std::string& root) {
  std::ifstream in("/proc/self/mounts");
  std::string src, target, rest;
  std::vector<std::string> targets;
  while (in >> src >> target && std::getline(in, rest)) {
    if (target.rfind(root, 0) == 0) targets.push_back(target);
  }
  for (auto& t : targets) ::umount2(t.c_str(), MNT_DETACH);
}

// The pid of the daemon serving `store`, or -1: scans /proc for "cmkfs mount STORE ...".
inline pid_t daemon_pid(const std::string& store) {
  for (auto& e : stdfs::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_file(e.path().string() + "/cmdline");
    std::vector<std::string> argv;
    size_t start = 0;
    for (size_t i = 0; i < cmdline.size(); ++i) {
      if (cmdline[i] == '\0') {
        argv.push_back(cmdline.substr(start, i - start));
        start = i + 1;
      }
    }
    if (argv.size() >= 3 && argv[0].find("cmkfs") != std::string::npos && argv[1] == "mount" && argv[2] == store) {
      return std::stoi(name);
    }
  }
  return -1;
}

// The state letter of process `pid` in /proc (R, S, T, Z...), or 0 when there is no such process.
inline char process_state(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t close_paren = stat.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= stat.size() ? 0 : stat[close_paren + 2];
}

// Waits up to `seconds` for process `pid` to exit; true if it did.
// A zombie counts as gone (the daemon's parent has exited and init may be slow to reap it), but
// only once its other threads are gone too: until the last one exits, its files (the store lock
// among them) stay open.
inline bool wait_gone(pid_t pid, double seconds) {
  std::string proc = "/proc/" + std::to_string(pid);
  for (int i = 0; i < seconds * 100; ++i) {
    char state = process_state(pid);
    if (state == 0) return true;
    if (state == 'Z') {
      std::error_code ec;
      auto tasks = std::distance(stdfs::directory_iterator(proc + "/task", ec), stdfs::directory_iterator());
      if (ec || tasks <= 1) return true;
    }
    ::usleep(10000);
  }
  return false;
}

// Waits up to `seconds` for the file at `path` to contain `text`; true if it does. A log line is
// written after its file is created, so waiting for the file alone races with the writer.
inline bool wait_for_text(const std::string& path, const std::string& text, double seconds) {
  for (int i = 0; i < seconds * 100; ++i) {
    if (read_file(path).find(text) != std::string::npos) return true;
    ::usleep(10000);
  }
  return false;
}

class MountTest : public ::testing::Test {
 public:  // also used by helper functions of the tests
  static constexpr const char* kRoot = "/tmp/cmkfs-it";

  void SetUp() override {
    dir = std::string(kRoot) + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" +
          std::to_string(::getpid());
    stdfs::remove_all(dir);
    stdfs::create_directories(dir + "/mnt");
    store = dir + "/store";
    mnt = dir + "/mnt";
    key = dir + "/key";
    log = dir + "/cmkfs.log";
    host = dir + "/host";
    ::setenv("CMKFS_CONFIG_DIR", host.c_str(), 1);  // this test's host bindings, not /etc/cmkfs
  }

  void TearDown() override {
    if (mounted) umount();
    detach_mounts_below(dir);
    if (!HasFailure()) stdfs::remove_all(dir);
  }

  // With $CMKFS_TEST_PG_CONNINFO (ctest runs some suites again with it), stores keep their
  // metadata in PostgreSQL.
  static std::string meta_flags() {
    const char* pg = ::getenv("CMKFS_TEST_PG_CONNINFO");
    return pg == nullptr ? "" : std::string(" --meta postgres --pg-conninfo ") + pg;
  }
  void init(const std::string& extra = "") {
    auto r = run(cmkfs_binary() + " init " + store + " --local-key-file " + key + meta_flags() + " " + extra);
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  CommandResult try_mount(const std::string& extra = "") {
    auto r = run(cmkfs_binary() + " mount " + store + " " + mnt + " --log-file " + log + " " + extra);
    if (r.rc == 0) mounted = true;
    return r;
  }
  void mount(const std::string& extra = "") {
    auto r = try_mount(extra);
    ASSERT_EQ(r.rc, 0) << r.output << "\nlog:\n" << read_file(log);
  }
  // A mount after its daemon was killed. With the metadata in PostgreSQL the store stays locked
  // until the server has ended the killed daemon's session, which it does on its own time: a
  // refusal as in use is tried again for up to 10 s.
  static CommandResult retried_while_in_use(const std::function<CommandResult()>& attempt) {
    auto r = attempt();
    for (int i = 0; i < 100 && r.rc == fs::kExitBusy; ++i) ::usleep(100000), r = attempt();
    return r;
  }
  void mount_after_kill(const std::string& extra = "") {
    auto r = retried_while_in_use([&] { return try_mount(extra); });
    ASSERT_EQ(r.rc, 0) << r.output << "\nlog:\n" << read_file(log);
  }
  void umount() {
    auto r = run(cmkfs_binary() + " umount " + mnt);
    mounted = false;
    EXPECT_EQ(r.rc, 0) << r.output;
  }
  void remount() {
    umount();
    mount();
  }
  std::string at(const std::string& rel) const { return mnt + "/" + rel; }
  nlohmann::json show() {
    auto r = run(cmkfs_binary() + " encryption show " + store + " 2>/dev/null");
    EXPECT_EQ(r.rc, 0) << r.output;
    return nlohmann::json::parse(r.output, nullptr, false);
  }
  // Whether the mount's data-key rotation reached `generation` and moved every file.
  bool data_key_rotated_to(int generation) {
    nlohmann::json live = show()["liveKeyState"];
    return live["dataKeyGeneration"] == generation && !live.contains("dataKeyRotation");
  }

  // Every file in the backing store, for tampering and plaintext scans.
  std::vector<std::string> store_files() const {
    std::vector<std::string> v;
    for (auto& e : stdfs::recursive_directory_iterator(store)) {
      if (e.is_regular_file()) v.push_back(e.path().string());
    }
    return v;
  }
  std::vector<std::string> object_files() const {
    std::vector<std::string> v;
    for (auto& e : stdfs::recursive_directory_iterator(store + "/objects")) {
      if (e.is_regular_file()) v.push_back(e.path().string());
    }
    return v;
  }

  std::string dir, store, mnt, key, log, host;
  bool mounted = false;
};

}  // namespace cmkfs::testing
