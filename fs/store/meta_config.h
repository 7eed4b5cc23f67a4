// Where a store's metadata is, and how this host reaches it: LMDB in the store directory (the
// default), or the store's schema in a PostgreSQL database, which several hosts can share.
// Part of fs/store (include fs/store/store.h).
//
// Trust split, as for objects in a cluster (object_store.h): the store directory says only which
// store it is (STORE/meta/engine.json, unauthenticated: it just finds the binding); the host's
// binding says which schema, and names a file holding the connection string (server, database,
// role, password). No connection detail or credential is ever in the store, so a storage
// attacker cannot send this host's database password to a server of their own.
#pragma once

#include <string>
#include <string_view>

#include "crypto/base/id128.h"
#include "crypto/base/status.h"

namespace cmkfs::fs {

struct MetaConfig {
  std::string engine = "lmdb";  // "lmdb" or "postgres"
  std::string schema;           // postgres: the store's schema, cmkfs_<store id hex> by default
  std::string conninfo_file;    // postgres, host only: a file holding libpq's connection string

  bool lmdb() const { return engine == "lmdb"; }
  std::string describe() const;  // "lmdb" or "postgres (schema S)"
  std::string host_json() const;
  static Result<MetaConfig> from_json(std::string_view json);  // EIO when malformed
  static std::string default_schema(const Id128& store_id);
};

// The connection string in `path`: a regular file the caller owns that nobody else may read (it
// holds a password), first line only, at most 4 KiB. EACCES/ENOENT say what to fix.
Result<std::string> read_conninfo(const std::string& path);

// STORE/meta/engine.json of a store whose metadata is not in STORE/meta: which store it is.
std::string engine_marker_json(const MetaConfig& meta, const Id128& store_id);
// The store id in such a marker; EIO when malformed (at most 4 KiB are read).
Result<Id128> parse_engine_marker(std::string_view json);

}  // namespace cmkfs::fs
