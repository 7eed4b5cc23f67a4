// What the registry view reads from a store: manifests and indexes, link files (digests),
// repository and tag names.
#include <cstdint>
#include <string_view>

#include "fs/oci/oci.h"

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
  return 0;
}
