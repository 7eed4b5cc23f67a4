// The registry view over a real store (objects in memory), driven as the FUSE session drives it:
// names from link files, files from blobs checked against their digests, hostile layouts
// refused, EACCES after revocation. No mount, no root.
#include "fs/view/view.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"
#include "tests/support/store_fixture.h"
#include "tests/support/tar_writer.h"

namespace cmkfs::testing {
namespace {

std::string sha256_hex(const std::string& s) {
  crypto::Sha256 h;
  h.update(crypto::Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  return to_hex(h.finish());
}

class ViewTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    fsys = std::make_unique<fs::Filesystem>(*store, keyring);
    ASSERT_TRUE(fsys->start().ok());
    view = std::make_unique<fs::RegistryView>(*fsys, keyring, fs::ViewOptions{.registry_root = "", .refresh = std::chrono::milliseconds(0)});
  }
  void TearDown() override {
    view.reset();
    EXPECT_TRUE(fsys->shutdown().ok());
    fsys.reset();
    StoreTest::TearDown();
  }

  // mkdir -p of `path` below the root; returns its inode.
  uint64_t dirs(const std::string& path) {
    uint64_t ino = meta::kRootIno;
    size_t start = 0;
    while (start < path.size()) {
      size_t slash = path.find('/', start);
      std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      start = slash == std::string::npos ? path.size() : slash + 1;
      meta::InodeRecord rec;
      if (fsys->lookup(ino, part, &rec) != 0) EXPECT_EQ(fsys->mkdir(ino, part, 0755, {}, &rec), 0) << part;
      else fsys->forget(rec.ino, 1);
      ino = rec.ino;
    }
    return ino;
  }
  void file(const std::string& path, const std::string& content) {
    size_t slash = path.rfind('/');
    uint64_t parent = dirs(path.substr(0, slash));
    meta::InodeRecord rec;
    fs::Handle* h = nullptr;
    std::string name = path.substr(slash + 1);
    if (fsys->lookup(parent, name, &rec) == 0) {
      ASSERT_EQ(fsys->open(rec.ino, O_RDWR | O_TRUNC, &h), 0) << path;
    } else {
      ASSERT_EQ(fsys->create(parent, name, 0644, O_RDWR, {}, &rec, &h), 0) << path;
    }
    size_t n = 0;
    ASSERT_EQ(fsys->write(h, 0, crypto::Bytes(reinterpret_cast<const uint8_t*>(content.data()), content.size()), &n), 0);
    fsys->release(h);
    fsys->forget(rec.ino, 1);
  }
  // A blob in the registry's layout; returns its digest hex (of `named_as`, if given).
  std::string blob(const std::string& content, std::string named_as = "") {
    std::string hex = sha256_hex(named_as.empty() ? content : named_as);
    file(kReg + "/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data", content);
    return hex;
  }
  // An image of one layer, tagged in `repo`; returns the manifest's digest hex.
  std::string push(const std::string& repo, const std::string& tag, const std::string& layer = "layer bytes") {
    std::string config = R"({"architecture":"amd64","os":"linux"})";
    std::string c = blob(config), l = blob(layer);
    std::string manifest = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                           R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:)" + c +
                           R"(","size":)" + std::to_string(config.size()) +
                           R"(},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:)" +
                           l + R"(","size":)" + std::to_string(layer.size()) + "}]}";
    std::string m = blob(manifest);
    std::string r = kReg + "/repositories/" + repo + "/_manifests/";
    file(r + "tags/" + tag + "/current/link", "sha256:" + m);
    file(r + "revisions/sha256/" + m + "/link", "sha256:" + m);
    return m;
  }

  int walk(const std::string& path, fs::ViewAttr* out) {
    uint64_t ino = 1;
    size_t start = 0;
    while (start < path.size()) {
      size_t slash = path.find('/', start);
      std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      start = slash == std::string::npos ? path.size() : slash + 1;
      if (int err = view->lookup(ino, part, out); err != 0) return err;
      ino = out->ino;
    }
    return 0;
  }
  std::vector<std::string> ls(const std::string& path) {
    fs::ViewAttr a;
    if (!path.empty()) {
      EXPECT_EQ(walk(path, &a), 0) << path;
    }
    std::vector<std::string> names;
    EXPECT_EQ(view->readdir(path.empty() ? 1 : a.ino, 0, [&](std::string_view n, uint64_t, uint32_t, uint64_t) {
      names.emplace_back(n);
      return true;
    }), 0);
    return names;
  }
  int cat(const std::string& path, std::string* out) {
    fs::ViewAttr a;
    if (int err = walk(path, &a); err != 0) return err;
    fs::RegistryView::File* f = nullptr;
    if (int err = view->open(a.ino, O_RDONLY, &f); err != 0) return err;
    out->assign(a.size, '\0');
    size_t n = 0;
    int err = view->read(f, 0, crypto::MutableBytes(reinterpret_cast<uint8_t*>(out->data()), out->size()), &n);
    out->resize(n);
    view->release(f);
    return err;
  }

  std::string kReg = "docker/registry/v2";  // where push() writes
  std::ostringstream log_text;
  std::unique_ptr<fs::Filesystem> fsys;
  std::unique_ptr<fs::RegistryView> view;
};

