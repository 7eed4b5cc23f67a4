// Directory entries: (parent, slot) -> sealed (name, child, type). See entry_home_slot().
#include <bitset>

#include "crypto/base/coding.h"
#include "meta/engine.h"
#include "meta/meta.h"
#include "meta/records.h"

namespace cmkfs::meta {
namespace {

uint64_t slot_of(std::string_view k) { return get_be64(reinterpret_cast<const uint8_t*>(k.data()) + 8); }
uint64_t parent_of(std::string_view k) { return get_be64(reinterpret_cast<const uint8_t*>(k.data())); }

// Visits the entries of `parent` with slot >= from, in order, until fn returns false.
template <class Fn>
Status scan(EngineTxn& txn, uint64_t parent, uint64_t from, Fn&& fn) {
  return txn.scan(Table::kDirents, entry_key(parent, from), [&](std::string_view k, std::string_view v) -> Result<bool> {
    if (k.size() != 16) return Status::Corruption("directory table: malformed key");
    if (parent_of(k) != parent) return false;
    return fn(k, v);
  });
}

}  // namespace

Result<DirEntry> Txn::lookup(uint64_t parent, std::string_view name) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  uint64_t home = entry_home_slot(keys_->name, parent, name);
  Result<DirEntry> found = Status::NotFound(std::string(name));
  Status s = scan(*txn_, parent, home, [&](std::string_view k, std::string_view v) -> Result<bool> {
    uint64_t slot = slot_of(k);
    if (slot >= home + kSlotWindow) return false;
    auto plain = open_record(*keys_, kTableDirents, k, v);
    if (!plain.ok()) return plain.status();
    auto e = decode_entry(slot, *plain);
    if (!e.ok()) return e.status();
    if (e->name == name) {
      found = std::move(*e);
      return false;
    }
    return true;
  });
  if (!s.ok()) return s;
  return found;
}

Status Txn::add_entry(uint64_t parent, std::string_view name, uint64_t ino, uint32_t type) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  changed_entries_.emplace_back(parent, name);
  uint64_t home = entry_home_slot(keys_->name, parent, name);
  std::bitset<kSlotWindow> used;
  bool exists = false;
  CMKFS_RETURN_IF_ERROR(scan(*txn_, parent, home, [&](std::string_view k, std::string_view v) -> Result<bool> {
    uint64_t slot = slot_of(k);
    if (slot >= home + kSlotWindow) return false;
    used.set(slot - home);
    auto plain = open_record(*keys_, kTableDirents, k, v);
    if (!plain.ok()) return plain.status();
    auto e = decode_entry(slot, *plain);
    if (!e.ok()) return e.status();
    exists = e->name == name;
    return !exists;
  }));
  if (exists) return Status::Exists(std::string(name));
  uint64_t i = 0;
  while (i < kSlotWindow && used.test(i)) ++i;
  if (i == kSlotWindow) return Status::NoSpace("directory entry slots exhausted (name hash collisions)");
  std::string key = entry_key(parent, home + i);
  auto sealed = seal_record(keys_->meta, kTableDirents, key, encode_entry({std::string(name), ino, type, 0}));
  store_->seals_.fetch_add(1, std::memory_order_relaxed);
  if (!sealed.ok()) return sealed.status();
  return txn_->put(Table::kDirents, key, *sealed, Put::kCreate);
}

Status Txn::remove_entry(uint64_t parent, std::string_view name) {
  changed_entries_.emplace_back(parent, name);
  auto e = lookup(parent, name);
  if (!e.ok()) return e.status();
  return txn_->del(Table::kDirents, entry_key(parent, e->slot));
}

Status Txn::list_entries(uint64_t parent, uint64_t after, const std::function<bool(const DirEntry&)>& fn) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  uint64_t from = after < kFirstSlot ? kFirstSlot : after + 1;
  return scan(*txn_, parent, from, [&](std::string_view k, std::string_view v) -> Result<bool> {
    auto plain = open_record(*keys_, kTableDirents, k, v);
    if (!plain.ok()) return plain.status();
    auto e = decode_entry(slot_of(k), *plain);
    if (!e.ok()) return e.status();
    return fn(*e);
  });
}

Result<bool> Txn::has_entries(uint64_t parent) {
  bool any = false;
  CMKFS_RETURN_IF_ERROR(scan(*txn_, parent, kFirstSlot, [&](std::string_view, std::string_view) -> Result<bool> {
    any = true;
    return false;
  }));
  return any;
}

}  // namespace cmkfs::meta
