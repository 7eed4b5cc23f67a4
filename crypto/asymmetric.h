// RSA and EC key pairs and RSA-OAEP: what a key vault does with its keys. cmkfs itself never
// holds a private key; the local vault (cmkfs-vault) and the tests do.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/crypto.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace cmkfs::crypto {

enum class OaepHash { kSha1, kSha256 };  // RSA-OAEP and RSA-OAEP-256 (MGF1 with the same hash)

class KeyPair {
 public:
  static Result<KeyPair> generate_rsa(int bits);           // 2048, 3072 or 4096
  static Result<KeyPair> generate_ec(std::string_view crv);  // "P-256", "P-384", "P-521"
  static Result<KeyPair> from_private_pem(std::string_view pem);

  Result<std::string> private_pem() const;
  bool is_rsa() const;
  int bits() const;
  // Public parts, big-endian unsigned: RSA n and e; EC x and y of curve crv().
  std::vector<uint8_t> rsa_n() const;
  std::vector<uint8_t> rsa_e() const;
  std::vector<uint8_t> ec_x() const;
  std::vector<uint8_t> ec_y() const;
  std::string crv() const;

  Result<std::vector<uint8_t>> oaep_encrypt(Bytes plain, OaepHash hash) const;
  // EBADMSG when the ciphertext was not made with this key and hash.
  Result<SecretBytes> oaep_decrypt(Bytes cipher, OaepHash hash) const;

  EVP_PKEY* get() const { return pkey_.get(); }

 private:
  struct Free {
    void operator()(EVP_PKEY* p) const;
  };
  explicit KeyPair(EVP_PKEY* p) : pkey_(p) {}
  std::unique_ptr<EVP_PKEY, Free> pkey_;
};

}  // namespace cmkfs::crypto