TEST_F(ViewTest, ImagesByTagAndDigestWithTheirBlobs) {
  std::string m = push("library/alpine", "3.19");
  EXPECT_EQ(ls(""), std::vector<std::string>{"library"});
  EXPECT_EQ(ls("library"), (std::vector<std::string>{"alpine:3.19", "alpine@sha256:" + m}));
  EXPECT_EQ(ls("library/alpine:3.19"), (std::vector<std::string>{"manifest.json", "config.json", "layers"}));
  std::string manifest, config, layer;
  ASSERT_EQ(cat("library/alpine:3.19/manifest.json", &manifest), 0);
  EXPECT_EQ(sha256_hex(manifest), m);
  ASSERT_EQ(cat("library/alpine@sha256:" + m + "/config.json", &config), 0);
  EXPECT_EQ(config, R"({"architecture":"amd64","os":"linux"})");
  auto layers = ls("library/alpine:3.19/layers");
  ASSERT_EQ(layers.size(), 1u);
  EXPECT_EQ(layers[0], "0-" + sha256_hex("layer bytes") + ".tar.gz");
  ASSERT_EQ(cat("library/alpine:3.19/layers/" + layers[0], &layer), 0);
  EXPECT_EQ(layer, "layer bytes");
  EXPECT_EQ(view->registry_root(), "");
  fs::ViewAttr a;
  ASSERT_EQ(walk("library/alpine:3.19/manifest.json", &a), 0);
  EXPECT_EQ(a.mode, S_IFREG | 0444u);
  fs::RegistryView::File* f = nullptr;
  EXPECT_EQ(view->open(a.ino, O_RDWR, &f), EROFS);
}

TEST_F(ViewTest, FindsARegistryBelowTheRootAndFollowsPushesAndDeletes) {
  kReg = "srv/registry/docker/registry/v2";  // a registry whose rootdirectory is below the root
  std::string m1 = push("app", "v1");
  EXPECT_EQ(ls(""), (std::vector<std::string>{"app:v1", "app@sha256:" + m1}));
  EXPECT_EQ(view->registry_root(), "srv/registry");
  std::string m2 = push("app", "v2", "other layer");
  EXPECT_EQ(ls("").size(), 4u);  // both tags, both digests
  fs::ViewAttr a;
  EXPECT_EQ(walk("app:v2/manifest.json", &a), 0);
  // The registry deletes a manifest: its revision link goes, and the tag that named it.
  ASSERT_EQ(fsys->unlink(dirs(kReg + "/repositories/app/_manifests/revisions/sha256/" + m2), "link"), 0);
  ASSERT_EQ(fsys->unlink(dirs(kReg + "/repositories/app/_manifests/tags/v2/current"), "link"), 0);
  EXPECT_EQ(walk("app:v2", &a), ENOENT);
  EXPECT_EQ(walk("app@sha256:" + m2, &a), ENOENT);
  EXPECT_EQ(walk("app:v1/config.json", &a), 0);
}

