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

}  // namespace
}  // namespace cmkfs::testing
