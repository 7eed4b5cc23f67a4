// An unmounted store opened with its key: what the offline commands (fsck, inspect) share.
#pragma once

#include <iosfwd>
#include <memory>
#include <string>

#include "fs/core/filesystem.h"
#include "fs/store/store.h"

namespace cmkfs::fs {

struct OfflineStore {
  std::unique_ptr<OpenStore> store;
  Keyring keyring;
};

// Opens `path` exclusively (refused while mounted), read-only unless `writable`, and unlocks its
// data key with the provider its binding names, auditing the unwrap with `reason`. On failure
// writes one line to `err`, sets *exit_code and returns null.
std::unique_ptr<OfflineStore> open_offline(const std::string& path, const char* reason, std::ostream& err,
                                           int* exit_code, bool writable = false);

}  // namespace cmkfs::fs
