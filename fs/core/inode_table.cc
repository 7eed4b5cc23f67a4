#include "fs/core/inode_table.h"

#include <cstdio>
#include <cstdlib>
#include <shared_mutex>

namespace cmkfs::fs {

std::shared_ptr<Inode> InodeTable::find(uint64_t ino) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(ino);
  return it == map_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<Inode>> InodeTable::get(uint64_t ino, const Loader& load, uint64_t lookups) {
  for (;;) {
    uint64_t seen = 0;     // the demotion the load starts after, if any
    uint64_t changes = 0;  // changed_while_loading() calls before it
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = map_.find(ino);
      if (it != map_.end()) {
        it->second->lookups += lookups;
        return it->second;
      }
      auto d = demoted_.find(ino);
      if (d != demoted_.end()) seen = d->second.seq;
      Loading& l = loading_[ino];
      ++l.loads;
      changes = l.changes;
    }
    auto rec = load();
    std::lock_guard<std::mutex> g(mu_);
    auto l = loading_.find(ino);
    bool changed = l->second.changes != changes;
    if (--l->second.loads == 0) loading_.erase(l);
    auto it = map_.find(ino);
    if (it != map_.end()) {  // loaded meanwhile (and perhaps deleted since: it is the one to use)
      it->second->lookups += lookups;
      return it->second;
    }
    auto d = demoted_.find(ino);
    // Loaded, changed and demoted again by others since this load began, or changed by another
    // process (a follower's writer): read it again.
    if ((d == demoted_.end() ? 0 : d->second.seq) != seen || changed) continue;
    if (!rec.ok()) {
      if (rec.status().code() == ENOENT) return Status::Corruption("inode " + std::to_string(ino) + " is missing");
      return rec.status();
    }
    auto node = std::make_shared<Inode>(std::move(*rec));
    node->lookups = lookups;
    if (d != demoted_.end()) node->lookups += d->second.lookups, demoted_.erase(d);
    map_.emplace(ino, node);
    order_.push_back(ino);
    shrink_locked();
    return node;
  }
}

void InodeTable::changed_while_loading(uint64_t ino) {
  std::lock_guard<std::mutex> g(mu_);
  changed_while_loading_locked(ino);
}

void InodeTable::changed_while_loading_locked(uint64_t ino) {
  auto l = loading_.find(ino);
  if (l != loading_.end()) ++l->second.changes;
}

std::shared_ptr<Inode> InodeTable::insert(meta::InodeRecord rec, uint64_t lookups, uint32_t opens) {
  auto node = std::make_shared<Inode>(std::move(rec));
  node->lookups = lookups;
  node->opens = opens;
  node->change_seq = 1;  // a new inode is unsaved until its creating transaction commits
  std::lock_guard<std::mutex> g(mu_);
  map_[node->rec.ino] = node;  // a new inode number: never demoted
  order_.push_back(node->rec.ino);
  shrink_locked();
  return node;
}

void InodeTable::shrink() {
  std::lock_guard<std::mutex> g(mu_);
  shrink_locked(8192);  // a few milliseconds at most: requests wait for the table meanwhile
}

void InodeTable::shrink_locked(size_t budget) {
  for (size_t looked = 0; map_.size() > capacity_ && looked < budget && !order_.empty(); ++looked) {
    uint64_t ino = order_.front();
    order_.pop_front();
    auto it = map_.find(ino);
    if (it == map_.end()) continue;  // gone since
    Inode& node = *it->second;
    // Only the table holds it (every other holder got its copy from the table, under mu_), it is
    // not open, LMDB has its record as it is, it is not waiting to be reaped, and no write to it
    // was lost (those ranges live in memory only, and must keep failing reads). data_mu comes
    // before mu_ in the lock order: only tried, and nobody else can hold it anyway.
    std::shared_lock<std::shared_mutex> content(node.data_mu, std::try_to_lock);
    bool idle = ino != meta::kRootIno && it->second.use_count() == 1 && node.opens == 0 && !node.writing_noted &&
                content.owns_lock() && node.lost.empty() && node.saved_and_linked();
    if (content.owns_lock()) content.unlock();  // before the node may go
    if (!idle) {
      order_.push_back(ino);
      continue;
    }
    if (node.lookups > 0) demoted_[ino] = Demoted{node.lookups, ++demotions_};
    erase_locked(it);
  }
  if (order_.size() > 2 * map_.size() + 1024) {  // mostly inodes gone since: start again from the table
    order_.clear();
    for (const auto& [ino, node] : map_) order_.push_back(ino);
  }
}

std::shared_ptr<Inode> InodeTable::forget(uint64_t ino, uint64_t n) {
  std::lock_guard<std::mutex> g(mu_);
  auto bug = [&](uint64_t has) {
    std::fprintf(stderr, "cmkfs: BUG: forget of %llu references on inode %llu that has %llu\n",
                 static_cast<unsigned long long>(n), static_cast<unsigned long long>(ino),
                 static_cast<unsigned long long>(has));
    std::abort();
  };
  if (auto it = map_.find(ino); it != map_.end()) {
    Inode& node = *it->second;
    if (node.lookups < n) bug(node.lookups);
    node.lookups -= n;
    return node.lookups == 0 && node.opens == 0 ? it->second : nullptr;
  }
  auto d = demoted_.find(ino);
  if (d == demoted_.end()) return nullptr;
  if (d->second.lookups < n) bug(d->second.lookups);
  d->second.lookups -= n;
  if (d->second.lookups == 0) demoted_.erase(d);  // clean and on disk: nothing else to do
  return nullptr;
}

void InodeTable::add_lookups(Inode& node, uint64_t n) {
  std::lock_guard<std::mutex> g(mu_);
  node.lookups += n;
}

void InodeTable::opened(Inode& node) {
  std::lock_guard<std::mutex> g(mu_);
  ++node.opens;
}

bool InodeTable::is_open(Inode& node) {
  std::lock_guard<std::mutex> g(mu_);
  return node.opens > 0;
}

bool InodeTable::closed(Inode& node) {
  std::lock_guard<std::mutex> g(mu_);
  --node.opens;
  return node.lookups == 0 && node.opens == 0;
}

void InodeTable::erase_if_unused(uint64_t ino) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(ino);
  if (it != map_.end() && it->second->lookups == 0 && it->second->opens == 0 && !it->second->dirty() &&
      !it->second->writing_noted) {
    erase_locked(it);
  }
}

void InodeTable::erase_locked(std::unordered_map<uint64_t, std::shared_ptr<Inode>>::iterator it) {
  // A load that began before this node was loaded (and perhaps changed since) must not put its
  // older record in its place.
  changed_while_loading_locked(it->first);
  map_.erase(it);
}

std::vector<std::shared_ptr<Inode>> InodeTable::all() {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<std::shared_ptr<Inode>> v;
  v.reserve(map_.size());
  for (auto& [ino, node] : map_) v.push_back(node);
  return v;
}

std::vector<uint64_t> InodeTable::referenced() {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<uint64_t> v;
  v.reserve(map_.size() + demoted_.size());
  for (const auto& [ino, node] : map_) v.push_back(ino);
  for (const auto& [ino, d] : demoted_) v.push_back(ino);
  return v;
}

size_t InodeTable::size() {
  std::lock_guard<std::mutex> g(mu_);
  return map_.size();
}

size_t InodeTable::demoted() {
  std::lock_guard<std::mutex> g(mu_);
  return demoted_.size();
}

}  // namespace cmkfs::fs
