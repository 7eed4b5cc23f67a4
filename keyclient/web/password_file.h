// A console's admin password on disk: its scrypt hash (crypto/password.h) alone in a file of
// mode 0600, read at each sign-in (so a new password takes effect without a restart).
#pragma once

#include <string>

#include "crypto/base/status.h"

namespace cmkfs::web {

// Reads a new password (the first line of `from_file`; else asked for without echo on a
// terminal; else the first line of stdin), at least 12 characters, and writes its hash to
// `path` atomically.
Status set_password_file(const std::string& path, const std::string& from_file);
bool has_password_file(const std::string& path);
bool check_password_file(const std::string& path, const std::string& password);

}  // namespace cmkfs::web
