#include "keyclient/pkcs11_module.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>

#include "keyclient/host_path.h"

namespace cmkfs::keyclient {
namespace {

const char* rv_name(CK_RV rv) {
  switch (rv) {
    case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED: return "CKR_PIN_LOCKED";
    case CKR_PIN_EXPIRED: return "CKR_PIN_EXPIRED";
    case CKR_KEY_FUNCTION_NOT_PERMITTED: return "CKR_KEY_FUNCTION_NOT_PERMITTED";
    case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
    case CKR_DEVICE_REMOVED: return "CKR_DEVICE_REMOVED";
    case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
    case CKR_OBJECT_HANDLE_INVALID: return "CKR_OBJECT_HANDLE_INVALID";
    case CKR_KEY_HANDLE_INVALID: return "CKR_KEY_HANDLE_INVALID";
    case CKR_WRAPPED_KEY_INVALID: return "CKR_WRAPPED_KEY_INVALID";
    case CKR_ENCRYPTED_DATA_INVALID: return "CKR_ENCRYPTED_DATA_INVALID";
    case CKR_SESSION_HANDLE_INVALID: return "CKR_SESSION_HANDLE_INVALID";
    case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
    case CKR_MECHANISM_INVALID: return "CKR_MECHANISM_INVALID";
    case CKR_ARGUMENTS_BAD: return "CKR_ARGUMENTS_BAD";
    case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
    case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
    default: return nullptr;
  }
}

}  // namespace

Status pkcs11_status(CK_RV rv, const std::string& what) {
  char code[32];
  const char* name = rv_name(rv);
  if (name == nullptr) {
    std::snprintf(code, sizeof code, "CKR 0x%lx", static_cast<unsigned long>(rv));
    name = code;
  }
  std::string m = what + " (" + name + ")";
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
    case CKR_USER_PIN_NOT_INITIALIZED:
      return Status(EACCES, "the token refused the login: " + m);
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_WRAPPING_KEY_TYPE_INCONSISTENT:
    case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT:
    case CKR_WRAPPED_KEY_INVALID:
    case CKR_WRAPPED_KEY_LEN_RANGE:
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
      return Status(EKEYREJECTED, "the token refused: " + m);
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_WRAPPING_KEY_HANDLE_INVALID:
    case CKR_UNWRAPPING_KEY_HANDLE_INVALID:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_DEVICE_REMOVED:
    case CKR_SLOT_ID_INVALID:
      return Status(ENOKEY, m);
    default:
      return Status(EAGAIN, m);
  }
}

bool pkcs11_session_lost(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_USER_NOT_LOGGED_IN ||
         rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

Result<CK_FUNCTION_LIST*> load_pkcs11_module(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, CK_FUNCTION_LIST*> loaded;
  std::lock_guard<std::mutex> g(mu);
  if (auto it = loaded.find(path); it != loaded.end()) return it->second;
  if (path.empty() || path[0] != '/') return Status::InvalidArgument("a PKCS#11 module is named by its absolute path");
  std::error_code ec;
  std::string real = std::filesystem::canonical(path, ec).string();
  if (ec) return Status(ENOENT, "PKCS#11 module " + path + " does not exist");
  // Every directory on the way and the file itself root's (or ours) and nobody else's to write;
  // the file is checked and loaded through one descriptor, so it cannot be swapped in between.
  CMKFS_RETURN_IF_ERROR(check_host_dirs(real, "PKCS#11 module"));
  int fd = ::open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) ::close(fd);
    return Status::InvalidArgument("PKCS#11 module " + path + " is not a regular file");
  }
  if (Status s = check_host_owner(st, path, "PKCS#11 module"); !s.ok()) {
    ::close(fd);
    return s;
  }
  std::string by_fd = "/proc/self/fd/" + std::to_string(fd);
  void* handle = ::dlopen(by_fd.c_str(), RTLD_NOW | RTLD_LOCAL);
  ::close(fd);
  if (handle == nullptr) return Status::InvalidArgument("cannot load PKCS#11 module " + path + ": " + ::dlerror());
  auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* fns = nullptr;
  if (get == nullptr || get(&fns) != CKR_OK || fns == nullptr) {
    ::dlclose(handle);
    return Status::InvalidArgument(path + " is not a PKCS#11 module (no C_GetFunctionList)");
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = fns->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    ::dlclose(handle);
    return pkcs11_status(rv, "PKCS#11 module " + path + " did not initialize");
  }
  loaded[path] = fns;
  return fns;
}

}  // namespace cmkfs::keyclient
