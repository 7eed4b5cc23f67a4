// The built-in key, as gocryptfs users expect it: rotated to a new key file while mounted (the
// old one can then go), or printed by a program at every mount instead of kept in a file.
#include "tests/support/lifecycle.h"

namespace cmkfs::testing {
namespace {

class LocalKeyTest : public MountTest {
 protected:
  CommandResult cmkfs(const std::string& args) { return run(cmkfs_binary() + " " + args); }
  // A key as a local key file holds it, in a private file a command can print.
  std::string key_text_file(const std::string& name) {
    std::string path = dir + "/" + name;
    auto r = run("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' | sed 's/^/cmkfs-local-key-v1 /' > " + path +
                 " && chmod 600 " + path);
    EXPECT_EQ(r.rc, 0) << r.output;
    return path;
  }
};

TEST_F(LocalKeyTest, RotateKeyMovesAMountedStoreToANewKeyFileAndTheOldCanGo) {
  init();
  mount();
  std::string data(300000, 'q');
  write_file(at("f"), data);
  auto r = cmkfs("encryption rotate-key " + store + " --local-key-file " + dir + "/new.key");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("(created, mode 0600)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the old key file " + key + " is no longer needed"), std::string::npos) << r.output;
  EXPECT_EQ(show()["localKeyFile"], dir + "/new.key");
  EXPECT_EQ(read_file(at("f")), data);  // the mount goes on: only the wrapped data key changed
  stdfs::copy_file(key, dir + "/old.key");
  stdfs::remove(key);
  remount();
  EXPECT_EQ(read_file(at("f")), data);
  // The old key opens nothing any more.
  umount();
  r = cmkfs("trust " + store + " --local-key-file " + dir + "/old.key");
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("not this store's key"), std::string::npos) << r.output;
}

TEST_F(LocalKeyTest, TheKeyCanComeFromAProgramAtEveryMount) {
  std::string text = key_text_file("keytext");
  auto r = cmkfs("init " + store + " --local-key-command 'cat " + text + "'");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_EQ(show()["localKeyCommand"], "cat " + text);
  EXPECT_FALSE(stdfs::exists(key));  // no key file was made
  mount();
  write_file(at("f"), "from a command");
  remount();
  EXPECT_EQ(read_file(at("f")), "from a command");
  umount();
  // A command that fails, or prints something else, opens nothing, with a clear line.
  std::string saved = read_file(text);
  write_file(text, "not a key");
  r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_NE(r.output.find("not a cmkfs key"), std::string::npos) << r.output;
  stdfs::remove(text);
  r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_NE(r.output.find("the local key command failed"), std::string::npos) << r.output;
  write_file(text, saved);
  // And from the command to a key file, which init's default place then holds.
  r = cmkfs("encryption rotate-key " + store + " --local-key-file " + key);
  ASSERT_EQ(r.rc, 0) << r.output;
  stdfs::remove(text);
  mount();
  EXPECT_EQ(read_file(at("f")), "from a command");
}

}  // namespace
}  // namespace cmkfs::testing
