// Loading a PKCS#11 module, and what its return values mean to cmkfs.
#pragma once

#include <p11-kit/pkcs11.h>

#include <string>

#include "crypto/base/status.h"

namespace cmkfs::keyclient {

// The module at `path`, loaded once per process (dlopen, C_GetFunctionList, C_Initialize with
// the OS's locking) and kept until the process ends. Refused unless the file and its directory
// belong to root (or to this user) and nobody else may write them: the module runs in the
// daemon, next to the data key.
Result<CK_FUNCTION_LIST*> load_pkcs11_module(const std::string& path);

// `rv` classified as keyclient.h describes: a refused login EACCES, a key that may not unwrap
// EKEYREJECTED, a missing key or token ENOKEY; device and other failures EAGAIN (an outage).
Status pkcs11_status(CK_RV rv, const std::string& what);

// Whether `rv` means the session (or its login) is gone and a new one may succeed.
bool pkcs11_session_lost(CK_RV rv);

}  // namespace cmkfs::keyclient
