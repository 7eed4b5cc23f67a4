// An unmounted store opened with its key: what the offline commands (fsck, inspect) share.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include "fs/keyring.h"
#include "fs/store.h"

namespace cmkfs::fs {

struct OfflineStore {
  std::unique_ptr<OpenStore> store;
  Keyring keyring;
};

// Opens `path` exclusively (refused while mounted) and read-only, and unlocks its data key with
// the provider its superblock names, auditing the unwrap with `reason`. On failure writes one
// line to `err`, sets *exit_code and returns null.
std::unique_ptr<OfflineStore> open_offline(const std::string& path, const char* reason, std::ostream& err,
                                           int* exit_code);

// Calls fn with a regular file's plaintext, in order, in windows of up to 1 MiB, through the
// mount's own read path: EIO when a chunk does not authenticate, ENOENT when the object is missing.
Status read_plaintext(OfflineStore& o, const meta::InodeRecord& rec, const std::function<void(crypto::Bytes)>& fn);
// The same from an object already open.
Status read_plaintext(OfflineStore& o, ObjectFile& object, const meta::InodeRecord& rec,
                      const std::function<void(crypto::Bytes)>& fn);

}  // namespace cmkfs::fs
