// The kernel's mount table as cmkfs reads it.
#include <gtest/gtest.h>

#include "fs/fuse/mount_table.h"

namespace cmkfs::testing {
namespace {

TEST(MountTable, ParsesMountinfoWithEscapesAndOptionalFields) {
  std::string text =
      "22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n"
      "97 29 0:52 / /tmp/a\\040b rw,nosuid,nodev shared:40 master:1 - fuse.cmkfs cmkfs:/srv/my\\040store rw\n"
      "truncated line\n"
      "98 29 0:53 / /mnt rw - tmpfs tmpfs rw\n";
  auto m = fs::parse_mountinfo(text);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[1].device, "0:52");
  EXPECT_EQ(m[1].target, "/tmp/a b");
  EXPECT_EQ(m[1].type, "fuse.cmkfs");
  EXPECT_EQ(m[1].source, "cmkfs:/srv/my store");
  EXPECT_EQ(m[2].target, "/mnt");
  EXPECT_EQ(m[2].type, "tmpfs");
}

// fusermount3 lets any user name a mount "cmkfs:/srv/store" with subtype cmkfs; only user_id,
// which the kernel sets to the mounting user, tells a mount a cmkfs daemon made.
TEST(MountTable, OnlyMountsOfThisUserOrRootNameAStore) {
  auto m = fs::parse_mountinfo(
      "97 29 0:52 / /srv/mnt rw - fuse.cmkfs cmkfs:/srv/store rw,user_id=0,group_id=0,default_permissions\n"
      "98 29 0:53 / /home/eve/mnt rw - fuse.cmkfs cmkfs:/srv/store rw,user_id=1000,group_id=1000\n"
      "99 29 0:54 / /home/eve/other rw - fuse.sshfs cmkfs:/srv/store rw,user_id=0,group_id=0\n");
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].options, "rw,user_id=0,group_id=0,default_permissions");
  EXPECT_TRUE(fs::cmkfs_mount_of(m[0], 0));
  EXPECT_TRUE(fs::cmkfs_mount_of(m[0], 1000));  // root's mount, seen by a user
  EXPECT_FALSE(fs::cmkfs_mount_of(m[1], 0));    // a user's mount that calls itself cmkfs
  EXPECT_TRUE(fs::cmkfs_mount_of(m[1], 1000));
  EXPECT_FALSE(fs::cmkfs_mount_of(m[2], 0));    // another filesystem
}

}  // namespace
}  // namespace cmkfs::testing
