// What the registry view reads from a store: manifests and indexes, link files (digests),
// repository and tag names, and layers: tar archives, plain or in gzip streams, and the image
// filesystem their entries make.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fs/oci/gzip_index.h"
#include "fs/oci/oci.h"
#include "fs/oci/tar.h"
#include "fs/oci/zstd_index.h"
#include "fs/view/rootfs.h"

using namespace cmkfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto m = oci::parse_manifest(text); m.ok()) {
    for (size_t i = 0; i < m->layers.size(); ++i) (void)oci::layer_file_name(i, m->layers[i]);
    for (const auto& d : m->manifests) {
      if (d.platform.find('/') != std::string::npos) __builtin_trap();  // it becomes a directory name
    }
  }
  (void)oci::parse_digest(text);
  (void)oci::valid_repository_component(text);
  (void)oci::valid_tag(text);

  // A layer: the bytes as a tar, in uneven pieces, and as a gzip stream holding one.
  oci::TarReader tar;
  for (size_t off = 0; off < size; off += 777) (void)tar.feed(data + off, std::min<size_t>(777, size - off));
  (void)tar.finish();
  for (const auto& e : tar.entries()) {
    if (e.path == ".." || e.path.rfind("../", 0) == 0 || e.path.find("/../") != std::string::npos) __builtin_trap();
  }
  // The entries as a layer, twice (the second over the first: whiteouts, links to below).
  auto layer = std::make_shared<oci::LayerIndex>();
  layer->entries = tar.entries();
  if (auto fs = fs::view::Rootfs::apply({layer, layer}, {.nodes = 1 << 16, .made = 1 << 18, .path_bytes = 16 << 20}); fs.ok()) {
    for (const auto& e : layer->entries) {
      const fs::view::RootfsNode* n = (*fs)->find(e.path);
      if (n != nullptr && n->path.empty() && !e.path.empty()) __builtin_trap();  // every node has its name
    }
  }
  oci::ReadAt read = [&](uint64_t off, uint8_t* buf, size_t len, size_t* n) {
    *n = off >= size ? 0 : std::min<size_t>(len, size - off);
    if (*n) std::memcpy(buf, data + off, *n);
    return Status::Ok();
  };
  oci::TarReader inner;
  auto none = [](const uint8_t*, size_t) { return Status::Ok(); };
  auto gz = oci::GzipIndex::build(read, none, [&](const uint8_t* p, size_t n) { return inner.feed(p, n); }, 4096,
                                  64 << 20);
  if (gz.ok() && gz->size() > 0) {
    uint8_t out[512];
    size_t n = 0;
    (void)gz->read(read, gz->size() / 2, out, sizeof out, &n);
  }
  oci::TarReader in_zstd;
  auto zs = oci::ZstdIndex::build(read, none, [&](const uint8_t* p, size_t n) { return in_zstd.feed(p, n); }, 64 << 20);
  if (zs.ok() && zs->size() > 0) {
    uint8_t out[512];
    size_t n = 0;
    (void)zs->read(read, zs->size() / 2, out, sizeof out, &n);
  }
  return 0;
}
