// The keys of a mounted store, and the gate that revocation closes.
//
// Every operation that uses a key holds a Keyring::Access (a shared lock) for its whole length.
// revoke() takes the lock exclusively: when it returns, no operation is using a key and every key
// (data key, store keys, cached file keys) has been zeroised. install() opens the gate again.
// While a revocation waits for the operations inside, new ones are refused without entering:
// glibc's shared_mutex lets readers in ahead of a waiting writer, so operations that kept
// overlapping (a registry serving pulls) held a revocation off for as long as they came.
//
// Thread-safety: all members are safe to call concurrently.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "crypto/base/id128.h"
#include "crypto/keys.h"

namespace cmkfs::fs {

class Keyring {
 public:
  using FileKey = std::shared_ptr<const crypto::SecretBytes>;

  class Access {
   public:
    bool ok() const { return lock_.owns_lock() && ring_->available_; }  // false: answer EACCES
    const crypto::StoreKeys& store_keys() const { return ring_->store_keys_; }  // REQUIRES: ok()
    uint32_t generation() const { return ring_->generation_; }  // the generation new files use
    // The key of one file: derived on first use, then cached (bounded).
    Result<FileKey> file_key(const Id128& file_id, uint32_t generation) const;

   private:
    friend class Keyring;
    explicit Access(Keyring* ring) : ring_(ring) {
      if (ring->revoking_ == 0) lock_ = std::shared_lock<std::shared_mutex>(ring->gate_);
    }
    std::shared_lock<std::shared_mutex> lock_;
    Keyring* ring_;
  };

  Access access() { return Access(this); }
  bool available() const;
  // Installs the data key of `generation` as the current one and derives the store keys.
  Status install(uint32_t generation, crypto::SecretBytes dek) {
    std::map<uint32_t, crypto::SecretBytes> deks;
    deks.emplace(generation, std::move(dek));
    return install(generation, std::move(deks), {});
  }
  // The same with every live generation's key (a data-key rotation in progress: files and
  // records under older ones stay readable) and the store's name key (empty: derived from the
  // current data key). Replaces whatever was installed.
  Status install(uint32_t current, std::map<uint32_t, crypto::SecretBytes> deks, crypto::SecretBytes name_key);
  // Drops the older generations' keys (a data-key rotation is done).
  void forget_older();
  // The generations installed besides the current one, oldest first.
  std::vector<uint32_t> older_generations() const;
  void revoke();  // wipes every key; Access::ok() is false until the next install()
  // Whether `dek` is the installed key of `generation` (constant time).
  bool holds(uint32_t generation, const crypto::SecretBytes& dek) const;

 private:
  static constexpr size_t kMaxCachedFileKeys = 4096;

  mutable std::shared_mutex gate_;
  std::atomic<int> revoking_{0};  // revocations waiting for the gate: no new Access enters
  bool available_ = false;        // guarded by gate_
  std::atomic<uint32_t> generation_{0};  // written under gate_; read by Access::generation() without it
  struct DataKey {
    crypto::SecretBytes dek;
    crypto::FileKeyDeriver files;  // its files' keys
  };
  std::map<uint32_t, DataKey> deks_;  // by generation
  crypto::SecretBytes name_key_;
  crypto::StoreKeys store_keys_;

  mutable std::mutex cache_mu_;  // guards file_keys_; taken under a shared gate_
  mutable std::unordered_map<Id128, FileKey, Id128Hash> file_keys_;  // ids from sealed records
};

}  // namespace cmkfs::fs
