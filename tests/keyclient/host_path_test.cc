// Where the host's key settings may point (keyclient/host_path.h): nowhere another user could put
// their own file, through a directory, a sticky directory of theirs, or a link of theirs.
#include "keyclient/host_path.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace cmkfs::keyclient {
namespace {

namespace stdfs = std::filesystem;
constexpr uid_t kSomeoneElse = 65534;

class HostPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (files of another user)";
    char tmpl[] = "/tmp/cmkfs-host-path-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    ::chmod(dir.c_str(), 0755);
  }
  void TearDown() override {
    if (!dir.empty()) stdfs::remove_all(dir);
  }
  std::string file(const std::string& rel, mode_t mode = 0600) {
    std::string p = dir + "/" + rel;
    stdfs::create_directories(stdfs::path(p).parent_path());
    std::ofstream(p) << "x";
    ::chmod(p.c_str(), mode);
    return p;
  }
  void dir_mode(const std::string& rel, mode_t mode, uid_t owner = 0) {
    std::string p = dir + "/" + rel;
    stdfs::create_directories(p);
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
    ASSERT_EQ(::chown(p.c_str(), owner, owner), 0);
  }
  std::string link(const std::string& rel, const std::string& to, uid_t owner = 0) {
    std::string p = dir + "/" + rel;
    stdfs::create_directories(stdfs::path(p).parent_path());
    stdfs::create_symlink(to, p);
    EXPECT_EQ(::lchown(p.c_str(), owner, owner), 0);
    return p;
  }
  static std::string refusal(const Status& s) { return s.ok() ? "accepted" : s.message(); }
  std::string dir;
};

TEST_F(HostPathTest, TheHostsOwnDirectoriesAndStickyOnesOfTheHostAreTrusted) {
  EXPECT_TRUE(check_host_file(file("a/b/key"), "key").ok());
  dir_mode("tmp", 01777);
  EXPECT_TRUE(check_host_file(file("tmp/key"), "key").ok());
  link("links/to-a", dir + "/a");
  EXPECT_TRUE(check_host_file(dir + "/links/to-a/b/key", "key").ok());
  link("links/rel", "../a/b/key");
  EXPECT_TRUE(check_host_file(dir + "/links/rel", "key").ok());
  EXPECT_TRUE(check_host_dirs(dir + "/a/b/not-yet", "socket").ok());
  EXPECT_FALSE(check_host_file(dir + "/a/.", "CA").ok());  // a directory, not a file
}

TEST_F(HostPathTest, AnotherUsersDirectoryStickyDirectoryOrLinkIsRefused) {
  dir_mode("open", 0777);
  std::string key = file("open/own/key");
  ::chmod((dir + "/open/own").c_str(), 0755);
  EXPECT_NE(refusal(check_host_file(key, "key")).find("is in " + dir + "/open, which may be written"), std::string::npos)
      << refusal(check_host_file(key, "key"));
  // A sticky directory of someone else's: they may rename or remove anything in it.
  dir_mode("theirs", 01777, kSomeoneElse);
  key = file("theirs/key");
  EXPECT_NE(refusal(check_host_file(key, "key")).find("belongs to another user"), std::string::npos);
  // A link of someone else's on the way, even in a sticky directory of the host's: they may point
  // it elsewhere at any time.
  dir_mode("tmp", 01777);
  file("safe/key");
  link("tmp/l", dir + "/safe", kSomeoneElse);
  EXPECT_NE(refusal(check_host_file(dir + "/tmp/l/key", "key")).find("(a link), which belongs to another user"),
            std::string::npos);
  // The same link reached through a link of the host's.
  link("etc-k", dir + "/tmp/l");
  EXPECT_FALSE(check_host_file(dir + "/etc-k/key", "key").ok());
  EXPECT_FALSE(check_host_dirs(dir + "/etc-k/plugin.sock", "socket").ok());
  // A file of the host's, named through a final link into an open directory.
  std::string there = file("open/ca.pem", 0644);
  EXPECT_FALSE(check_host_file(link("ca-link.pem", there), "CA").ok());
  // A file of another user's.
  std::string theirs = file("a/theirs.pem", 0644);
  ASSERT_EQ(::chown(theirs.c_str(), kSomeoneElse, kSomeoneElse), 0);
  EXPECT_NE(refusal(check_host_file(theirs, "CA")).find("belongs to another user"), std::string::npos);
}

}  // namespace
}  // namespace cmkfs::keyclient
