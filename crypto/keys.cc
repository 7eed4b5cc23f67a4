#include "crypto/keys.h"

#include <openssl/crypto.h>

#include <array>
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

namespace {

constexpr std::string_view kFileLabel = "cmkfs/v1/file";
constexpr size_t kFileInfoSize = kFileLabel.size() + 16;

// HKDF's info for a file's key, the label and then the file's id, into out[0, kFileInfoSize).
void put_file_info(const Id128& file_id, uint8_t* out) {
  std::copy(file_id.begin(), file_id.end(), std::copy(kFileLabel.begin(), kFileLabel.end(), out));
}

}  // namespace

Result<SecretBytes> derive_file_key(const SecretBytes& dek, const Id128& file_id) {
  std::array<uint8_t, kFileInfoSize> info;
  put_file_info(file_id, info.data());
  return hkdf_sha256(dek.bytes(), {}, info);
}

Result<FileKeyDeriver> FileKeyDeriver::make(const SecretBytes& dek) {
  // Extract with no salt: HMAC under HashLen zero bytes (RFC 5869, 2.2).
  const std::array<uint8_t, 32> zeros{};
  Mac256 prk = hmac_sha256(zeros, dek.bytes());
  auto keyed = HmacKey::make(prk);
  OPENSSL_cleanse(prk.data(), prk.size());
  if (!keyed.ok()) return keyed.status();
  FileKeyDeriver d;
  d.prk_ = std::move(*keyed);
  return d;
}

SecretBytes FileKeyDeriver::derive(const Id128& file_id) const {
  // Expand: T(1) = HMAC(PRK, info || 0x01), all of a 32-byte key.
  std::array<uint8_t, kFileInfoSize + 1> input;
  put_file_info(file_id, input.data());
  input.back() = 1;
  Mac256 t1 = prk_.mac(input);
  SecretBytes key = SecretBytes::copy_of(t1);
  OPENSSL_cleanse(t1.data(), t1.size());
  return key;
}

Result<std::string> dek_fingerprint(const SecretBytes& dek) {
  if (dek.size() != kKeySize) return Status::InvalidArgument("a data key has 32 bytes");
  auto fp = hkdf_sha256(dek.bytes(), {}, as_bytes("cmkfs/v1/fingerprint"), 16);
  if (!fp.ok()) return fp.status();
  return to_hex(fp->bytes());
}

}  // namespace cmkfs::crypto
