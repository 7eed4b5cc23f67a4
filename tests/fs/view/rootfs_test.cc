// An image's filesystem from hostile layers: tar entries of types no runtime unpacks, hard links
// through their own names and layers that name millions of directories are skipped or refused,
// never followed into a crash or all of memory; whiteouts and hard links still apply as runtimes
// apply them.
#include "fs/view/rootfs.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace cmkfs::fs::view {
namespace {

oci::TarEntry entry(const std::string& path, char type, const std::string& link = "") {
  oci::TarEntry e;
  e.path = path, e.type = type, e.link = link, e.mode = 0644;
  if (type == '0') e.size = 10;
  return e;
}

std::shared_ptr<oci::LayerIndex> layer(std::vector<oci::TarEntry> entries) {
  auto l = std::make_shared<oci::LayerIndex>();
  l->entries = std::move(entries);
  return l;
}

TEST(RootfsTest, WhiteoutsAndHardLinksApplyAsRuntimesApplyThem) {
  auto fs = Rootfs::apply({layer({entry("etc", '5'), entry("etc/a", '0'), entry("etc/b", '0'), entry("c", '0')}),
                           layer({entry("etc/.wh.a", '0'), entry("d", '1', "etc/b"), entry("e", '2', "c")})});
  ASSERT_TRUE(fs.ok()) << fs.status().message();
  EXPECT_EQ((*fs)->find("etc/a"), nullptr);
  ASSERT_NE((*fs)->find("d"), nullptr);
  EXPECT_EQ((*fs)->find("d"), (*fs)->find("etc/b"));
  EXPECT_EQ((*fs)->find("d")->nlink, 2u);
  EXPECT_EQ((*fs)->find("e")->link, "c");
  EXPECT_GT((*fs)->memory(), 0u);
}

// Each of these crashed the daemon on the first `ls` of the image's rootfs/: the entry's name
// was put in its directory, empty, before its type or its link's target was known.
TEST(RootfsTest, TypesNoRuntimeMakesAndLinksThroughTheirOwnNameAreSkipped) {
  for (char type : {'S', '9', 'V', 'M', 'N', 'D'}) {
    auto fs = Rootfs::apply({layer({entry("odd", type), entry("f", '0')})});
    ASSERT_TRUE(fs.ok()) << type;
    EXPECT_EQ((*fs)->find("odd"), nullptr) << type;
    EXPECT_NE((*fs)->find("f"), nullptr) << type;
    // A directory's entry below one of them makes the directory, as runtimes do.
    fs = Rootfs::apply({layer({entry("odd", type), entry("odd/below", '0')})});
    ASSERT_TRUE(fs.ok()) << type;
    EXPECT_NE((*fs)->find("odd/below"), nullptr) << type;
  }
  auto fs = Rootfs::apply({layer({entry("x", '1', "x/y/z"), entry("y", '1', "y"), entry("f", '0')})});
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ((*fs)->find("x"), nullptr);
  EXPECT_EQ((*fs)->find("y"), nullptr);
  EXPECT_NE((*fs)->find("f"), nullptr);
  // A name longer than NAME_MAX: the kernel failed the whole directory's listing with EIO.
  std::string longest(255, 'n'), too_long(256, 'n');
  fs = Rootfs::apply({layer({entry("d/" + too_long, '0'), entry(too_long + "/f", '0'), entry("d/" + longest, '0')})});
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ((*fs)->find("d/" + too_long), nullptr);
  EXPECT_EQ((*fs)->find(too_long), nullptr);
  EXPECT_NE((*fs)->find("d/" + longest), nullptr);
}

// A path of 4 KiB makes 2,000 directories; a few thousand such entries, gigabytes of nodes and
// of their paths. Refused with EFBIG at the limits, whichever is reached first.
TEST(RootfsTest, ALayerNamingTooManyDirectoriesOrTooLongPathsIsRefused) {
  std::vector<oci::TarEntry> deep;
  for (int i = 0; i < 40; ++i) {
    std::string p = "d" + std::to_string(i);
    for (int k = 0; k < 1000; ++k) p += "/a";
    deep.push_back(entry(p, '0'));
  }
  auto l = layer(deep);
  auto nodes = Rootfs::apply({l}, RootfsLimits{.nodes = 20000, .made = 1 << 30, .path_bytes = size_t{1} << 30});
  ASSERT_FALSE(nodes.ok());
  EXPECT_EQ(nodes.status().code(), EFBIG);
  EXPECT_NE(nodes.status().message().find("20000 files and directories"), std::string::npos) << nodes.status().message();
  auto paths = Rootfs::apply({l}, RootfsLimits{.nodes = 100000, .made = 1 << 30, .path_bytes = 10 << 20});
  ASSERT_FALSE(paths.ok());
  EXPECT_EQ(paths.status().code(), EFBIG);
  EXPECT_NE(paths.status().message().find("MiB of paths"), std::string::npos) << paths.status().message();
  // Within both, it applies: 40,040 nodes, 40 chains of paths up to 2 KB.
  auto fits = Rootfs::apply({l}, RootfsLimits{.nodes = 100000, .made = 1 << 30, .path_bytes = 100 << 20});
  ASSERT_TRUE(fits.ok()) << fits.status().message();
  EXPECT_NE((*fits)->find(deep[7].path), nullptr);
}

// The limit is on nodes at once: a layer that replaces every file of the one below (a chown -R)
// makes twice as many as the image holds. The work is bounded apart.
TEST(RootfsTest, FilesReplacedByALaterLayerCountOnce) {
  std::vector<oci::TarEntry> files;
  for (int i = 0; i < 80; ++i) files.push_back(entry("f" + std::to_string(i), '0'));
  auto l = layer(files);
  auto fs = Rootfs::apply({l, l, l}, RootfsLimits{.nodes = 100, .made = 1000, .path_bytes = 1 << 20});
  ASSERT_TRUE(fs.ok()) << fs.status().message();
  EXPECT_NE((*fs)->find("f79"), nullptr);
  auto work = Rootfs::apply({l, l, l}, RootfsLimits{.nodes = 100, .made = 200, .path_bytes = 1 << 20});
  ASSERT_FALSE(work.ok());
  EXPECT_NE(work.status().message().find("200 files and directories made"), std::string::npos) << work.status().message();
}

}  // namespace
}  // namespace cmkfs::fs::view
