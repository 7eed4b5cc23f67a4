// The key hierarchy below one data key (DEK). Every derived key and its HKDF label is here, so
// that no two uses can share a key by accident.
//
//   DEK --HKDF "cmkfs/v1/meta"          --> seals every metadata record
//       --HKDF "cmkfs/v1/name"          --> HMAC of directory entry names
//       --HKDF "cmkfs/v1/super"         --> MAC of the superblock
//       --HKDF "cmkfs/v1/file" | file_id --> AES-256-GCM key of one file's chunks
//       --HKDF "cmkfs/v1/fingerprint"   --> the DEK's fingerprint, which a host pins
#pragma once

#include <string>

#include "crypto/base/id128.h"
#include "crypto/crypto.h"

namespace cmkfs::crypto {

struct StoreKeys {
  GcmKey meta;            // record sealing
  HmacKey name;           // dirent name HMAC
  SecretBytes super_mac;  // superblock MAC
  void wipe() {
    meta.wipe();
    name.wipe();
    super_mac.wipe();
  }
  bool empty() const { return meta.empty(); }
};

Result<StoreKeys> derive_store_keys(const SecretBytes& dek);
Result<SecretBytes> derive_file_key(const SecretBytes& dek, const Id128& file_id);
// 128 bits that name a DEK without revealing it (HKDF is a PRF), as hex: what a host pins to
// recognise the store's data key whatever wrapped it.
Result<std::string> dek_fingerprint(const SecretBytes& dek);

}  // namespace cmkfs::crypto
