// Edits a raw LMDB value of a store, bypassing sealing: what an attacker with the backing
// directory can do. The store must not be open.
#pragma once

#include <gtest/gtest.h>
#include <lmdb.h>

#include <functional>
#include <string>

namespace cmkfs::testing {

// Runs fn on a write transaction of the store's table `table` and commits it.
inline void in_lmdb_table(const std::string& meta_dir, const std::string& table, unsigned dbi_flags,
                          const std::function<void(MDB_txn*, MDB_dbi)>& fn) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 8);
  mdb_env_set_mapsize(env, uint64_t{256} << 30);
  ASSERT_EQ(mdb_env_open(env, meta_dir.c_str(), 0, 0600), 0);
  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  ASSERT_EQ(mdb_dbi_open(txn, table.c_str(), dbi_flags, &dbi), 0);
  fn(txn, dbi);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

inline void poke_lmdb(const std::string& meta_dir, const std::string& table, const std::string& key,
                      const std::function<void(std::string&)>& edit) {
  in_lmdb_table(meta_dir, table, 0, [&](MDB_txn* txn, MDB_dbi dbi) {
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v;
    ASSERT_EQ(mdb_get(txn, dbi, &k, &v), 0) << "no such record in " << table;
    std::string value(static_cast<char*>(v.mv_data), v.mv_size);
    edit(value);
    MDB_val nv{value.size(), value.data()};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &nv, 0), 0);
  });
}

// Puts a raw record (new or not) into a store's table, bypassing sealing.
inline void put_lmdb(const std::string& meta_dir, const std::string& table, const std::string& key,
                     const std::string& value) {
  in_lmdb_table(meta_dir, table, MDB_CREATE, [&](MDB_txn* txn, MDB_dbi dbi) {
    MDB_val k{key.size(), const_cast<char*>(key.data())}, v{value.size(), const_cast<char*>(value.data())};
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  });
}

// A raw LMDB value of a store ("" when absent).
inline std::string read_lmdb(const std::string& meta_dir, const std::string& table, const std::string& key) {
  std::string out;
  poke_lmdb(meta_dir, table, key, [&](std::string& v) { out = v; });
  return out;
}

inline std::string be64(uint64_t v) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) k[i] = static_cast<char>(v & 0xff);
  return k;
}

}  // namespace cmkfs::testing
