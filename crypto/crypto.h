// crypto: the primitives cmkfs is built on, over OpenSSL 3 and nothing else.
//
// - SecretBytes: key material in OpenSSL's secure heap (mlocked, MADV_DONTDUMP), wiped on release.
// - HKDF-SHA256 (RFC 5869), HMAC-SHA256, AES-256-GCM for single messages.
// - The chunk codec and its layout arithmetic live in chunk_codec.h / chunk_layout.h.
//
// Thread-safety: every function here is safe to call from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "crypto/base/id128.h"
#include "crypto/base/status.h"

struct evp_cipher_ctx_st;  // OpenSSL's EVP_CIPHER_CTX

namespace cmkfs::crypto {

inline constexpr size_t kKeySize = 32;    // AES-256, HKDF output for every derived key
inline constexpr size_t kNonceSize = 12;  // GCM 96-bit nonce
inline constexpr size_t kTagSize = 16;    // GCM 128-bit tag

using Bytes = std::span<const uint8_t>;
using MutableBytes = std::span<uint8_t>;
using Mac256 = std::array<uint8_t, 32>;

inline Bytes as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Owns secret bytes. Move-only; the memory is zeroised (OPENSSL_cleanse) before it is freed.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);  // zero-filled
  static SecretBytes copy_of(Bytes b);
  ~SecretBytes() { wipe(); }
  SecretBytes(SecretBytes&& o) noexcept;
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  Bytes bytes() const { return {data_, size_}; }
  SecretBytes clone() const { return copy_of(bytes()); }
  void wipe();  // zeroise and release; empty() afterwards

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Makes the process unfit to leak keys: not dumpable (no core files, no ptrace by the same uid)
// and a secure heap for SecretBytes; with `lock_memory`, every page it has or will touch is kept
// out of swap (mlockall on fault: keyed contexts, request buffers, everything; needs root or a
// large RLIMIT_MEMLOCK). Call at start, before any key exists, and again after a fork (memory
// locks are not inherited). Idempotent.
Status harden_process(bool lock_memory);

// An allocator that wipes what it frees: for buffers that hold plaintext for a moment.
template <class T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() = default;
  template <class U>
  WipingAllocator(const WipingAllocator<U>&) {}  // NOLINT(google-explicit-constructor)
  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, size_t n) {
    wipe_bytes(p, n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  template <class U>
  bool operator==(const WipingAllocator<U>&) const { return true; }
  static void wipe_bytes(void* p, size_t n);
};
using PlainBuffer = std::vector<uint8_t, WipingAllocator<uint8_t>>;

// Frees OpenSSL's state of the calling thread (its RNG among it); for threads that end before
// the process does.
void release_thread_state();

Status random_bytes(MutableBytes out);
Result<SecretBytes> random_key();  // kKeySize random bytes

// RFC 5869 with SHA-256. `info` is the context label, e.g. "cmkfs/v1/meta".
Result<SecretBytes> hkdf_sha256(Bytes ikm, Bytes salt, Bytes info, size_t length = kKeySize);

Mac256 hmac_sha256(Bytes key, Bytes data);
Mac256 sha256(Bytes data);  // one-shot; Sha256 below for a stream

// SHA-256 of a stream (content digests: a registry blob is named by the SHA-256 of its bytes).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(Bytes data);
  Mac256 finish();  // the digest; the hasher starts over

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// An HMAC-SHA256 key keyed once: each mac() re-initialises a kept copy of the keyed state
// instead of hashing the key again (one-shot HMAC dominated a name lookup's CPU time) or
// duplicating the keyed context (several allocations). The state is key
// material: wipe() and the destructor free it (OpenSSL cleanses it). Move-only; mac() may run on
// many threads at once.
class HmacKey {
 public:
  HmacKey();
  ~HmacKey();
  HmacKey(HmacKey&&) noexcept;
  HmacKey& operator=(HmacKey&&) noexcept;
  static Result<HmacKey> make(Bytes key);
  Mac256 mac(Bytes data) const;  // REQUIRES: !empty(); throws std::bad_alloc when out of memory
  bool empty() const { return state_ == nullptr; }
  void wipe();

 private:
  struct State;  // the keyed context and copies of it that mac() reuses
  std::unique_ptr<State> state_;
};

bool equal_constant_time(Bytes a, Bytes b);
// Zeroes memory that held a secret, in a way the compiler cannot drop (OPENSSL_cleanse).
void wipe_memory(void* p, size_t n);

// AES-256-GCM of one message. ct has pt.size() bytes. gcm_open returns EBADMSG when the tag does
// not verify (wrong key, tampered ciphertext or AAD) and leaves `pt` unspecified.
Status gcm_seal(Bytes key, Bytes nonce, Bytes aad, Bytes pt, MutableBytes ct, MutableBytes tag);
Status gcm_open(Bytes key, Bytes nonce, Bytes aad, Bytes ct, Bytes tag, MutableBytes pt);

// An AES-256-GCM key whose key schedule is computed once: each seal or open copies it instead of
// expanding the key again (metadata records are small, so expansion dominated opening one). The
// schedule is key material: wipe() and the destructor free it (OpenSSL cleanses it). Move-only;
// seal() and open() may run on many threads at once.
class GcmKey {
 public:
  GcmKey() = default;
  static Result<GcmKey> make(Bytes key);
  Status seal(Bytes nonce, Bytes aad, Bytes pt, MutableBytes ct, MutableBytes tag) const;
  Status open(Bytes nonce, Bytes aad, Bytes ct, Bytes tag, MutableBytes pt) const;
  bool empty() const { return keyed_ == nullptr; }
  void wipe() { keyed_.reset(); }

 private:
  friend class GcmSession;
  struct Free {
    void operator()(evp_cipher_ctx_st* c) const;
  };
  std::unique_ptr<evp_cipher_ctx_st, Free> keyed_;
};

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
  evp_cipher_ctx_st* ctx_;
  bool encrypt_;
  Status status_;
};

}  // namespace cmkfs::crypto
