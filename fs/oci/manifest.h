// Content digests, repository and tag names, image manifests and indexes (OCI and Docker
// schema 2), parsed from untrusted bytes. Pure: no store, no FUSE, fuzzed (tests/fuzz). Anything
// that does not parse is refused, never guessed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/base/status.h"

namespace cmkfs::oci {

// A sha256 content digest; `hex` is 64 lowercase hex digits. Other algorithms are not accepted.
struct Digest {
  std::string hex;
  std::string str() const { return "sha256:" + hex; }
  bool operator==(const Digest&) const = default;
};
std::optional<Digest> parse_digest(std::string_view text);  // "sha256:<hex>", surrounding space trimmed
bool is_digest_hex(std::string_view hex);
// Whether `bytes` are what `d` names.
bool digest_matches(const Digest& d, std::string_view bytes);

// The distribution registry's filesystem layout, below its root directory.
constexpr std::string_view kRegistryDir = "docker/registry/v2";
std::string registry_blob_path(const Digest& d);  // docker/registry/v2/blobs/sha256/<xx>/<hex>/data
// docker/registry/v2/repositories/<repo>/_manifests/tags, a tag's <tag>/current/link in it, and
// the revision link of a manifest.
std::string registry_tags_dir(std::string_view repo);
std::string registry_tag_link(std::string_view repo, std::string_view tag);
std::string registry_revision_link(std::string_view repo, const Digest& d);

// The distribution spec's grammar: path components of [a-z0-9] runs joined by '.', '_', '__' or
// dashes, at most 255 characters in all; a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
bool valid_repository_component(std::string_view name);
bool valid_tag(std::string_view tag);

struct Descriptor {
  std::string media_type;
  Digest digest;
  uint64_t size = 0;
  std::string platform;  // index entries: "<os>-<arch>[-<variant>]", "" when not given
  std::string ref_name;  // index entries: annotation org.opencontainers.image.ref.name, or ""
};

struct Manifest {
  enum class Kind { kImage, kIndex } kind = Kind::kImage;
  std::string media_type;
  Descriptor config;                   // kImage
  std::vector<Descriptor> layers;      // kImage, in order
  std::vector<Descriptor> manifests;   // kIndex
};

// The largest manifest read (the distribution registry refuses larger ones at 4 MiB).
constexpr uint64_t kMaxManifestSize = 4 << 20;

// Parses an image manifest, an image index or a manifest list. EINVAL, with what is wrong, for
// anything else (schema 1, foreign layers aside: they are descriptors like any other).
Result<Manifest> parse_manifest(std::string_view bytes);

// The file name of the n-th layer in a view: "<n>-<hex>.tar.gz", ".tar.zst" or ".tar".
std::string layer_file_name(size_t n, const Descriptor& layer);

}  // namespace cmkfs::oci
