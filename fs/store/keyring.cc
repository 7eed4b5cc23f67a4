#include "fs/store/keyring.h"

#include <new>

namespace cmkfs::fs {

Result<Keyring::FileKey> Keyring::Access::file_key(const Id128& file_id, uint32_t generation) const {
  if (!ok()) return Status::AccessDenied("the store's key is revoked");
  {
    std::lock_guard<std::mutex> g(ring_->cache_mu_);
    auto it = ring_->file_keys_.find(file_id);
    if (it != ring_->file_keys_.end()) return it->second;
  }
  auto key = ring_->deks_.find(generation);
  if (key == ring_->deks_.end()) {
    return Status::Corruption("no data key of generation " + std::to_string(generation));
  }
  FileKey shared;
  try {
    shared = std::make_shared<const crypto::SecretBytes>(key->second.files.derive(file_id));
  } catch (const std::bad_alloc&) {  // HmacKey's state: a request fails, the daemon stays
    return Status::IOError(ENOMEM, "out of memory deriving a file's key");
  }
  std::lock_guard<std::mutex> g(ring_->cache_mu_);
  if (ring_->file_keys_.size() >= kMaxCachedFileKeys) ring_->file_keys_.erase(ring_->file_keys_.begin());
  ring_->file_keys_.emplace(file_id, shared);
  return shared;
}

bool Keyring::available() const {
  std::shared_lock<std::shared_mutex> g(gate_);
  return available_;
}

Status Keyring::install(uint32_t current, std::map<uint32_t, crypto::SecretBytes> deks, crypto::SecretBytes name_key) {
  auto it = deks.find(current);
  if (it == deks.end()) return Status::InvalidArgument("no data key of the current generation");
  auto keys = crypto::derive_store_keys(it->second, name_key.bytes());
  if (!keys.ok()) return keys.status();
  for (auto older = deks.rbegin(); older != deks.rend(); ++older) {
    if (older->first >= current) continue;
    auto k = crypto::derive_store_keys(older->second);
    if (!k.ok()) return k.status();
    keys->older_meta.push_back(std::move(k->meta));
  }
  std::map<uint32_t, DataKey> installed;
  for (auto& [gen, dek] : deks) {
    auto files = crypto::FileKeyDeriver::make(dek);
    if (!files.ok()) return files.status();
    installed.emplace(gen, DataKey{std::move(dek), std::move(*files)});
  }
  std::unique_lock<std::shared_mutex> g(gate_);
  deks_ = std::move(installed);
  name_key_ = std::move(name_key);
  generation_ = current;
  store_keys_ = std::move(*keys);
  available_ = true;
  std::lock_guard<std::mutex> c(cache_mu_);
  file_keys_.clear();  // keys of generations no longer installed must go too
  return Status::Ok();
}

void Keyring::forget_older() {
  std::unique_lock<std::shared_mutex> g(gate_);
  for (auto it = deks_.begin(); it != deks_.end();) it = it->first == generation_ ? std::next(it) : deks_.erase(it);
  store_keys_.older_meta.clear();
  std::lock_guard<std::mutex> c(cache_mu_);
  file_keys_.clear();
}

std::vector<uint32_t> Keyring::older_generations() const {
  std::shared_lock<std::shared_mutex> g(gate_);
  std::vector<uint32_t> out;
  for (const auto& [gen, dek] : deks_) {
    if (gen != generation_) out.push_back(gen);
  }
  return out;
}

bool Keyring::holds(uint32_t generation, const crypto::SecretBytes& dek) const {
  std::shared_lock<std::shared_mutex> g(gate_);
  auto it = deks_.find(generation);
  return available_ && it != deks_.end() && crypto::equal_constant_time(it->second.dek.bytes(), dek.bytes());
}

void Keyring::revoke() {
  ++revoking_;
  {
    std::unique_lock<std::shared_mutex> g(gate_);
    available_ = false;
    deks_.clear();  // SecretBytes and HmacKey wipe on destruction
    name_key_.wipe();
    store_keys_.wipe();
    std::lock_guard<std::mutex> c(cache_mu_);
    file_keys_.clear();  // no Access that entered is alive, so these are the last references
  }
  --revoking_;
}

}  // namespace cmkfs::fs
