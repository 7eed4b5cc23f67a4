#include "fs/store/keyring.h"

#include <cstring>

namespace cmkfs::fs {

size_t Keyring::IdHash::operator()(const Id128& id) const {
  size_t h;
  std::memcpy(&h, id.data(), sizeof h);  // ids are random
  return h;
}

Result<Keyring::FileKey> Keyring::Access::file_key(const Id128& file_id, uint32_t generation) const {
  if (!ok()) return Status::AccessDenied("the store's key is revoked");
  {
    std::lock_guard<std::mutex> g(ring_->cache_mu_);
    auto it = ring_->file_keys_.find(file_id);
    if (it != ring_->file_keys_.end()) return it->second;
  }
  auto dek = ring_->deks_.find(generation);
  if (dek == ring_->deks_.end()) {
    return Status::Corruption("no data key of generation " + std::to_string(generation));
  }
  auto key = crypto::derive_file_key(dek->second, file_id);
  if (!key.ok()) return key.status();
  auto shared = std::make_shared<const crypto::SecretBytes>(std::move(*key));
  std::lock_guard<std::mutex> g(ring_->cache_mu_);
  if (ring_->file_keys_.size() >= kMaxCachedFileKeys) ring_->file_keys_.erase(ring_->file_keys_.begin());
  ring_->file_keys_.emplace(file_id, shared);
  return shared;
}

bool Keyring::available() const {
  std::shared_lock<std::shared_mutex> g(gate_);
  return available_;
}

Status Keyring::install(uint32_t generation, crypto::SecretBytes dek) {
  auto keys = crypto::derive_store_keys(dek);
  if (!keys.ok()) return keys.status();
  std::unique_lock<std::shared_mutex> g(gate_);
  deks_[generation] = std::move(dek);
  generation_ = generation;
  store_keys_ = std::move(*keys);
  available_ = true;
  return Status::Ok();
}

bool Keyring::holds(uint32_t generation, const crypto::SecretBytes& dek) const {
  std::shared_lock<std::shared_mutex> g(gate_);
  auto it = deks_.find(generation);
  return available_ && it != deks_.end() && crypto::equal_constant_time(it->second.bytes(), dek.bytes());
}

void Keyring::revoke() {
  std::unique_lock<std::shared_mutex> g(gate_);
  available_ = false;
  deks_.clear();  // SecretBytes wipe on destruction
  store_keys_.wipe();
  std::lock_guard<std::mutex> c(cache_mu_);
  file_keys_.clear();  // no Access is alive, so these are the last references
}

}  // namespace cmkfs::fs
