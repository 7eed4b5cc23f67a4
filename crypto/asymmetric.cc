#include "crypto/asymmetric.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

namespace cmkfs::crypto {
namespace {

struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioFree>;

std::vector<uint8_t> bn_param(EVP_PKEY* p, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(p, name, &bn) != 1) return {};
  std::vector<uint8_t> out(BN_num_bytes(bn));
  BN_bn2bin(bn, out.data());
  BN_free(bn);
  return out;
}

// EC coordinates are fixed-width, padded to the field size.
std::vector<uint8_t> ec_coordinate(EVP_PKEY* p, const char* name) {
  std::vector<uint8_t> v = bn_param(p, name);
  size_t width = (static_cast<size_t>(EVP_PKEY_get_bits(p)) + 7) / 8;
  if (v.size() < width) v.insert(v.begin(), width - v.size(), 0);
  return v;
}

Status setup_oaep(EVP_PKEY_CTX* ctx, OaepHash hash) {
  const EVP_MD* md = hash == OaepHash::kSha256 ? EVP_sha256() : EVP_sha1();
  if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 || EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) != 1) {
    return Status::IOError(EIO, "RSA-OAEP setup failed");
  }
  return Status::Ok();
}

}  // namespace

void KeyPair::Free::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }

Result<KeyPair> KeyPair::generate_rsa(int bits) {
  if (bits != 2048 && bits != 3072 && bits != 4096) return Status::InvalidArgument("RSA key size must be 2048, 3072 or 4096");
  EVP_PKEY* p = EVP_RSA_gen(static_cast<unsigned>(bits));
  if (p == nullptr) return Status::IOError(EIO, "RSA key generation failed");
  return KeyPair(p);
}

Result<KeyPair> KeyPair::generate_ec(std::string_view crv) {
  const char* group = crv == "P-256" ? "P-256" : crv == "P-384" ? "P-384" : crv == "P-521" ? "P-521" : nullptr;
  if (group == nullptr) return Status::InvalidArgument("EC curve must be P-256, P-384 or P-521");
  EVP_PKEY* p = EVP_EC_gen(group);
  if (p == nullptr) return Status::IOError(EIO, "EC key generation failed");
  return KeyPair(p);
}

Result<KeyPair> KeyPair::from_private_pem(std::string_view pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* p = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (p == nullptr) return Status::Corruption("not a PEM private key");
  return KeyPair(p);
}

Result<std::string> KeyPair::private_pem() const {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Status::IOError(EIO, "PEM encoding failed");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

bool KeyPair::is_rsa() const { return EVP_PKEY_is_a(pkey_.get(), "RSA") == 1; }
int KeyPair::bits() const { return EVP_PKEY_get_bits(pkey_.get()); }
std::vector<uint8_t> KeyPair::rsa_n() const { return bn_param(pkey_.get(), OSSL_PKEY_PARAM_RSA_N); }
std::vector<uint8_t> KeyPair::rsa_e() const { return bn_param(pkey_.get(), OSSL_PKEY_PARAM_RSA_E); }
std::vector<uint8_t> KeyPair::ec_x() const { return ec_coordinate(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_X); }
std::vector<uint8_t> KeyPair::ec_y() const { return ec_coordinate(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_Y); }

std::string KeyPair::crv() const {
  char name[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey_.get(), OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) != 1) return "";
  std::string g(name, len);
  if (g == "prime256v1" || g == "P-256") return "P-256";
  if (g == "secp384r1" || g == "P-384") return "P-384";
  if (g == "secp521r1" || g == "P-521") return "P-521";
  return g;
}

Result<std::vector<uint8_t>> KeyPair::oaep_encrypt(Bytes plain, OaepHash hash) const {
  if (!is_rsa()) return Status::InvalidArgument("RSA-OAEP needs an RSA key");
  PkeyCtx ctx(EVP_PKEY_CTX_new(pkey_.get(), nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1) return Status::IOError(EIO, "RSA-OAEP init failed");
  CMKFS_RETURN_IF_ERROR(setup_oaep(ctx.get(), hash));
  size_t n = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &n, plain.data(), plain.size()) != 1) return Status::InvalidArgument("RSA-OAEP: input too long");
  std::vector<uint8_t> out(n);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &n, plain.data(), plain.size()) != 1) {
    return Status::InvalidArgument("RSA-OAEP encryption failed");
  }
  out.resize(n);
  return out;
}

Result<SecretBytes> KeyPair::oaep_decrypt(Bytes cipher, OaepHash hash) const {
  if (!is_rsa()) return Status::InvalidArgument("RSA-OAEP needs an RSA key");
  PkeyCtx ctx(EVP_PKEY_CTX_new(pkey_.get(), nullptr));
  if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1) return Status::IOError(EIO, "RSA-OAEP init failed");
  CMKFS_RETURN_IF_ERROR(setup_oaep(ctx.get(), hash));
  size_t n = 0;
  if (EVP_PKEY_decrypt(ctx.get(), nullptr, &n, cipher.data(), cipher.size()) != 1) return Status(EBADMSG, "RSA-OAEP decryption failed");
  SecretBytes out(n);
  if (EVP_PKEY_decrypt(ctx.get(), out.data(), &n, cipher.data(), cipher.size()) != 1) {
    return Status(EBADMSG, "RSA-OAEP decryption failed");
  }
  return SecretBytes::copy_of({out.data(), n});
}

}  // namespace cmkfs::crypto
