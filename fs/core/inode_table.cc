#include "fs/core/inode_table.h"

#include <cstdio>
#include <cstdlib>

namespace cmkfs::fs {

std::shared_ptr<Inode> InodeTable::find(uint64_t ino) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = map_.find(ino);
  return it == map_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<Inode>> InodeTable::get(uint64_t ino, const Loader& load, uint64_t lookups) {
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = map_.find(ino);
    if (it != map_.end()) {
      it->second->lookups += lookups;
      return it->second;
    }
  }
  auto rec = load();
  if (!rec.ok()) {
    if (rec.status().code() == ENOENT) return Status::Corruption("inode " + std::to_string(ino) + " is missing");
    return rec.status();
  }
  std::lock_guard<std::mutex> g(mu_);
  auto [it, inserted] = map_.try_emplace(ino, nullptr);
  if (inserted) it->second = std::make_shared<Inode>(std::move(*rec));  // else: loaded meanwhile
  it->second->lookups += lookups;
  return it->second;
}

std::shared_ptr<Inode> InodeTable::insert(meta::InodeRecord rec, uint64_t lookups) {
  auto node = std::make_shared<Inode>(std::move(rec));
  node->lookups = lookups;
  node->change_seq = 1;  // a new inode is unsaved until its creating transaction commits
  std::lock_guard<std::mutex> g(mu_);
  map_[node->rec.ino] = node;
  return node;
}

bool InodeTable::forget(Inode& node, uint64_t n) {
  std::lock_guard<std::mutex> g(mu_);
  if (node.lookups < n) {
    std::fprintf(stderr, "cmkfs: BUG: forget of %llu references on inode %llu that has %llu\n",
                 static_cast<unsigned long long>(n), static_cast<unsigned long long>(node.rec.ino),
                 static_cast<unsigned long long>(node.lookups));
    std::abort();
  }
  node.lookups -= n;
  return node.lookups == 0 && node.opens == 0;
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
    map_.erase(it);
  }
}

std::vector<std::shared_ptr<Inode>> InodeTable::all() {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<std::shared_ptr<Inode>> v;
  v.reserve(map_.size());
  for (auto& [ino, node] : map_) v.push_back(node);
  return v;
}

size_t InodeTable::size() {
  std::lock_guard<std::mutex> g(mu_);
  return map_.size();
}

}  // namespace cmkfs::fs
