// Whole-table walks for fsck: every inode and every directory entry, authenticated one by one.
#include <lmdb.h>

#include <vector>

#include "crypto/base/coding.h"
#include "meta/lmdb_handles.h"
#include "meta/meta.h"
#include "meta/records.h"

namespace cmkfs::meta {
namespace {

// Visits every (key, value) of table `dbi` whose key is `key_size` bytes long, until fn returns false.
template <class Fn>
Status walk(MDB_txn* txn, unsigned dbi, size_t key_size, const char* table, Fn&& fn) {
  MDB_cursor* c = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_cursor_open(txn, dbi, &c), "cursor"));
  MdbCursor cursor(c);
  MDB_val k, v;
  for (int rc = note(txn, mdb_cursor_get(c, &k, &v, MDB_FIRST)); rc != MDB_NOTFOUND;
       rc = note(txn, mdb_cursor_get(c, &k, &v, MDB_NEXT))) {
    if (rc != MDB_SUCCESS) return lmdb_status(rc, std::string(table) + " walk");
    if (k.mv_size != key_size) return Status::Corruption(std::string(table) + " table: malformed key");
    if (!fn(k, v)) break;
  }
  return Status::Ok();
}

uint64_t be64_at(const MDB_val& k, size_t at) { return get_be64(static_cast<const uint8_t*>(k.mv_data) + at); }

}  // namespace

Status Txn::for_each_inode(const std::function<bool(uint64_t, Result<InodeRecord>)>& fn) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  return walk(txn_, store_->inodes_, 8, "inode", [&](const MDB_val& k, const MDB_val& v) {
    uint64_t ino = be64_at(k, 0);
    auto plain = open_record(*keys_, kTableInodes, as_view(k), as_view(v));
    if (!plain.ok()) return fn(ino, Status::Corruption("inode " + std::to_string(ino) + ": " + plain.status().message()));
    return fn(ino, decode_inode(ino, *plain));
  });
}

Status Txn::for_each_entry(const std::function<bool(uint64_t, Result<DirEntry>)>& fn) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  return walk(txn_, store_->dirents_, 16, "directory", [&](const MDB_val& k, const MDB_val& v) {
    uint64_t parent = be64_at(k, 0), slot = be64_at(k, 8);
    auto plain = open_record(*keys_, kTableDirents, as_view(k), as_view(v));
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
    unsigned dbi = cursor->table == 0 ? store_->inodes_ : store_->dirents_;
    std::string_view table = cursor->table == 0 ? kTableInodes : kTableDirents;
    // Collected first, written after: a cursor must not walk a table while it is written.
    std::vector<std::pair<std::string, std::string>> stale;
    {
      MDB_cursor* c = nullptr;
      CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_cursor_open(txn_, dbi, &c), "cursor"));
      MdbCursor guard(c);
      MDB_val k = mdb_val(cursor->key), v;
      int rc = note(txn_, mdb_cursor_get(c, &k, &v, cursor->key.empty() ? MDB_FIRST : MDB_SET_RANGE));
      for (; rc == MDB_SUCCESS && seen < limit; rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_NEXT)), ++seen) {
        bool old = false;
        auto plain = open_record(*keys_, table, as_view(k), as_view(v), &old);
        if (!plain.ok()) return plain.status();
        if (old) stale.emplace_back(std::string(as_view(k)), std::move(*plain));
      }
      if (rc == MDB_SUCCESS) {
        cursor->key = std::string(as_view(k));
      } else if (rc == MDB_NOTFOUND) {
        ++cursor->table;
        cursor->key.clear();
      } else {
        return lmdb_status(rc, "reseal walk");
      }
    }
    for (auto& [key, plain] : stale) {
      auto sealed = seal_record(keys_->meta, table, key, plain);
      std::fill(plain.begin(), plain.end(), '\0');
      if (!sealed.ok()) return sealed.status();
      store_->seals_.fetch_add(1, std::memory_order_relaxed);
      CMKFS_RETURN_IF_ERROR(put_raw(dbi, key, *sealed));
      ++resealed;
    }
  }
  return resealed;
}

}  // namespace cmkfs::meta
