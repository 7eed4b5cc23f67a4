// Internal to crypto/: RAII owners for OpenSSL handles.
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

}  // namespace cmkfs::crypto
