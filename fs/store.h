// A store on disk: STORE/meta (LMDB), STORE/objects/xx/<file id> and STORE/lock. This is where
// the layers meet: init_store() creates one, open_store() opens one, unlock() gets its data key
// from the key provider its superblock names.
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

#include "crypto/crypto.h"
#include "fs/object_store.h"
#include "keyclient/keyclient.h"
#include "meta/meta.h"

namespace cmkfs::fs {

struct StorePaths {
  std::string root, meta, objects, lock;
  static StorePaths of(const std::string& root);
};

struct InitOptions {
  std::string store;
  uint32_t chunk_size = 4 << 10;
  keyclient::KekConfig kek;  // provider "local": key_file may be empty (default path)
};

// Creates a store in an empty (or missing) directory. Prints what it made to `out`.
Status init_store(const InitOptions& opts, std::ostream& out);

struct OpenStore {
  StorePaths paths;
  int lock_fd = -1;  // flock held for the lifetime of a mount
  std::unique_ptr<meta::MetaStore> meta;
  std::unique_ptr<ObjectStore> objects;
  meta::Superblock super;  // unauthenticated until unlock()
  keyclient::KekConfig kek;
  ~OpenStore();
};

// Opens the store at `root`. exclusive: take the store lock (EBUSY when mounted elsewhere).
Result<std::unique_ptr<OpenStore>> open_store(const std::string& root, bool exclusive, bool read_only);

// Unwraps the store's current data key with `provider` and verifies the superblock MAC with it.
Result<crypto::SecretBytes> unlock(OpenStore& store, keyclient::KeyProvider& provider);

// Wraps `dek` with `provider` (whose settings are `kek`) and stores the result and the new key
// settings in one durable commit: until it lands the old wrapped key stays valid. Updates
// store.super and store.kek. Used by `encryption enable`, `encryption rotate-key` and the key
// monitor's automatic rotation.
Result<keyclient::WrappedKey> rewrap(OpenStore& store, const crypto::SecretBytes& dek, keyclient::KekConfig kek,
                                     keyclient::KeyProvider& provider);

// Parses sizes such as "65536", "64K", "64KiB", "1MiB". nullopt when malformed.
std::optional<uint64_t> parse_size(std::string_view text);

}  // namespace cmkfs::fs
