#include "crypto/password.h"

#include <openssl/evp.h>

#include <sstream>
#include <vector>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"

namespace cmkfs::crypto {
namespace {

// 32 MiB and about 0.1 s per try here: a stolen hash costs that per guess too.
constexpr uint64_t kN = 1 << 15, kR = 8, kP = 1;
constexpr size_t kSaltSize = 16, kHashSize = 32;
constexpr uint64_t kMaxMem = 64 << 20;

bool scrypt(std::string_view password, Bytes salt, uint64_t n, uint64_t r, uint64_t p, std::vector<uint8_t>& out) {
  return EVP_PBE_scrypt(password.data(), password.size(), salt.data(), salt.size(), n, r, p, kMaxMem, out.data(),
                        out.size()) == 1;
}

}  // namespace

Result<std::string> hash_password(std::string_view password) {
  std::vector<uint8_t> salt(kSaltSize), hash(kHashSize);
  CMKFS_RETURN_IF_ERROR(random_bytes(salt));
  if (!scrypt(password, salt, kN, kR, kP, hash)) return Status(EIO, "scrypt failed");
  std::ostringstream o;
  o << "scrypt$" << kN << "$" << kR << "$" << kP << "$" << to_hex(salt) << "$" << to_hex(hash);
  return o.str();
}

bool verify_password(std::string_view password, const std::string& stored) {
  std::istringstream in(stored);
  std::string scheme, n, r, p, salt_hex, hash_hex;
  if (!std::getline(in, scheme, '$') || scheme != "scrypt" || !std::getline(in, n, '$') || !std::getline(in, r, '$') ||
      !std::getline(in, p, '$') || !std::getline(in, salt_hex, '$') || !std::getline(in, hash_hex)) {
    return false;
  }
  auto salt = from_hex(salt_hex);
  auto want = from_hex(hash_hex);
  uint64_t nv = std::strtoull(n.c_str(), nullptr, 10), rv = std::strtoull(r.c_str(), nullptr, 10),
           pv = std::strtoull(p.c_str(), nullptr, 10);
  // Bounded: a hash file is input too, and must not make a sign-in take minutes or gigabytes.
  if (!salt || !want || want->size() != kHashSize || nv < 2 || nv > (1 << 20) || rv == 0 || rv > 16 || pv == 0 ||
      pv > 4) {
    return false;
  }
  std::vector<uint8_t> got(kHashSize);
  if (!scrypt(password, *salt, nv, rv, pv, got)) return false;
  return equal_constant_time(got, *want);
}

}  // namespace cmkfs::crypto
