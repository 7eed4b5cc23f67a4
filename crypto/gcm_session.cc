#include <openssl/evp.h>

#include <climits>

#include "crypto/evp_internal.h"

namespace cmkfs::crypto {
namespace {

const EVP_CIPHER* aes256gcm() {
  static EVP_CIPHER* const cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}

bool fits_int(size_t n) { return n <= static_cast<size_t>(INT_MAX); }

}  // namespace

GcmSession::GcmSession(Bytes key, bool encrypt) : ctx_(EVP_CIPHER_CTX_new()), encrypt_(encrypt) {
  if (ctx_ == nullptr || aes256gcm() == nullptr) {
    status_ = Status::IOError(ENOMEM, "AES-256-GCM is not available");
  } else if (key.size() != kKeySize) {
    status_ = Status::InvalidArgument("AES-256-GCM needs a 32-byte key");
  } else if (EVP_CipherInit_ex2(ctx_, aes256gcm(), key.data(), nullptr, encrypt ? 1 : 0, nullptr) != 1) {
    status_ = Status::IOError(EIO, "AES-256-GCM key setup failed");
  }
}

GcmSession::GcmSession(const GcmKey& key, bool encrypt) : ctx_(EVP_CIPHER_CTX_new()), encrypt_(encrypt) {
  if (ctx_ == nullptr || EVP_CIPHER_CTX_copy(ctx_, key.keyed_.get()) != 1) {
    status_ = Status::IOError(ENOMEM, "AES-256-GCM context copy failed");
  }
}

GcmSession::~GcmSession() { EVP_CIPHER_CTX_free(ctx_); }  // cleanses the key schedule

void GcmKey::Free::operator()(evp_cipher_ctx_st* c) const { EVP_CIPHER_CTX_free(c); }

Result<GcmKey> GcmKey::make(Bytes key) {
  GcmKey k;
  k.keyed_.reset(EVP_CIPHER_CTX_new());
  if (!k.keyed_ || aes256gcm() == nullptr) return Status::IOError(ENOMEM, "AES-256-GCM is not available");
  if (key.size() != kKeySize) return Status::InvalidArgument("AES-256-GCM needs a 32-byte key");
  if (EVP_CipherInit_ex2(k.keyed_.get(), aes256gcm(), key.data(), nullptr, 1, nullptr) != 1) {
    return Status::IOError(EIO, "AES-256-GCM key setup failed");
  }
  return k;
}

Status GcmKey::seal(Bytes nonce, Bytes aad, Bytes pt, MutableBytes ct, MutableBytes tag) const {
  return GcmSession(*this, /*encrypt=*/true).seal(nonce, aad, pt, ct, tag);
}

Status GcmKey::open(Bytes nonce, Bytes aad, Bytes ct, Bytes tag, MutableBytes pt) const {
  return GcmSession(*this, /*encrypt=*/false).open(nonce, aad, ct, tag, pt);
}

Status GcmSession::seal(Bytes nonce, Bytes aad, Bytes pt, MutableBytes ct, MutableBytes tag) {
  if (!status_.ok()) return status_;
  if (!encrypt_ || nonce.size() != kNonceSize || tag.size() != kTagSize || ct.size() < pt.size() ||
      !fits_int(pt.size()) || !fits_int(aad.size())) {
    return Status::InvalidArgument("gcm seal: bad arguments");
  }
  int len = 0;
  if (EVP_CipherInit_ex2(ctx_, nullptr, nullptr, nonce.data(), 1, nullptr) != 1 ||
      (!aad.empty() && EVP_CipherUpdate(ctx_, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      (!pt.empty() && EVP_CipherUpdate(ctx_, ct.data(), &len, pt.data(), static_cast<int>(pt.size())) != 1) ||
      EVP_CipherFinal_ex(ctx_, ct.data() + pt.size(), &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, kTagSize, tag.data()) != 1) {
    return Status::IOError(EIO, "AES-256-GCM encryption failed");
  }
  return Status::Ok();
}

Status GcmSession::open(Bytes nonce, Bytes aad, Bytes ct, Bytes tag, MutableBytes pt) {
  if (!status_.ok()) return status_;
  if (encrypt_ || nonce.size() != kNonceSize || tag.size() != kTagSize || pt.size() < ct.size() ||
      !fits_int(ct.size()) || !fits_int(aad.size())) {
    return Status::InvalidArgument("gcm open: bad arguments");
  }
  int len = 0;
  if (EVP_CipherInit_ex2(ctx_, nullptr, nullptr, nonce.data(), 0, nullptr) != 1 ||
      (!aad.empty() && EVP_CipherUpdate(ctx_, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) ||
      (!ct.empty() && EVP_CipherUpdate(ctx_, pt.data(), &len, ct.data(), static_cast<int>(ct.size())) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, kTagSize, const_cast<uint8_t*>(tag.data())) != 1) {
    return Status::IOError(EIO, "AES-256-GCM decryption failed");
  }
  if (EVP_CipherFinal_ex(ctx_, pt.data() + ct.size(), &len) != 1) {
    return Status(EBADMSG, "authentication tag mismatch");
  }
  return Status::Ok();
}

}  // namespace cmkfs::crypto
