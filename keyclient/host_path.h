// The files a host's key settings name (a PKCS#11 module, a KMS plugin's socket, a PIN file, a
// key file, a vault's CA, a credential) are trusted only where nobody but root and this user can
// put something else in their place: the file itself theirs, and every directory above it theirs
// and unwritable by group and others, or sticky and theirs (/tmp: others may add names, not
// replace ours), and every link on the way theirs.
// A plugin socket in a directory someone else may change would take the data key; a module or a
// CA there would be theirs to choose.
#pragma once

#include <sys/stat.h>

#include <string>

#include "crypto/base/status.h"

namespace cmkfs::keyclient {

// `st` (of `path`, shown as `what path`) belongs to root or this user and nobody else may write it.
Status check_host_owner(const struct stat& st, const std::string& path, const std::string& what);

// Every directory above `path` passes check_host_owner, or is the host's and sticky; every link
// on the way (followed as the kernel follows it) belongs to the host. ENOENT when one is missing.
Status check_host_dirs(const std::string& path, const std::string& what);

// check_host_dirs, and the file `path` names, through its links if it is one, passes
// check_host_owner: for a file opened again by its name later (a CA file, by curl).
Status check_host_file(const std::string& path, const std::string& what);

}  // namespace cmkfs::keyclient
