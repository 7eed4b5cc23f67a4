// Internal to meta/: what a metadata engine gives Txn and MetaStore. An engine keeps ordered
// tables of byte strings in transactions; it never sees a plaintext record (Txn seals them before
// they reach it), so LMDB and PostgreSQL hold the same sealed tables.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "crypto/base/status.h"
#include "meta/meta.h"

namespace cmkfs::meta {

enum class Table : uint8_t { kSuper, kKeys, kInodes, kDirents, kOrphans, kRecovery };
inline constexpr int kTableCount = 6;
std::string_view table_name(Table t);  // format.h's names

// How put() treats a key already there (or not).
enum class Put : uint8_t {
  kAlways,   // writes the record
  kCreate,   // EEXIST when the key is there
  kReplace,  // writes only where the key is: a record deleted meanwhile stays deleted, no error
};

// One transaction; aborts in its destructor unless committed.
//
// An engine may send writes without waiting for their replies (PostgreSQL does): then put()'s
// EEXIST, del()'s ENOENT or a server's error comes from the transaction's next read or from its
// commit, and fails the whole transaction (nothing of it lands).
class EngineTxn {
 public:
  virtual ~EngineTxn() = default;
  virtual Result<std::string> get(Table t, std::string_view key) = 0;  // ENOENT
  virtual Status put(Table t, std::string_view key, std::string_view value, Put how = Put::kAlways) = 0;
  // ENOENT when the key is not there, unless missing_ok.
  virtual Status del(Table t, std::string_view key, bool missing_ok = false) = 0;
  // Calls fn(key, value) for each record with key >= from, in byte order, until it returns false
  // or an error (which scan returns).
  using Visit = std::function<Result<bool>(std::string_view key, std::string_view value)>;
  virtual Status scan(Table t, std::string_view from, const Visit& fn) = 0;
  virtual Result<std::string> last_key(Table t) = 0;  // ENOENT when the table is empty
  // Sends `payload` to every listener of the store once this transaction commits (nothing if it
  // aborts). Engines without listeners (LMDB) drop it.
  virtual Status notify(std::string_view payload) = 0;
  // `applied` (may be empty) runs once the commit succeeded and before this process's next write
  // transaction begins (Txn::commit says why).
  virtual Status commit(const std::function<void()>& applied) = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual Result<std::unique_ptr<EngineTxn>> begin(bool write) = 0;
  virtual Status sync() = 0;  // every committed transaction durable
  virtual void start_group_commit(std::chrono::microseconds interval) = 0;
  // Runs fn once what was committed so far, and the write transaction this thread has open, if
  // any, are durable; never if that transaction aborts or its batch fails.
  virtual void when_durable(std::function<void()> fn) = 0;
  virtual Status reserve_space(uint64_t bytes) = 0;
  virtual int data_fd() const = 0;  // -1: not a local file
  // Unmaps the pages of the database this process has touched (meta.h's MetaStore says why).
  virtual void release_mapped_pages() = 0;
  virtual Status copy_compacted(int fd) = 0;
  // Engines that compact their own storage (PostgreSQL: VACUUM FULL); ENOTSUP for LMDB, which
  // compacts into a copy (copy_compacted).
  virtual Status compact_in_place() = 0;
  // Makes this process the store's one writer for as long as the engine is open, across every
  // host sharing the metadata; EBUSY when another holds it. LMDB: nothing (the store directory's
  // lock does it).
  virtual Status lock_writer() = 0;
  // Whether other processes may listen to this store's changes (notify() reaches them).
  virtual bool shared() const = 0;
  // Calls fn with each payload another process notified, on a thread of the engine's, until the
  // engine closes; fn(MetaStore::kFeedMissed) when some may have been missed (the connection was
  // lost).
  virtual Status listen(std::function<void(std::string_view payload)> fn) = 0;
  virtual void stop_listening() = 0;  // fn is not called after this returns
  // Objects that processes sharing the store read (a follower's open file, which the writer may
  // delete meanwhile). hold() marks `object` (an object's name: hex) as open here for as long as
  // this process's session with the engine lives, counted; release_hold() undoes one hold;
  // held_elsewhere() says whether a live process holds it (asked by the writer, which holds
  // nothing itself). An engine of one process (LMDB) holds nothing elsewhere.
  virtual Status hold(std::string_view object) = 0;
  virtual Status release_hold(std::string_view object) = 0;
  virtual Result<bool> held_elsewhere(std::string_view object) = 0;
  // Marks what this process holds again if its session ended (a lost connection): called often.
  virtual Status renew_holds() = 0;
};

// LMDB in directory `dir` (meta_store.cc's notes); group commit reports to `stats`; `held`
// closed after the environment (MetaStore::open).
Result<std::unique_ptr<Engine>> open_lmdb_engine(const std::string& dir, bool create, bool read_only,
                                                 MetaStore::BatchStats* stats, std::vector<Fd> held);

// PostgreSQL (postgres_engine.cc's notes): the store's tables in `schema` ([a-z][a-z0-9_]*) of
// the database `conninfo` (libpq's connection string) names; create: makes them if missing.
Result<std::unique_ptr<Engine>> open_postgres_engine(const std::string& conninfo, const std::string& schema,
                                                     bool create, bool read_only);

}  // namespace cmkfs::meta
