#include "crypto/certificate.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace cmkfs::crypto {

void CertificateKey::Free::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
void CertificateKey::Free::operator()(X509* p) const { X509_free(p); }

Result<CertificateKey> CertificateKey::from_pem(std::string_view pem) {
  auto read = [&](auto fn) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    auto* out = bio ? fn(bio) : nullptr;
    BIO_free(bio);
    return out;
  };
  X509* cert = read([](BIO* b) { return PEM_read_bio_X509(b, nullptr, nullptr, nullptr); });
  // An encrypted key is refused, never prompted for on a terminal.
  pem_password_cb* no_passphrase = [](char*, int, int, void*) { return 0; };
  EVP_PKEY* key = read([&](BIO* b) { return PEM_read_bio_PrivateKey(b, nullptr, no_passphrase, nullptr); });
  CertificateKey ck(cert, key);
  if (cert == nullptr || key == nullptr || EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
    return Status::InvalidArgument("the certificate file must hold a PEM certificate and its RSA private key");
  }
  return ck;
}

std::vector<uint8_t> CertificateKey::thumbprint(bool sha256) const {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  X509_digest(cert_.get(), sha256 ? EVP_sha256() : EVP_sha1(), d, &n);
  return std::vector<uint8_t>(d, d + n);
}

Result<std::vector<uint8_t>> CertificateKey::sign_rs256(Bytes data) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  std::vector<uint8_t> sig;
  bool ok = ctx && EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_.get()) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, data.data(), data.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(ctx, sig.data(), &len, data.data(), data.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return Status::InvalidArgument("cannot sign with the certificate's private key");
  return sig;
}

}  // namespace cmkfs::crypto
