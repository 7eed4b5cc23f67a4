// cmkfs mounted the way an operator's system mounts things: `mount -t fuse` and an fstab line,
// through mount(8) and mount.fuse3 (which run `cmkfs STORE MNT -o OPTS`), with cmkfs's own flags
// as options and what mount(8) and systemd add ignored. The program is named in the source
// (`/usr/bin/cmkfs#STORE`), as fuse allows: mount(8) gives its helpers a PATH of its own, so
// `-t fuse.cmkfs` finds cmkfs only where a package installs it.
#include "tests/support/mount_fixture.h"

namespace cmkfs::testing {
namespace {

class FstabTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    init();
    source = cmkfs_binary() + "#" + store;
  }
  void expect_mounted_and_working() {
    std::string mounts = read_file("/proc/self/mounts");
    EXPECT_NE(mounts.find("cmkfs:" + store + " " + mnt + " fuse.cmkfs"), std::string::npos) << mounts;
    mounted = mounts.find(" " + mnt + " ") != std::string::npos;
    write_file(at("f"), "through mount(8)");
    EXPECT_EQ(read_file(at("f")), "through mount(8)");
    EXPECT_NE(read_file(log).find("mounted store"), std::string::npos);  // log-file= took effect
  }
  std::string source;
};

TEST_F(FstabTest, MountTypeFuseWithFlagsAsOptions) {
  auto r = run("mount -t fuse " + source + " " + mnt + " -o _netdev,nofail,key-check-interval=5s,log-file=" +
               log + ",audit-log=" + dir + "/audit.jsonl,x-systemd.requires=network-online.target");
  ASSERT_EQ(r.rc, 0) << r.output;
  expect_mounted_and_working();
  EXPECT_NE(read_file(dir + "/audit.jsonl").find("\"event\":\"unwrap\""), std::string::npos);
  umount();
}

TEST_F(FstabTest, AnFstabLineMountsWithMountMnt) {
  std::string tab = dir + "/fstab";
  write_file(tab, source + " " + mnt + " fuse defaults,_netdev,nofail,noauto,log-file=" + log + " 0 0\n");
  auto r = run("mount -T " + tab + " " + mnt);
  ASSERT_EQ(r.rc, 0) << r.output;
  expect_mounted_and_working();
  umount();
}

TEST_F(FstabTest, AnUnknownOptionIsRefusedBeforeTheKeyIsUnwrapped) {
  auto r = run("mount -t fuse " + source + " " + mnt + " -o audit-log=" + dir +
               "/audit.jsonl,bogus-option,log-file=" + log);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("unknown mount option bogus-option"), std::string::npos) << r.output;
  EXPECT_FALSE(stdfs::exists(dir + "/audit.jsonl"));  // no unwrap was audited: none was made
  EXPECT_FALSE(stdfs::exists(log));
}

}  // namespace
}  // namespace cmkfs::testing
