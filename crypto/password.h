// Password hashes for people who sign in (the vault's console): scrypt (RFC 7914), memory-hard,
// with a random salt, in one self-describing string: "scrypt$N$r$p$SALT$HASH" (hex).
#pragma once

#include <string>
#include <string_view>

#include "crypto/base/status.h"

namespace cmkfs::crypto {

Result<std::string> hash_password(std::string_view password);
// Compares in constant time; false for a malformed hash too.
bool verify_password(std::string_view password, const std::string& hash);

}  // namespace cmkfs::crypto
