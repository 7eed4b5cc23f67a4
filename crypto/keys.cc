#include "crypto/keys.h"

#include <string>

#include "crypto/base/hex.h"

namespace cmkfs::crypto {
namespace {

Result<SecretBytes> derive(const SecretBytes& dek, std::string_view label) {
  return hkdf_sha256(dek.bytes(), {}, as_bytes(label));
}

}  // namespace

Result<SecretBytes> derive_name_key(const SecretBytes& dek) { return derive(dek, "cmkfs/v1/name"); }

Result<StoreKeys> derive_store_keys(const SecretBytes& dek, Bytes name_override) {
  if (dek.size() != kKeySize) return Status::InvalidArgument("a data key has 32 bytes");
  auto meta_key = derive(dek, "cmkfs/v1/meta");
  auto name_key = name_override.empty() ? derive(dek, "cmkfs/v1/name")
                                         : Result<SecretBytes>(SecretBytes::copy_of(name_override));
  auto super_mac = derive(dek, "cmkfs/v1/super");
  if (!meta_key.ok()) return meta_key.status();
  if (!name_key.ok()) return name_key.status();
  if (!super_mac.ok()) return super_mac.status();
  auto meta = GcmKey::make(meta_key->bytes());
  auto name = HmacKey::make(name_key->bytes());
  if (!meta.ok()) return meta.status();
  if (!name.ok()) return name.status();
  return StoreKeys{std::move(*meta), {}, std::move(*name), std::move(*super_mac)};
}

Result<SecretBytes> derive_file_key(const SecretBytes& dek, const Id128& file_id) {
  std::array<uint8_t, 13 + 16> info{};
  std::string_view label = "cmkfs/v1/file";
  std::copy(label.begin(), label.end(), info.begin());
  std::copy(file_id.begin(), file_id.end(), info.begin() + label.size());
  return hkdf_sha256(dek.bytes(), {}, info);
}

Result<std::string> dek_fingerprint(const SecretBytes& dek) {
  if (dek.size() != kKeySize) return Status::InvalidArgument("a data key has 32 bytes");
  auto fp = hkdf_sha256(dek.bytes(), {}, as_bytes("cmkfs/v1/fingerprint"), 16);
  if (!fp.ok()) return fp.status();
  return to_hex(fp->bytes());
}

}  // namespace cmkfs::crypto
