// A PKCS#11 module for tests that forwards to a real one (SoftHSM2) and can fail on demand, to
// model what SoftHSM cannot: an HSM outage and a token that is pulled and put back.
//
// CMKFS_PKCS11_SHIM_TARGET names the real module. The file CMKFS_PKCS11_SHIM_STATE, read on every
// call, holds the fault: "outage" (every call CKR_DEVICE_ERROR), "removed" (no token; every call
// CKR_DEVICE_REMOVED, and the sessions opened before are closed, as a pulled token's are), "hang"
// (every call waits until the fault changes: a driver that stops answering), "mute-extractable"
// (below), or nothing. Each C_Login is counted as a line in CMKFS_PKCS11_SHIM_LOGINS, if set.
#include <dlfcn.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

CK_FUNCTION_LIST real_list;
CK_FUNCTION_LIST* real = nullptr;
CK_FUNCTION_LIST shim;
bool sessions_dropped = false;

std::string fault() {
  const char* path = std::getenv("CMKFS_PKCS11_SHIM_STATE");
  if (path == nullptr) return "";
  std::ifstream in(path);
  std::string s;
  in >> s;
  return s;
}

void drop_sessions() {
  CK_SLOT_ID slots[16];
  CK_ULONG n = 16;
  if (real->C_GetSlotList(CK_FALSE, slots, &n) != CKR_OK) return;
  for (CK_ULONG i = 0; i < n; ++i) {
    // The token forgets the login with it (a real token loses its state when pulled).
    CK_SESSION_HANDLE h;
    if (real->C_OpenSession(slots[i], CKF_SERIAL_SESSION, nullptr, nullptr, &h) == CKR_OK) real->C_Logout(h);
    real->C_CloseAllSessions(slots[i]);
  }
}

// CKR_OK when calls may go through; the fault's return value otherwise.
CK_RV gate() {
  std::string f = fault();
  for (; f == "hang"; f = fault()) ::usleep(20000);
  if (f == "outage") return CKR_DEVICE_ERROR;
  if (f == "removed") {
    if (!sessions_dropped) drop_sessions();
    sessions_dropped = true;
    return CKR_DEVICE_REMOVED;
  }
  sessions_dropped = false;
  return CKR_OK;
}

CK_RV GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count) {
  CK_RV rv = gate();
  if (rv == CKR_DEVICE_REMOVED && present) {
    *count = 0;
    return CKR_OK;
  }
  return rv != CKR_OK ? rv : real->C_GetSlotList(present, list, count);
}

#define SHIM(name, params, args)                  \
  CK_RV name params {                             \
    CK_RV rv = gate();                            \
    return rv != CKR_OK ? rv : real->C_##name args; \
  }

SHIM(GetTokenInfo, (CK_SLOT_ID s, CK_TOKEN_INFO_PTR i), (s, i))
SHIM(OpenSession, (CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY n, CK_SESSION_HANDLE_PTR h), (s, f, a, n, h))

CK_RV Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG l) {
  if (const char* count = std::getenv("CMKFS_PKCS11_SHIM_LOGINS")) std::ofstream(count, std::ios::app) << "login\n";
  CK_RV rv = gate();
  return rv != CKR_OK ? rv : real->C_Login(h, u, p, l);
}
SHIM(FindObjectsInit, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, t, n))
// "mute-extractable": CKA_EXTRACTABLE is answered CKR_OK and left unwritten, as a careless module may.
CK_RV GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  if (fault() == "mute-extractable" && n == 1 && t[0].type == CKA_EXTRACTABLE) return CKR_OK;
  CK_RV rv = gate();
  return rv != CKR_OK ? rv : real->C_GetAttributeValue(h, o, t, n);
}
SHIM(CreateObject, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o), (h, t, n, o))
SHIM(WrapKey,
     (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k, CK_OBJECT_HANDLE w, CK_BYTE_PTR out, CK_ULONG_PTR l),
     (h, m, k, w, out, l))
SHIM(UnwrapKey,
     (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k, CK_BYTE_PTR in, CK_ULONG l, CK_ATTRIBUTE_PTR t,
      CK_ULONG n, CK_OBJECT_HANDLE_PTR o),
     (h, m, k, in, l, t, n, o))

}  // namespace

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
  if (real == nullptr) {
    const char* target = std::getenv("CMKFS_PKCS11_SHIM_TARGET");
    void* h = target ? ::dlopen(target, RTLD_NOW | RTLD_LOCAL) : nullptr;
    auto get = h ? reinterpret_cast<CK_C_GetFunctionList>(::dlsym(h, "C_GetFunctionList")) : nullptr;
    CK_FUNCTION_LIST* list = nullptr;
    if (get == nullptr || get(&list) != CKR_OK) return CKR_GENERAL_ERROR;
    real_list = *list;
    real = &real_list;
    shim = *list;
    shim.C_GetSlotList = GetSlotList;
    shim.C_GetTokenInfo = GetTokenInfo;
    shim.C_OpenSession = OpenSession;
    shim.C_Login = Login;
    shim.C_FindObjectsInit = FindObjectsInit;
    shim.C_GetAttributeValue = GetAttributeValue;
    shim.C_CreateObject = CreateObject;
    shim.C_WrapKey = WrapKey;
    shim.C_UnwrapKey = UnwrapKey;
  }
  *out = &shim;
  return CKR_OK;
}
