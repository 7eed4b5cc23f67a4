// The commands that change how a store's data key is protected: `cmkfs encryption enable` and
// `cmkfs encryption rotate-key`. Both rewrap the one data key; no data is re-encrypted.
#pragma once

#include <iosfwd>
#include <string>

#include "fs/cli.h"

namespace cmkfs::fs {

// The key settings the vault options describe (relative CA paths made absolute, IMDS default).
keyclient::KekConfig vault_kek(const VaultKeyOptions& v);

// Moves a local-key store to a vault key. A vault-key store never goes back to the local key.
Status enable_vault_key(const std::string& store, const VaultKeyOptions& v, std::ostream& out);

// Rewraps a vault-key store's data key under another key or version (and identity). Works while
// the store is mounted: the mount follows within one key-check interval.
Status rotate_key(const std::string& store, VaultKeyOptions v, std::ostream& out);

}  // namespace cmkfs::fs
