#include "crypto/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <climits>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "crypto/evp_internal.h"

namespace cmkfs::crypto {

SecretBytes::SecretBytes(size_t size) : size_(size) {
  if (size == 0) return;
  // The secure heap can run out; ordinary memory (still wiped) is then the fallback.
  data_ = static_cast<uint8_t*>(OPENSSL_secure_zalloc(size));
  if (data_ == nullptr) data_ = static_cast<uint8_t*>(OPENSSL_zalloc(size));
  if (data_ == nullptr) throw std::bad_alloc();
}

SecretBytes SecretBytes::copy_of(Bytes b) {
  SecretBytes s(b.size());
  if (!b.empty()) std::memcpy(s.data_, b.data(), b.size());
  return s;
}

SecretBytes::SecretBytes(SecretBytes&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    wipe();
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void SecretBytes::wipe() {
  if (data_ != nullptr) OPENSSL_secure_clear_free(data_, size_);  // cleanses either kind
  data_ = nullptr;
  size_ = 0;
}

template <>
void WipingAllocator<uint8_t>::wipe_bytes(void* p, size_t n) {
  OPENSSL_cleanse(p, n);
}

Status harden_process(bool lock_memory) {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return Status::IOError(errno, "prctl(PR_SET_DUMPABLE) failed");
  }
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) return Status::IOError(errno, "setrlimit(RLIMIT_CORE) failed");
  // 1 MiB of mlocked, undumpable memory holds ~16k keys; it must be a power of two.
#ifndef CMKFS_NO_SECURE_HEAP
  if (CRYPTO_secure_malloc_initialized() == 0 && CRYPTO_secure_malloc_init(1 << 20, 32) == 0) {
    return Status::IOError(ENOMEM, "could not lock memory for the secure heap (RLIMIT_MEMLOCK?)");
  }
#endif
  if (lock_memory && mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0) {
    return Status::IOError(errno, "could not lock the process's memory (mlockall)");
  }
  return Status::Ok();
}

void release_thread_state() { OPENSSL_thread_stop(); }

Status random_bytes(MutableBytes out) {
  if (out.empty()) return Status::Ok();
  if (out.size() > INT_MAX || RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    return Status::IOError(EIO, "the random number generator failed");
  }
  return Status::Ok();
}

Result<SecretBytes> random_key() {
  SecretBytes k(kKeySize);
  CMKFS_RETURN_IF_ERROR(random_bytes({k.data(), k.size()}));
  return k;
}

Result<SecretBytes> hkdf_sha256(Bytes ikm, Bytes salt, Bytes info, size_t length) {
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return Status::IOError(EIO, "HKDF is not available in this OpenSSL");
  EvpKdfCtx ctx(EVP_KDF_CTX_new(kdf));
  if (!ctx) return Status::IOError(ENOMEM, "EVP_KDF_CTX_new failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  int n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.data()), ikm.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt.data()), salt.size());
  }
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  SecretBytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return Status::IOError(EIO, "HKDF derivation failed");
  }
  return out;
}

Mac256 hmac_sha256(Bytes key, Bytes data) {
  Mac256 mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), mac.data(), &len);
  return mac;
}

Mac256 sha256(Bytes data) {
  Mac256 digest{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &len, EVP_sha256(), nullptr);
  return digest;
}

struct Sha256::State {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~State() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  if (state_->ctx == nullptr || EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr) != 1) throw std::bad_alloc();
}
Sha256::~Sha256() = default;

void Sha256::update(Bytes data) { EVP_DigestUpdate(state_->ctx, data.data(), data.size()); }

Mac256 Sha256::finish() {
  Mac256 out{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(state_->ctx, out.data(), &len);
  EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
  return out;
}

// Copies of the keyed context are kept for reuse: re-initialising one with the same key costs a
// fraction of duplicating the keyed one (several allocations) for every name.
struct HmacKey::State {
  EVP_MAC_CTX* keyed = nullptr;
  std::mutex mu;
  std::vector<EVP_MAC_CTX*> spare;
  ~State() {
    for (EVP_MAC_CTX* c : spare) EVP_MAC_CTX_free(c);  // cleanses the key material
    EVP_MAC_CTX_free(keyed);
  }
  EVP_MAC_CTX* take() {
    {
      std::lock_guard<std::mutex> g(mu);
      if (!spare.empty()) {
        EVP_MAC_CTX* c = spare.back();
        spare.pop_back();
        return c;
      }
    }
    return EVP_MAC_CTX_dup(keyed);
  }
  void give_back(EVP_MAC_CTX* c) {
    std::lock_guard<std::mutex> g(mu);
    spare.push_back(c);
  }
};

HmacKey::HmacKey() = default;
HmacKey::~HmacKey() = default;
HmacKey::HmacKey(HmacKey&&) noexcept = default;
HmacKey& HmacKey::operator=(HmacKey&&) noexcept = default;
void HmacKey::wipe() { state_.reset(); }

Result<HmacKey> HmacKey::make(Bytes key) {
  static EVP_MAC* const hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (hmac == nullptr) return Status::IOError(EIO, "HMAC is not available in this OpenSSL");
  HmacKey k;
  k.state_ = std::make_unique<State>();
  k.state_->keyed = EVP_MAC_CTX_new(hmac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  if (k.state_->keyed == nullptr || EVP_MAC_init(k.state_->keyed, key.data(), key.size(), params) != 1) {
    return Status::IOError(EIO, "HMAC-SHA256 key setup failed");
  }
  return k;
}

Mac256 HmacKey::mac(Bytes data) const {
  EVP_MAC_CTX* ctx = state_->take();
  Mac256 mac{};
  size_t len = 0;
  bool ok = ctx != nullptr && EVP_MAC_init(ctx, nullptr, 0, nullptr) == 1 &&
            EVP_MAC_update(ctx, data.data(), data.size()) == 1 &&
            EVP_MAC_final(ctx, mac.data(), &len, mac.size()) == 1 && len == mac.size();
  if (!ok) {
    EVP_MAC_CTX_free(ctx);
    throw std::bad_alloc();  // the only way a keyed HMAC fails
  }
  state_->give_back(ctx);
  return mac;
}

void wipe_memory(void* p, size_t n) { OPENSSL_cleanse(p, n); }

bool equal_constant_time(Bytes a, Bytes b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Status gcm_seal(Bytes key, Bytes nonce, Bytes aad, Bytes pt, MutableBytes ct, MutableBytes tag) {
  GcmSession session(key, /*encrypt=*/true);
  return session.seal(nonce, aad, pt, ct, tag);
}

Status gcm_open(Bytes key, Bytes nonce, Bytes aad, Bytes ct, Bytes tag, MutableBytes pt) {
  GcmSession session(key, /*encrypt=*/false);
  return session.open(nonce, aad, ct, tag, pt);
}

}  // namespace cmkfs::crypto