TEST_F(ViewTest, ABlobThatDoesNotMatchItsDigestReadsEio) {
  push("app", "v1");
  std::string layer = sha256_hex("layer bytes");
  file(kReg + "/blobs/sha256/" + layer.substr(0, 2) + "/" + layer + "/data", "layer bytez");
  std::string out;
  EXPECT_EQ(cat("app:v1/layers/0-" + layer + ".tar.gz", &out), EIO);
  EXPECT_EQ(cat("app:v1/config.json", &out), 0);
  // A tag naming a manifest whose bytes are not its digest's: the image cannot be listed.
  std::string forged = blob(R"({"schemaVersion":2,"config":{},"layers":[]})", "something else");
  file(kReg + "/repositories/app/_manifests/tags/bad/current/link", "sha256:" + forged);
  fs::ViewAttr a;
  ASSERT_EQ(walk("app:bad", &a), 0);
  EXPECT_EQ(walk("app:bad/manifest.json", &a), EIO);
}

// rootfs/ serves a file from the layer's index (by digest) and the layer blob the image's layout
// holds now: those bytes must still be the digest's. A layer blob rewritten in place after it
// was indexed, and an OCI layout elsewhere in the store naming the same manifest with a forged
// layer of the same size, served the forger's bytes under the genuine digest.
TEST_F(ViewTest, RootfsServesOnlyBytesThatMatchTheLayersDigest) {
  std::vector<uint8_t> tar;
  tar_entry(&tar, "etc/motd", '0', "genuine text");
  tar_end(&tar);
  std::string layer(tar.begin(), tar.end()), forged = layer;
  forged.replace(forged.find("genuine text"), 12, "forged! text");
  push("app", "v1", layer);
  std::string out, manifest, config;
  ASSERT_EQ(cat("app:v1/rootfs/etc/motd", &out), 0);
  EXPECT_EQ(out, "genuine text");
  ASSERT_EQ(cat("app:v1/manifest.json", &manifest), 0);
  ASSERT_EQ(cat("app:v1/config.json", &config), 0);
  std::string blobs = "layouts/evil/blobs/sha256/", m = sha256_hex(manifest);
  file(blobs + m, manifest);
  file(blobs + sha256_hex(config), config);
  file(blobs + sha256_hex(layer), forged);
  file("layouts/evil/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  file("layouts/evil/index.json", R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                                  R"("digest":"sha256:)" + m + R"(","size":)" + std::to_string(manifest.size()) +
                                  R"(,"annotations":{"org.opencontainers.image.ref.name":"1.0"}}]})");
  fs::ViewAttr a;
  ASSERT_EQ(walk("oci/layouts/evil:1.0/rootfs/etc/motd", &a), 0);
  EXPECT_EQ(cat("oci/layouts/evil:1.0/rootfs/etc/motd", &out), EIO) << out;
  EXPECT_EQ(cat("app:v1/rootfs/etc/motd", &out), 0);  // the registry's own layer is still whole
  EXPECT_EQ(out, "genuine text");
  std::string hex = sha256_hex(layer);
  file(kReg + "/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data", forged);
  EXPECT_EQ(cat("app:v1/rootfs/etc/motd", &out), EIO) << out;
}

