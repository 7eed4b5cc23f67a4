// The crash loop: a writer creates, appends, renames, deletes and fsyncs while the daemon is
// killed (SIGKILL) at a random moment, round after round. Nothing fsynced may be lost; fsck
// between rounds may find only what the next mount repairs; after the last mount and a clean
// unmount it must find nothing at all. CMKFS_CRASH_ROUNDS sets the rounds (default 12).
#include <signal.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "tests/support/mount_fixture.h"

namespace cmkfs::testing {
namespace {

using CrashTest = MountTest;

// fsync(2) of a file by path; false if it could not be done (the daemon is gone).
bool fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool write_all(const std::string& path, const std::string& data, int flags) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | flags, 0644);
  if (fd < 0) return false;
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  ok = ::close(fd) == 0 && ok;
  return ok;
}

TEST_F(CrashTest, KilledAtRandomItLosesNothingFsyncedAndRecoversToAClean) {
  const char* env = std::getenv("CMKFS_CRASH_ROUNDS");
  int rounds = env != nullptr ? std::atoi(env) : 12;
  std::mt19937 rng(20261130);
  init();
  std::map<std::string, std::string> durable;  // names fsynced, and what they hold
  int next_name = 0;
  for (int round = 0; round < rounds; ++round) {
    mount();
    for (const auto& [name, content] : durable) {
      ASSERT_EQ(read_file(at(name)), content) << "round " << round << ": " << name << " lost what was fsynced\n"
                                              << read_file(log);
    }
    // Names written this round and not fsynced: anything may have happened to them.
    std::atomic<bool> stop{false};
    std::map<std::string, std::string> fsynced_now;
    std::mt19937 wrng(rng());
    std::thread writer([&] {
      std::vector<std::string> loose;
      while (!stop) {
        int op = static_cast<int>(wrng() % 6);
        std::string name = "f" + std::to_string(next_name++);
        std::string data(1000 + wrng() % 70000, static_cast<char>('a' + wrng() % 26));
        if (op <= 1) {  // a file written and fsynced: it must survive
          if (!write_all(at(name), data, O_TRUNC) || !fsync_path(at(name))) break;
          fsynced_now[name] = data;
        } else if (op == 2) {  // written, not synced
          if (!write_all(at(name), data, O_TRUNC)) break;
          loose.push_back(name);
        } else if (op == 3 && !loose.empty()) {  // appended to
          if (!write_all(at(loose[wrng() % loose.size()]), data, O_APPEND)) break;
        } else if (op == 4 && !loose.empty()) {  // renamed
          std::string& from = loose[wrng() % loose.size()];
          if (::rename(at(from).c_str(), at(name).c_str()) != 0) break;
          from = name;
        } else if (op == 5 && !loose.empty()) {  // deleted
          size_t i = wrng() % loose.size();
          if (::unlink(at(loose[i]).c_str()) != 0) break;
          loose.erase(loose.begin() + static_cast<long>(i));
        }
      }
    });
    ::usleep(50000 + static_cast<useconds_t>(rng() % 350000));
    pid_t pid = daemon_pid(store);
    ASSERT_GT(pid, 0);
    ::kill(pid, SIGKILL);
    EXPECT_TRUE(wait_gone(pid, 10));
    stop = true;
    ::umount2(mnt.c_str(), MNT_DETACH);
    writer.join();
    mounted = false;
    durable.insert(fsynced_now.begin(), fsynced_now.end());
    auto r = run(cmkfs_binary() + " fsck " + store);
    ASSERT_EQ(r.rc, 0) << "round " << round << ": only what a crash leaves may be found\n" << r.output;
  }
  mount();
  for (const auto& [name, content] : durable) ASSERT_EQ(read_file(at(name)), content) << name;
  umount();
  // How long recovery took, round by round (the README's Durability section quotes it).
  std::istringstream lines(read_file(log));
  std::string line;
  int recoveries = 0;
  long slowest = 0;
  while (std::getline(lines, line)) {
    auto at_ms = line.find("recovered from an unclean stop in ");
    if (at_ms == std::string::npos) continue;
    ++recoveries;
    slowest = std::max(slowest, std::atol(line.c_str() + at_ms + 34));
  }
  std::cout << "[ crash    ] " << rounds << " kills, " << durable.size() << " fsynced files kept, " << recoveries
            << " recoveries, slowest " << slowest << " ms\n";
  auto r = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("\nclean\n"), std::string::npos) << "after a clean unmount nothing may be left\n" << r.output;
  EXPECT_GT(durable.size(), 0u);
}

}  // namespace
}  // namespace cmkfs::testing
