#include <nlohmann/json.hpp>

#include "crypto/base/hex.h"
#include "crypto/base/json_integer.h"
#include "meta/meta.h"

namespace cmkfs::meta {
namespace {

using nlohmann::json;

// The canonical form the MAC covers: every field but the MAC, keys sorted (nlohmann's default).
// A store with local objects has no "objects": its MAC is what it was before the field existed.
json body(const Superblock& sb) {
  json j{{"format", "cmkfs"},
         {"format_version", sb.format_version},
         {"store_id", to_hex(sb.store_id)},
         {"chunk_size", sb.chunk_size},
         {"created", sb.created},
         {"dek_generation", sb.dek_generation},
         {"kek", json::parse(sb.kek)}};
  if (!sb.objects.empty()) j["objects"] = json::parse(sb.objects);
  return j;
}

std::string mac_of(const Superblock& sb, crypto::Bytes mac_key) {
  return to_hex(crypto::hmac_sha256(mac_key, crypto::as_bytes(body(sb).dump())));
}

}  // namespace

std::string Superblock::to_json() const {
  json j = body(*this);
  j["mac"] = mac;
  return j.dump();
}

Result<Superblock> Superblock::from_json(std::string_view text) {
  Superblock sb;
  try {
    json j = json::parse(text);
    if (j.at("format").get<std::string>() != "cmkfs") return Status::Corruption("superblock: not a cmkfs superblock");
    sb.format_version = json_integer<uint32_t>(j.at("format_version"));
    if (sb.format_version != kFormatVersion) {
      return Status(ENOTSUP, "store format version " + std::to_string(sb.format_version) +
                                 " is not supported (this cmkfs reads version " + std::to_string(kFormatVersion) + ")");
    }
    auto id = from_hex(j.at("store_id").get<std::string>());
    if (!id || id->size() != sb.store_id.size()) return Status::Corruption("superblock: bad store id");
    std::copy(id->begin(), id->end(), sb.store_id.begin());
    sb.chunk_size = json_integer<uint32_t>(j.at("chunk_size"));
    if (!crypto::ChunkLayout::valid_chunk_size(sb.chunk_size)) return Status::Corruption("superblock: bad chunk size");
    sb.created = json_integer<int64_t>(j.at("created"));
    sb.dek_generation = json_integer<uint32_t>(j.at("dek_generation"));
    const json& kek = j.at("kek");
    if (!kek.is_object()) return Status::Corruption("superblock: bad key settings");
    sb.kek = kek.dump();
    if (j.contains("objects")) {
      if (!j["objects"].is_object()) return Status::Corruption("superblock: bad object store settings");
      sb.objects = j["objects"].dump();
    }
    sb.mac = j.at("mac").get<std::string>();
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("superblock is damaged: ") + e.what());
  }
  return sb;
}

void Superblock::seal(crypto::Bytes mac_key) { mac = mac_of(*this, mac_key); }

Status Superblock::verify(crypto::Bytes mac_key) const {
  std::string expect = mac_of(*this, mac_key);
  if (!crypto::equal_constant_time(crypto::as_bytes(expect), crypto::as_bytes(mac))) {
    return Status::Corruption("superblock MAC does not match: the superblock was modified");
  }
  return Status::Ok();
}

}  // namespace cmkfs::meta
