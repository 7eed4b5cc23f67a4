// An X.509 certificate and its RSA private key, read from one PEM text: how an app proves who it
// is to an identity provider (a signed JWT assertion naming the certificate by thumbprint).
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "crypto/crypto.h"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct x509_st X509;

namespace cmkfs::crypto {

class CertificateKey {
 public:
  // EINVAL unless `pem` holds a certificate and an RSA private key.
  static Result<CertificateKey> from_pem(std::string_view pem);

  // SHA-1 or SHA-256 of the certificate's DER (a JWT's x5t and x5t#S256).
  std::vector<uint8_t> thumbprint(bool sha256) const;
  // RSASSA-PKCS1-v1_5 with SHA-256 (JWS RS256).
  Result<std::vector<uint8_t>> sign_rs256(Bytes data) const;

 private:
  struct Free {
    void operator()(EVP_PKEY* p) const;
    void operator()(X509* p) const;
  };
  CertificateKey(X509* cert, EVP_PKEY* key) : cert_(cert), key_(key) {}
  std::unique_ptr<X509, Free> cert_;
  std::unique_ptr<EVP_PKEY, Free> key_;
};

}  // namespace cmkfs::crypto
