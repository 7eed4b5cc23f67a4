// Every exit code the README documents, from the situation it names: 1 other, 2 usage, 10 not a
// store, 11 the key, 12 the mountpoint, 13 the store in use; and cmkfs-vault's 0 and 2.
#include "tests/support/vault_fixture.h"

namespace cmkfs::testing {
namespace {

class ExitCodesTest : public MountTest {};

TEST_F(ExitCodesTest, EachDocumentedCodeComesFromTheSituationItNames) {
  init();
  mount();
  stdfs::create_directories(dir + "/notstore");
  stdfs::create_directories(dir + "/mnt2");
  stdfs::create_directories(dir + "/idle");
  std::string bin = cmkfs_binary() + " ";
  struct Row {
    std::string command;
    int code;
    std::string says;
  };
  std::vector<Row> rows = {
      {bin, 2, "subcommand"},
      {bin + "mout", 2, "did you mean 'mount'"},
      {bin + "init", 2, "STORE"},
      {bin + "init " + dir + "/new --key-encryption-key nope", 2, "not a key identifier"},
      {bin + "encryption rotate-key " + store + " --key-encryption-key nope", 2, "not a key identifier"},
      {bin + "encryption show " + dir + "/notstore", 10, "not a cmkfs store"},
      {bin + "fsck " + dir + "/notstore", 10, "not a cmkfs store"},
      {bin + "mount " + dir + "/notstore " + dir + "/mnt2", 10, "not a cmkfs store"},
      {bin + "mount " + store + " " + dir + "/missing", 12, "missing"},
      {bin + "mount " + store + " " + mnt, 12, "busy"},
      {bin + "mount " + store + " " + dir + "/mnt2", 13, "in use"},
      {bin + "umount " + dir + "/idle", 12, "not mounted"},
      {vault_binary() + " bogus", 2, "cmkfs-vault"},
      {vault_binary() + " --version", 0, "cmkfs-vault 0.1.0"},
  };
  for (const auto& row : rows) {
    auto r = run(row.command);
    EXPECT_EQ(r.rc, row.code) << row.command << ": " << r.output;
    EXPECT_NE(r.output.find(row.says), std::string::npos) << row.command << ": " << r.output;
  }
  // A busy mountpoint does not unmount.
  int fd = ::open(at("held").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  auto r = run(bin + "umount " + mnt);
  EXPECT_EQ(r.rc, 12) << r.output;
  EXPECT_NE(r.output.find("busy"), std::string::npos) << r.output;
  ::close(fd);
  umount();
  // Another store's key in place of this one's.
  auto other = run(bin + "init " + dir + "/other --local-key-file " + dir + "/other.key");
  ASSERT_EQ(other.rc, 0) << other.output;
  stdfs::copy_file(dir + "/other.key", key, stdfs::copy_options::overwrite_existing);
  r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_NE(r.output.find("not this store's key"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace cmkfs::testing
