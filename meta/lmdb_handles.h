// Internal to meta/: RAII owners of LMDB handles and the error mapping.
#pragma once

#include <lmdb.h>

#include <string>
#include <string_view>

#include "crypto/base/status.h"

namespace cmkfs::meta {

// Maps an LMDB return code to a Status: MDB_NOTFOUND -> ENOENT, MDB_MAP_FULL -> ENOSPC,
// positive codes are errno values; anything else is EIO.
inline Status lmdb_status(int rc, std::string_view what) {
  if (rc == MDB_SUCCESS) return Status::Ok();
  std::string msg = std::string(what) + ": " + mdb_strerror(rc);
  if (rc == MDB_NOTFOUND) return Status::NotFound(msg);
  if (rc == MDB_MAP_FULL || rc == ENOSPC) return Status::NoSpace(msg);
  if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID) return Status::Corruption(msg);
  if (rc > 0) return Status::IOError(rc, msg);
  return Status::IOError(EIO, msg);
}

// Every LMDB call on a transaction passes its result through here. LMDB refuses to commit a
// transaction after any error but MDB_NOTFOUND and MDB_KEYEXIST, and a failed nested transaction,
// committed, fails its whole batch: so when `txn` is the batch transaction this thread holds (its
// own write or a read borrowed inside it), the write is marked to abort instead. Returns rc.
int note(MDB_txn* txn, int rc);

inline MDB_val mdb_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view as_view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

class MdbCursor {
 public:
  MdbCursor() = default;
  explicit MdbCursor(MDB_cursor* c) : c_(c) {}
  ~MdbCursor() {
    if (c_ != nullptr) mdb_cursor_close(c_);
  }
  MdbCursor(const MdbCursor&) = delete;
  MdbCursor& operator=(const MdbCursor&) = delete;
  MDB_cursor* get() const { return c_; }

 private:
  MDB_cursor* c_ = nullptr;
};

}  // namespace cmkfs::meta
