// `cmkfs init --from-file store.json`: the store's side of the article's Resource Manager
// template. The file names what init's options name, in the shape `encryption show` prints:
//   {"store": "/srv/store", "chunkSize": "64KiB", "auditLog": "...",
//    "localKeyFile": "..." | "localKeyCommand": "..." |
//    "keyVaultProperties": {"keyIdentifier": "https://VAULT/keys/cmk", "identity": "CLIENT_ID" | "[system]",
//                           "credential": "...", "identityEndpoint": "...", "authorityHost": "...",
//                           "tenantId": "...", "credentialFile": "...", "vaultCa": "..."}}
// Options given on the command line win over the file. Internal to fs/cli.
#pragma once

#include <iosfwd>
#include <string>

#include "fs/cli/cli.h"

namespace cmkfs::fs {

// Fills what the command line left empty in `cmd` (and `chunk_size`, unless `chunk_given`) from
// the file. False, with the reason on `err`, when the file is unreadable or has unknown fields.
bool read_init_template(const std::string& path, Command* cmd, std::string* chunk_size, bool chunk_given,
                        std::ostream& err);

}  // namespace cmkfs::fs