// A rootfs/ directory is read in many READDIRs of a few dozen entries each; an open directory's
// cursor goes on where the last stopped (each had walked to its offset: quadratic in a directory
// of a million entries). The same entries, in order, each once, with and without one, and after
// a seek.
TEST_F(ViewTest, ARootfsDirectoryReadsWholeInSmallBatches) {
  std::vector<uint8_t> tar;
  std::vector<std::string> want;
  tar_entry(&tar, "big", '5');
  for (int i = 0; i < 2000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "f%05d", i);
    want.emplace_back(name);
    tar_entry(&tar, std::string("big/") + name, '0', "x");
  }
  tar_end(&tar);
  push("app", "v1", std::string(tar.begin(), tar.end()));
  fs::ViewAttr dir;
  ASSERT_EQ(walk("app:v1/rootfs/big", &dir), 0);
  auto read_all = [&](fs::RegistryView::DirCursor* cursor, uint64_t from) {
    std::vector<std::string> got;
    for (uint64_t offset = from;;) {
      size_t batch = 0;
      uint64_t next = offset;
      EXPECT_EQ(view->readdir(dir.ino, offset, [&](std::string_view n, uint64_t, uint32_t, uint64_t off) {
        if (++batch > 37) return false;  // the reply is full
        got.emplace_back(n);
        next = off;
        return true;
      }, cursor), 0);
      if (next == offset) return got;
      offset = next;
    }
  };
  EXPECT_EQ(read_all(nullptr, 0), want);
  fs::RegistryView::DirCursor* cursor = fs::RegistryView::new_dir_cursor();
  EXPECT_EQ(read_all(cursor, 0), want);
  EXPECT_EQ(read_all(cursor, 0), want);  // rewound
  EXPECT_EQ(read_all(cursor, 1990), std::vector<std::string>(want.begin() + 1990, want.end()));  // seeked
  fs::RegistryView::free_dir_cursor(cursor);
}

