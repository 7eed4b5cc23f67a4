// The key lifecycle as a user sees it through a mount, shared by every key provider's tests: a
// mounted store with one file, one descriptor held open on it (its pages cached), and what
// revoked and serving look like from there.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/mount_fixture.h"

namespace cmkfs::testing {

// Runs `probe` every 100 ms until it returns true or `seconds` pass.
inline bool eventually(double seconds, const std::function<bool()>& probe) {
  for (int i = 0; i < seconds * 10; ++i) {
    if (probe()) return true;
    ::usleep(100000);
  }
  return probe();
}

inline int open_errno(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::close(fd);
    return 0;
  }
  return errno;
}

inline int read_errno(int fd) {
  char buf[16];
  return ::pread(fd, buf, sizeof buf, 0) < 0 ? errno : 0;
}

template <class Base>
class Lifecycle : public Base {
 protected:
  // Mounts the initialized store with fast checks and writes the file.
  void mount_with_file(const std::string& extra = "") {
    this->mount("--key-check-interval 500ms --audit-log " + this->dir + "/audit.jsonl " + extra);
    write_file(this->at("f"), content);
    held = ::open(this->at("f").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(held, 0);
    char buf[8];
    ASSERT_EQ(::pread(held, buf, 8, 0), 8);  // its pages are in the kernel's cache now
  }
  void TearDown() override {
    if (held >= 0) ::close(held);
    Base::TearDown();
  }
  void release() {
    if (held >= 0) ::close(held);
    held = -1;
  }
  // Two check intervals, plus slack for a loaded machine.
  // The state is published once the revocation is whole (keys wiped, then the kernel's caches
  // dropped): only then may cached pages of open files be expected to stop.
  void expect_revoked() {
    EXPECT_TRUE(eventually(10, [&] { return this->show()["liveKeyState"]["state"] == "revoked"; })) << read_file(this->log);
    EXPECT_EQ(open_errno(this->at("f")), EACCES);
    EXPECT_EQ(read_errno(held), EACCES);  // already open, pages were cached
    struct stat st;
    EXPECT_EQ(::stat(this->at("f").c_str(), &st), -1);
    EXPECT_EQ(errno, EACCES);
    EXPECT_EQ(::open(this->at("new").c_str(), O_CREAT | O_WRONLY, 0644), -1);
    EXPECT_EQ(errno, EACCES);
    struct statvfs vfs;
    EXPECT_EQ(::statvfs(this->mnt.c_str(), &vfs), 0);  // statfs and the root's attributes still answer
    EXPECT_EQ(::stat(this->mnt.c_str(), &st), 0);
    EXPECT_EQ(this->show()["liveKeyState"]["state"], "revoked");
  }
  // The keys are installed before the state is published: once it says so, everything serves.
  void expect_serving() {
    EXPECT_TRUE(eventually(10, [&] { return this->show()["liveKeyState"]["state"] == "available"; })) << read_file(this->log);
    EXPECT_EQ(open_errno(this->at("f")), 0);
    EXPECT_EQ(read_file(this->at("f")), content);
    EXPECT_EQ(read_errno(held), 0);
  }
  // The key unreachable past the grace: like a revocation, the state is published once it is
  // whole, so the state is waited for (up to `seconds`), not the first failing open.
  void expect_failed_closed(double seconds) {
    EXPECT_TRUE(eventually(seconds, [&] { return this->show()["liveKeyState"]["state"] == "vault-unreachable-failed-closed"; }))
        << read_file(this->log);
    EXPECT_EQ(open_errno(this->at("f")), EACCES);
    EXPECT_EQ(read_errno(held), EACCES);
  }
  std::string audit() const { return read_file(this->dir + "/audit.jsonl"); }

  std::string content = std::string(200000, 'c') + "end";
  int held = -1;
};

}  // namespace cmkfs::testing
