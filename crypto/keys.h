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
#include <vector>

#include "crypto/base/id128.h"
#include "crypto/crypto.h"

namespace cmkfs::crypto {

struct StoreKeys {
  GcmKey meta;            // record sealing, under the current data key
  // The meta keys of earlier data-key generations, newest first, while records sealed under
  // them remain (a data-key rotation in progress): they open records, never seal them.
  std::vector<GcmKey> older_meta;
  HmacKey name;           // dirent name HMAC
  SecretBytes super_mac;  // superblock MAC
  void wipe() {
    meta.wipe();
    older_meta.clear();
    name.wipe();
    super_mac.wipe();
  }
  bool empty() const { return meta.empty(); }
};

// The keys below `dek`. The name key is derived from it too unless `name_key` is given: a store's
// name key stays that of its first data key, so that entries keep their places across rotations
// (it is carried forward sealed under each new generation's meta key).
Result<StoreKeys> derive_store_keys(const SecretBytes& dek, Bytes name_key = {});
// The name key as derive_store_keys() makes it from a data key (generation 1's, in practice).
Result<SecretBytes> derive_name_key(const SecretBytes& dek);
Result<SecretBytes> derive_file_key(const SecretBytes& dek, const Id128& file_id);
// derive_file_key() for one data key and many files: HKDF's extract step done once, and each
// file's expand one HMAC under a key keyed once (RFC 5869 with L = HashLen: T(1) only). The same
// keys; a store of small files spent a sixth of fsck's time deriving them one call at a time.
// Move-only; derive() may run on many threads at once.
class FileKeyDeriver {
 public:
  FileKeyDeriver() = default;
  static Result<FileKeyDeriver> make(const SecretBytes& dek);
  SecretBytes derive(const Id128& file_id) const;  // REQUIRES: made
  void wipe() { prk_.wipe(); }

 private:
  HmacKey prk_;  // the pseudorandom key HKDF extracts from the data key
};
// 128 bits that name a DEK without revealing it (HKDF is a PRF), as hex: what a host pins to
// recognise the store's data key whatever wrapped it.
Result<std::string> dek_fingerprint(const SecretBytes& dek);

}  // namespace cmkfs::crypto
