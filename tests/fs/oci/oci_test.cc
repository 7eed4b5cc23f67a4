// Registry content parsed from untrusted bytes: digests, names, manifests and indexes.
#include "fs/oci/oci.h"

#include <gtest/gtest.h>

namespace cmkfs::oci {
namespace {

const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(OciTest, DigestsAreSha256WithLowercaseHexOnly) {
  EXPECT_EQ(parse_digest("sha256:" + kHex)->hex, kHex);
  EXPECT_EQ(parse_digest(" sha256:" + kHex + "\n")->hex, kHex);  // a link file's trailing newline
  EXPECT_FALSE(parse_digest("sha512:" + kHex));
  EXPECT_FALSE(parse_digest("sha256:" + kHex.substr(1)));
  EXPECT_FALSE(parse_digest("sha256:" + kHex + "0"));
  std::string upper = kHex;
  upper[10] = 'A';
  EXPECT_FALSE(parse_digest("sha256:" + upper));
  EXPECT_FALSE(parse_digest("sha256:../../../../etc/passwd" + kHex.substr(22)));
}

TEST(OciTest, RepositoryAndTagGrammar) {
  for (const char* ok : {"alpine", "my-app", "a.b_c", "x__y", "a---b", "0"}) EXPECT_TRUE(valid_repository_component(ok)) << ok;
  for (const char* bad : {"", ".", "..", "-a", "a-", "A", "a..b", "a___b", "a/b", "a:b", "_uploads", "a b"}) {
    EXPECT_FALSE(valid_repository_component(bad)) << bad;
  }
  for (const char* ok : {"latest", "3.19", "v1_2-rc.1", "_x", "A"}) EXPECT_TRUE(valid_tag(ok)) << ok;
  for (const char* bad : {"", ".hidden", "-x", "a/b", "a:b", "..", "a@b"}) EXPECT_FALSE(valid_tag(bad)) << bad;
  EXPECT_FALSE(valid_tag(std::string(129, 'a')));
}

TEST(OciTest, ParsesAnImageManifest) {
  std::string m = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:)" + kHex + R"(","size":7},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:)" + kHex + R"(","size":100},
              {"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:)" + kHex + R"(","size":5},
              {"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:)" + kHex + R"(","size":5}]})";
  auto parsed = parse_manifest(m);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->kind, Manifest::Kind::kImage);
  EXPECT_EQ(parsed->config.size, 7u);
  ASSERT_EQ(parsed->layers.size(), 3u);
  EXPECT_EQ(layer_file_name(0, parsed->layers[0]), "0-" + kHex + ".tar.gz");
  EXPECT_EQ(layer_file_name(1, parsed->layers[1]), "1-" + kHex + ".tar.zst");
  EXPECT_EQ(layer_file_name(2, parsed->layers[2]), "2-" + kHex + ".tar");
}

TEST(OciTest, ParsesAnIndexWithPlatformsAsSafeNames) {
  std::string m = R"({"schemaVersion":2,"manifests":[
    {"digest":"sha256:)" + kHex + R"(","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
    {"digest":"sha256:)" + kHex + R"(","size":1,"platform":{"os":"../..","architecture":"x/y"}},
    {"digest":"sha256:)" + kHex + R"(","size":1}]})";
  auto parsed = parse_manifest(m);
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->kind, Manifest::Kind::kIndex);
  ASSERT_EQ(parsed->manifests.size(), 3u);
  EXPECT_EQ(parsed->manifests[0].platform, "linux-arm64-v8");
  EXPECT_EQ(parsed->manifests[1].platform, ".._..-x_y");  // no '/' can come out of an index
  EXPECT_EQ(parsed->manifests[2].platform, "");
}

TEST(OciTest, RefusesWhatIsNotASchema2Manifest) {
  EXPECT_FALSE(parse_manifest("").ok());
  EXPECT_FALSE(parse_manifest("[]").ok());
  EXPECT_FALSE(parse_manifest(R"({"schemaVersion":1,"fsLayers":[]})").ok());
  EXPECT_FALSE(parse_manifest(R"({"schemaVersion":2,"config":{},"layers":[]})").ok());
  EXPECT_FALSE(parse_manifest(R"({"schemaVersion":2,"manifests":[{"digest":"md5:x","size":1}]})").ok());
  EXPECT_FALSE(parse_manifest(R"({"schemaVersion":2,"manifests":[{"digest":"sha256:)" + kHex + R"(","size":-1}]})").ok());
  EXPECT_FALSE(parse_manifest(std::string(kMaxManifestSize + 1, ' ')).ok());
  // Nesting costs memory (4 MiB of "[[[[" took 156 MB to parse); no manifest nests past a few levels.
  auto nested = [](int depth) {
    return R"({"schemaVersion":2,"manifests":[],"annotations":{"x":)" + std::string(depth, '[') + std::string(depth, ']') + "}}";
  };
  EXPECT_TRUE(parse_manifest(nested(8)).ok());
  EXPECT_FALSE(parse_manifest(nested(100)).ok());
  EXPECT_FALSE(parse_manifest(nested(1 << 20)).ok());
}

}  // namespace
}  // namespace cmkfs::oci
