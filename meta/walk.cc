// Whole-table walks for fsck: every inode and every directory entry, authenticated one by one.
#include <vector>

#include "crypto/base/coding.h"
#include "meta/engine.h"
#include "meta/meta.h"
#include "meta/records.h"

namespace cmkfs::meta {
namespace {

// Visits every (key, value) of table `t` whose key is `key_size` bytes long, until fn returns false.
template <class Fn>
Status walk(EngineTxn& txn, Table t, size_t key_size, const char* table, Fn&& fn) {
  return txn.scan(t, "", [&](std::string_view k, std::string_view v) -> Result<bool> {
    if (k.size() != key_size) return Status::Corruption(std::string(table) + " table: malformed key");
    return fn(k, v);
  });
}

uint64_t be64_at(std::string_view k, size_t at) { return get_be64(reinterpret_cast<const uint8_t*>(k.data()) + at); }

}  // namespace

Status Txn::for_each_inode(const std::function<bool(uint64_t, Result<InodeRecord>)>& fn) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  return walk(*txn_, Table::kInodes, 8, "inode", [&](std::string_view k, std::string_view v) {
    uint64_t ino = be64_at(k, 0);
    auto plain = open_record(*keys_, kTableInodes, k, v);
    if (!plain.ok()) return fn(ino, Status::Corruption("inode " + std::to_string(ino) + ": " + plain.status().message()));
    return fn(ino, decode_inode(ino, *plain));
  });
}

Status Txn::for_each_entry(const std::function<bool(uint64_t, Result<DirEntry>)>& fn) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  return walk(*txn_, Table::kDirents, 16, "directory", [&](std::string_view k, std::string_view v) {
    uint64_t parent = be64_at(k, 0), slot = be64_at(k, 8);
    auto plain = open_record(*keys_, kTableDirents, k, v);
    if (!plain.ok()) {
      return fn(parent, Status::Corruption("entry " + std::to_string(slot) + " of directory " + std::to_string(parent) +
                                           ": " + plain.status().message()));
    }
    return fn(parent, decode_entry(slot, *plain));
  });
}

Result<size_t> Txn::reseal_stale(ResealCursor* cursor, size_t limit) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  size_t resealed = 0, seen = 0;
  while (!cursor->done() && seen < limit) {
    Table t = cursor->table == 0 ? Table::kInodes : cursor->table == 1 ? Table::kDirents : Table::kRecovery;
    std::string_view table = table_name(t);
    // Collected first, written after: a table is not written while it is walked.
    std::vector<std::pair<std::string, std::string>> stale;
    bool stopped = false;
    CMKFS_RETURN_IF_ERROR(txn_->scan(t, cursor->key, [&](std::string_view k, std::string_view v) -> Result<bool> {
      if (seen == limit) {
        cursor->key = std::string(k);
        stopped = true;
        return false;
      }
      ++seen;
      bool old = false;
      auto plain = open_record(*keys_, table, k, v, &old);
      if (!plain.ok() && t == Table::kRecovery) return true;  // never acted on, nor resealed
      if (!plain.ok()) return plain.status();
      if (old) stale.emplace_back(std::string(k), std::move(*plain));
      return true;
    }));
    if (!stopped) {
      ++cursor->table;
      cursor->key.clear();
    }
    for (auto& [key, plain] : stale) {
      auto sealed = seal_record(keys_->meta, table, key, plain);
      std::fill(plain.begin(), plain.end(), '\0');
      if (!sealed.ok()) return sealed.status();
      store_->seals_.fetch_add(1, std::memory_order_relaxed);
      CMKFS_RETURN_IF_ERROR(txn_->put(t, key, *sealed));
      ++resealed;
    }
  }
  return resealed;
}

}  // namespace cmkfs::meta
