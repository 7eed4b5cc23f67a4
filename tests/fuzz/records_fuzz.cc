// Sealed metadata records as an attacker with the backing store writes them: opened under a key
// (fails, or authenticates only what the key sealed) and decoded as inode and entry records.
#include <cstdint>
#include <string_view>

#include "crypto/keys.h"
#include "meta/records.h"

using namespace cmkfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static crypto::StoreKeys keys = [] {
    auto dek = crypto::SecretBytes::copy_of(crypto::as_bytes("0123456789abcdef0123456789abcdef"));
    return std::move(*crypto::derive_store_keys(dek));
  }();
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)meta::open_record(keys, "inodes", "key", bytes);
  (void)meta::decode_inode(1, bytes);
  (void)meta::decode_entry(16, bytes);
  return 0;
}
