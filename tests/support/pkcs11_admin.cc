// What an HSM administrator does to keys, for tests: make a key version (AES-256 or RSA, wrap and
// unwrap only), take its unwrap usage away or give it back, delete it, change the user PIN.
//   pkcs11_admin MODULE TOKEN PIN keygen-aes LABEL IDHEX | keygen-rsa LABEL IDHEX BITS |
//                usage LABEL IDHEX on|off | delete LABEL IDHEX | set-pin NEW |
//                plant-aes LABEL IDHEX (what an attacker without the PIN can make: a public,
//                extractable AES key of a value they know)
#include <cstdio>
#include <string>
#include <vector>

#include "crypto/base/hex.h"
#include "keyclient/pkcs11_module.h"

namespace {

using cmkfs::keyclient::load_pkcs11_module;

CK_FUNCTION_LIST* f;
CK_SESSION_HANDLE session;

int fail(const char* what, CK_RV rv) {
  std::fprintf(stderr, "pkcs11_admin: %s: 0x%lx\n", what, static_cast<unsigned long>(rv));
  return 1;
}

std::vector<CK_OBJECT_HANDLE> find(std::string& label, std::vector<uint8_t>& id) {
  CK_ATTRIBUTE t[] = {{CKA_LABEL, label.data(), label.size()}, {CKA_ID, id.data(), id.size()}};
  std::vector<CK_OBJECT_HANDLE> out(16);
  CK_ULONG n = 0;
  f->C_FindObjectsInit(session, t, 2);
  f->C_FindObjects(session, out.data(), out.size(), &n);
  f->C_FindObjectsFinal(session);
  out.resize(n);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: pkcs11_admin MODULE TOKEN PIN COMMAND ARGS...\n");
    return 2;
  }
  auto module = load_pkcs11_module(argv[1]);
  if (!module.ok()) {
    std::fprintf(stderr, "pkcs11_admin: %s\n", module.status().message().c_str());
    return 1;
  }
  f = *module;
  std::string token = argv[2], pin = argv[3], cmd = argv[4];
  CK_SLOT_ID slots[16];
  CK_ULONG n = 16;
  if (CK_RV rv = f->C_GetSlotList(CK_TRUE, slots, &n); rv != CKR_OK) return fail("slots", rv);
  CK_SLOT_ID slot = 0;
  bool found = false;
  for (CK_ULONG i = 0; i < n && !found; ++i) {
    CK_TOKEN_INFO ti;
    if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) continue;
    std::string label(reinterpret_cast<char*>(ti.label), sizeof ti.label);
    label.erase(label.find_last_not_of(' ') + 1);
    if (label == token) slot = slots[i], found = true;
  }
  if (!found) return fail("no such token", 0);
  if (CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &session); rv != CKR_OK) {
    return fail("session", rv);
  }
  if (CK_RV rv = f->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size()); rv != CKR_OK) {
    return fail("login", rv);
  }
  if (cmd == "set-pin" && argc == 6) {
    std::string next = argv[5];
    CK_RV rv = f->C_SetPIN(session, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size(),
                           reinterpret_cast<CK_UTF8CHAR*>(next.data()), next.size());
    return rv == CKR_OK ? 0 : fail("set-pin", rv);
  }
  if (argc < 7) return fail("bad arguments", 0);
  std::string label = argv[5];
  auto id_bytes = cmkfs::from_hex(argv[6]);
  if (!id_bytes) return fail("the id is not hex", 0);
  std::vector<uint8_t> id = *id_bytes;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  if (cmd == "keygen-aes") {  // LABEL ID [BYTES [extractable]]
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ULONG len = argc > 7 ? std::stoul(argv[7]) : 32;
    CK_BBOOL extractable = argc > 8 && std::string(argv[8]) == "extractable" ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},      {CKA_KEY_TYPE, &type, sizeof type},  {CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &yes, 1},             {CKA_SENSITIVE, &yes, 1},            {CKA_EXTRACTABLE, &extractable, 1},
                        {CKA_WRAP, &yes, 1},                {CKA_UNWRAP, &yes, 1},               {CKA_ENCRYPT, &no, 1},
                        {CKA_DECRYPT, &no, 1},              {CKA_VALUE_LEN, &len, sizeof len},   {CKA_LABEL, label.data(), label.size()},
                        {CKA_ID, id.data(), id.size()}};
    CK_MECHANISM mech{CKM_AES_KEY_GEN, nullptr, 0};
    CK_OBJECT_HANDLE h;
    CK_RV rv = f->C_GenerateKey(session, &mech, t, sizeof t / sizeof t[0], &h);
    return rv == CKR_OK ? 0 : fail("keygen-aes", rv);
  }
  if (cmd == "plant-aes") {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    std::vector<uint8_t> value(32, 0x41);
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls},    {CKA_KEY_TYPE, &type, sizeof type}, {CKA_TOKEN, &yes, 1},
                        {CKA_PRIVATE, &no, 1},            {CKA_SENSITIVE, &no, 1},            {CKA_EXTRACTABLE, &yes, 1},
                        {CKA_WRAP, &yes, 1},              {CKA_UNWRAP, &yes, 1},              {CKA_VALUE, value.data(), value.size()},
                        {CKA_LABEL, label.data(), label.size()}, {CKA_ID, id.data(), id.size()}};
    CK_OBJECT_HANDLE h;
    CK_RV rv = f->C_CreateObject(session, t, sizeof t / sizeof t[0], &h);
    return rv == CKR_OK ? 0 : fail("plant-aes", rv);
  }
  if (cmd == "keygen-rsa" && argc == 8) {
    CK_ULONG bits = std::stoul(argv[7]);
    CK_BYTE exponent[] = {1, 0, 1};
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1},          {CKA_WRAP, &yes, 1},
                          {CKA_ENCRYPT, &no, 1},         {CKA_VERIFY, &no, 1},
                          {CKA_MODULUS_BITS, &bits, sizeof bits}, {CKA_PUBLIC_EXPONENT, exponent, sizeof exponent},
                          {CKA_LABEL, label.data(), label.size()}, {CKA_ID, id.data(), id.size()}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, 1},   {CKA_PRIVATE, &yes, 1}, {CKA_SENSITIVE, &yes, 1},
                           {CKA_EXTRACTABLE, &no, 1}, {CKA_UNWRAP, &yes, 1}, {CKA_DECRYPT, &no, 1},
                           {CKA_SIGN, &no, 1},      {CKA_LABEL, label.data(), label.size()}, {CKA_ID, id.data(), id.size()}};
    CK_MECHANISM mech{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE hp, hs;
    CK_RV rv = f->C_GenerateKeyPair(session, &mech, pub, sizeof pub / sizeof pub[0], priv, sizeof priv / sizeof priv[0], &hp, &hs);
    return rv == CKR_OK ? 0 : fail("keygen-rsa", rv);
  }
  auto objects = find(label, id);
  if (objects.empty()) return fail("no such key", 0);
  if (cmd == "usage" && argc == 8) {
    CK_BBOOL on = std::string(argv[7]) == "on" ? CK_TRUE : CK_FALSE;
    for (CK_OBJECT_HANDLE h : objects) {
      CK_OBJECT_CLASS cls = 0;
      CK_ATTRIBUTE c{CKA_CLASS, &cls, sizeof cls};
      f->C_GetAttributeValue(session, h, &c, 1);
      if (cls == CKO_PUBLIC_KEY) continue;
      CK_ATTRIBUTE t{CKA_UNWRAP, &on, 1};
      if (CK_RV rv = f->C_SetAttributeValue(session, h, &t, 1); rv != CKR_OK) return fail("usage", rv);
    }
    return 0;
  }
  if (cmd == "delete") {
    for (CK_OBJECT_HANDLE h : objects) {
      if (CK_RV rv = f->C_DestroyObject(session, h); rv != CKR_OK) return fail("delete", rv);
    }
    return 0;
  }
  return fail("unknown command", 0);
}
