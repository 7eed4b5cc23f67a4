// Internal to crypto/: RAII owners for OpenSSL handles and an AES-256-GCM session.
#pragma once

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <memory>

#include "crypto/crypto.h"

namespace cmkfs::crypto {

struct EvpKdfCtxFree {
  void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};
using EvpKdfCtx = std::unique_ptr<EVP_KDF_CTX, EvpKdfCtxFree>;

struct EvpCipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using EvpCipherCtx = std::unique_ptr<EVP_CIPHER_CTX, EvpCipherCtxFree>;

// Seals or opens any number of messages under one key: the key schedule is computed once per
// session. The destructor frees the context, which cleanses the expanded key, so no key material
// outlives the session (revocation relies on this). Not copyable; one thread, one scope.
class GcmSession {
 public:
  GcmSession(Bytes key, bool encrypt);
  GcmSession(const GcmKey& key, bool encrypt);  // REQUIRES: !key.empty()
  ~GcmSession();
  GcmSession(const GcmSession&) = delete;
  GcmSession& operator=(const GcmSession&) = delete;

  const Status& status() const { return status_; }
  Status seal(Bytes nonce, Bytes aad, Bytes pt, MutableBytes ct, MutableBytes tag);
  Status open(Bytes nonce, Bytes aad, Bytes ct, Bytes tag, MutableBytes pt);

 private:
  EVP_CIPHER_CTX* ctx_;
  bool encrypt_;
  Status status_;
};

}  // namespace cmkfs::crypto