// An image whose layers cannot be built (a layer not matching its digest here; a decompression
// bomb takes minutes) is not built again at every look, until one of its layer blobs changes.
TEST_F(ViewTest, AnUnbuildableRootfsIsNotRebuiltUntilItsLayersChange) {
  auto log = std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("view", log));
  std::vector<uint8_t> tar;
  tar_entry(&tar, "etc/motd", '0', "hello");
  tar_end(&tar);
  std::string layer(tar.begin(), tar.end()), hex = sha256_hex(layer);
  push("app", "v1", layer);
  std::string data = kReg + "/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data";
  file(data, layer + "x");
  fs::ViewAttr a;
  ASSERT_EQ(walk("app:v1", &a), 0);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(walk("app:v1/rootfs/etc", &a), EIO);
  auto builds = [&] {
    std::string text = log_text.str();
    size_t n = 0;
    for (size_t at = 0; (at = text.find("layer sha256:" + hex + " does not match", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  EXPECT_EQ(builds(), 1u);
  file(data, layer);  // repaired: built at the next look
  EXPECT_EQ(walk("app:v1/rootfs/etc/motd", &a), 0);
  std::string out;
  EXPECT_EQ(cat("app:v1/rootfs/etc/motd", &out), 0);
  EXPECT_EQ(out, "hello");
  spdlog::set_default_logger(previous);
}

// Inode numbers the kernel holds no lookup of go past a bound (a crawl over every image's
// rootfs/ kept one per path it ever saw); one it holds stays until it forgets it.
TEST_F(ViewTest, InodeNumbersTheKernelDoesNotHoldAreBounded) {
  view = std::make_unique<fs::RegistryView>(*fsys, keyring, fs::ViewOptions{.registry_root = "", .refresh = std::chrono::milliseconds(0), .idle_inodes = 100});
  std::vector<uint8_t> tar;
  tar_entry(&tar, "big", '5');
  for (int i = 0; i < 500; ++i) tar_entry(&tar, "big/f" + std::to_string(i), '0', "x");
  tar_end(&tar);
  push("app", "v1", std::string(tar.begin(), tar.end()));
  fs::ViewAttr held;
  ASSERT_EQ(walk("app:v1/rootfs/big/f7", &held), 0);  // looked up: the kernel holds it
  EXPECT_EQ(ls("app:v1/rootfs/big").size(), 500u);
  EXPECT_LE(view->inodes().size(), 110u);
  fs::ViewAttr a;
  EXPECT_EQ(view->getattr(held.ino, &a), 0);
  // Forgotten as often as looked up, it goes with the next crawl, and its path gets a new number.
  view->forget(held.ino, 1);
  EXPECT_EQ(ls("app:v1/rootfs/big").size(), 500u);
  EXPECT_EQ(view->getattr(held.ino, &a), ESTALE);
  ASSERT_EQ(walk("app:v1/rootfs/big/f7", &a), 0);
  EXPECT_NE(a.ino, held.ino);
  std::string out;
  EXPECT_EQ(cat("app:v1/rootfs/big/f7", &out), 0);
  EXPECT_EQ(out, "x");
}

TEST_F(ViewTest, HostileNamesLinksAndSizesAreRefused) {
  push("good", "v1");
  std::string m = push("evil", "v1");
  // Names outside the distribution grammar are not shown (no "..", no upper case, no '_' dirs).
  file(kReg + "/repositories/UPPER/_manifests/tags/v1/current/link", "sha256:" + m);
  file(kReg + "/repositories/evil/_manifests/tags/.hidden/current/link", "sha256:" + m);
  // A tag whose link is a symbolic link is not followed.
  uint64_t cur = dirs(kReg + "/repositories/evil/_manifests/tags/sym/current");
  meta::InodeRecord rec;
  ASSERT_EQ(fsys->symlink("/etc/passwd", cur, "link", {}, &rec), 0);
  fsys->forget(rec.ino, 1);
  // A link that is not a digest, and one far too long to be one.
  file(kReg + "/repositories/evil/_manifests/tags/junk/current/link", "sha256:../../../../etc/shadow");
  file(kReg + "/repositories/evil/_manifests/tags/big/current/link", std::string(1 << 20, 'a'));
  // A manifest larger than any registry accepts.
  std::string huge = blob(std::string(oci::kMaxManifestSize + 1, ' '));
  file(kReg + "/repositories/evil/_manifests/tags/huge/current/link", "sha256:" + huge);
  auto top = ls("");
  EXPECT_EQ(std::count(top.begin(), top.end(), "UPPER:v1"), 0);
  EXPECT_EQ(std::count(top.begin(), top.end(), "evil:.hidden"), 0);
  EXPECT_EQ(std::count(top.begin(), top.end(), "evil:sym"), 0);
  EXPECT_EQ(std::count(top.begin(), top.end(), "evil:junk"), 0);
  EXPECT_EQ(std::count(top.begin(), top.end(), "evil:big"), 0);
  EXPECT_EQ(std::count(top.begin(), top.end(), "evil:v1"), 1);
  fs::ViewAttr a;
  ASSERT_EQ(walk("evil:huge", &a), 0);
  EXPECT_EQ(walk("evil:huge/manifest.json", &a), EFBIG);
  EXPECT_EQ(walk("good:v1/config.json", &a), 0);
}

TEST_F(ViewTest, RevokedKeyAnswersEaccesEverywhere) {
  push("app", "v1");
  fs::ViewAttr a;
  ASSERT_EQ(walk("app:v1/manifest.json", &a), 0);
  uint64_t file_ino = a.ino;
  keyring.revoke();
  EXPECT_EQ(view->lookup(1, "app:v1", &a), EACCES);
  EXPECT_EQ(view->getattr(file_ino, &a), EACCES);
  fs::RegistryView::File* f = nullptr;
  EXPECT_EQ(view->open(file_ino, O_RDONLY, &f), EACCES);
  EXPECT_EQ(view->readdir(1, 0, [](std::string_view, uint64_t, uint32_t, uint64_t) { return true; }), EACCES);
  ASSERT_TRUE(keyring.install(store->super.dek_generation, dek.clone()).ok());  // restored
  EXPECT_EQ(view->getattr(file_ino, &a), 0);
}

}  // namespace
}  // namespace cmkfs::testing
