#include "fs/oci/manifest.h"

#include <nlohmann/json.hpp>

#include "crypto/base/hex.h"
#include "crypto/base/json_parse.h"
#include "crypto/crypto.h"

namespace cmkfs::oci {
namespace {

using json = nlohmann::json;

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

Result<Descriptor> descriptor(const json& j, const char* what) {
  if (!j.is_object()) return Status::InvalidArgument(std::string(what) + " is not an object");
  Descriptor d;
  auto mt = j.find("mediaType");
  if (mt != j.end() && mt->is_string()) d.media_type = mt->get<std::string>();
  auto dg = j.find("digest");
  if (dg == j.end() || !dg->is_string()) return Status::InvalidArgument(std::string(what) + " has no digest");
  auto digest = parse_digest(dg->get<std::string>());
  if (!digest) return Status::InvalidArgument(std::string(what) + " has an unsupported digest");
  d.digest = *digest;
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_unsigned()) return Status::InvalidArgument(std::string(what) + " has no size");
  d.size = size->get<uint64_t>();
  auto annotations = j.find("annotations");
  if (annotations != j.end() && annotations->is_object()) {
    auto ref = annotations->find("org.opencontainers.image.ref.name");
    if (ref != annotations->end() && ref->is_string()) d.ref_name = ref->get<std::string>();
  }
  auto platform = j.find("platform");
  if (platform != j.end() && platform->is_object()) {
    auto part = [&](const char* key) {
      auto it = platform->find(key);
      return it != platform->end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    std::string os = part("os"), arch = part("architecture"), variant = part("variant");
    if (!os.empty() && !arch.empty()) d.platform = os + "-" + arch + (variant.empty() ? "" : "-" + variant);
    // A platform becomes a directory name: nothing but [a-z0-9._-] from an untrusted index.
    for (char& c : d.platform) {
      if (!lower_alnum(c) && c != '.' && c != '_' && c != '-') c = '_';
    }
  }
  return d;
}

}  // namespace

bool is_digest_hex(std::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::optional<Digest> parse_digest(std::string_view text) {
  text = trim(text);
  constexpr std::string_view kPrefix = "sha256:";
  if (text.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  std::string_view hex = text.substr(kPrefix.size());
  if (!is_digest_hex(hex)) return std::nullopt;
  return Digest{std::string(hex)};
}

bool digest_matches(const Digest& d, std::string_view bytes) {
  crypto::Sha256 sha;
  sha.update(crypto::Bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  return to_hex(sha.finish()) == d.hex;
}

std::string registry_blob_path(const Digest& d) {
  return std::string(kRegistryDir) + "/blobs/sha256/" + d.hex.substr(0, 2) + "/" + d.hex + "/data";
}

std::string registry_tags_dir(std::string_view repo) {
  return std::string(kRegistryDir) + "/repositories/" + std::string(repo) + "/_manifests/tags";
}

std::string registry_tag_link(std::string_view repo, std::string_view tag) {
  return registry_tags_dir(repo) + "/" + std::string(tag) + "/current/link";
}

std::string registry_revision_link(std::string_view repo, const Digest& d) {
  return std::string(kRegistryDir) + "/repositories/" + std::string(repo) + "/_manifests/revisions/sha256/" + d.hex +
         "/link";
}

bool valid_repository_component(std::string_view name) {
  if (name.empty() || name.size() > 255 || !lower_alnum(name.front()) || !lower_alnum(name.back())) return false;
  for (size_t i = 0; i < name.size();) {
    if (lower_alnum(name[i])) {
      ++i;
      continue;
    }
    // A separator: '.', '_', '__' or a run of '-', always between alphanumerics.
    size_t j = i;
    if (name[i] == '-') {
      while (j < name.size() && name[j] == '-') ++j;
    } else if (name[i] == '_') {
      j = i + (name.substr(i, 2) == "__" ? 2 : 1);
    } else if (name[i] == '.') {
      j = i + 1;
    } else {
      return false;
    }
    if (j >= name.size() || !lower_alnum(name[j])) return false;
    i = j;
  }
  return true;
}

bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(tag.front())) return false;
  for (char c : tag) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

Result<Manifest> parse_manifest(std::string_view bytes) {
  if (bytes.size() > kMaxManifestSize) return Status::InvalidArgument("manifest larger than 4 MiB");
  json j = parse_untrusted_json(bytes);
  if (!j.is_object()) return Status::InvalidArgument("manifest is not a JSON object");
  auto version = j.find("schemaVersion");
  if (version == j.end() || !version->is_number_integer() || version->get<int64_t>() != 2) {
    return Status::InvalidArgument("not a schema 2 manifest");
  }
  Manifest m;
  auto mt = j.find("mediaType");
  if (mt != j.end() && mt->is_string()) m.media_type = mt->get<std::string>();
  auto manifests = j.find("manifests");
  if (manifests != j.end()) {
    if (!manifests->is_array()) return Status::InvalidArgument("index manifests is not an array");
    m.kind = Manifest::Kind::kIndex;
    if (m.media_type.empty()) m.media_type = "application/vnd.oci.image.index.v1+json";
    for (const auto& e : *manifests) {
      auto d = descriptor(e, "an index entry");
      if (!d.ok()) return d.status();
      m.manifests.push_back(std::move(*d));
    }
    return m;
  }
  auto config = j.find("config");
  auto layers = j.find("layers");
  if (config == j.end() || layers == j.end() || !layers->is_array()) {
    return Status::InvalidArgument("manifest has no config or layers");
  }
  if (m.media_type.empty()) m.media_type = "application/vnd.oci.image.manifest.v1+json";
  auto c = descriptor(*config, "the config");
  if (!c.ok()) return c.status();
  m.config = std::move(*c);
  for (const auto& e : *layers) {
    auto d = descriptor(e, "a layer");
    if (!d.ok()) return d.status();
    m.layers.push_back(std::move(*d));
  }
  return m;
}

std::string layer_file_name(size_t n, const Descriptor& layer) {
  const std::string& t = layer.media_type;
  auto ends = [&t](std::string_view s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
  std::string ext = ends("gzip") ? ".tar.gz" : ends("zstd") ? ".tar.zst" : ends("tar") ? ".tar" : "";
  if (ext.empty() && t.find("rootfs.diff.tar") != std::string::npos) ext = ".tar.gz";  // Docker's
  if (ext.empty()) ext = ".blob";
  return std::to_string(n) + "-" + layer.digest.hex + ext;
}

}  // namespace cmkfs::oci
