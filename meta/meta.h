// meta: a store's metadata in LMDB: superblock, wrapped data keys, inodes, directory entries and
// orphans (unlinked while open).
//
// Every inode and directory-entry value is sealed with AES-256-GCM under the meta key, with
// AAD = table name | record key, so records can be neither read nor swapped without the key; a
// record that does not authenticate reads as EIO. Directory entries are keyed by an HMAC of
// (parent, name), so the backing store shows no names and no equal names across directories.
// The superblock is plaintext (it says which key opens the store) and carries a MAC.
//
// Thread-safety: MetaStore may be shared by threads; a Txn belongs to one thread at a time.
// LMDB runs one write transaction at a time (others wait) beside any number of readers; with
// group commit, and always on PostgreSQL, a process runs one transaction at a time, and a read
// begun on a thread that holds a transaction reads through it (a write: EDEADLK).
// Durability: a commit survives a crash of the process; after a power loss the database is intact
// but may lack the last commit (MDB_NOMETASYNC). sync() makes every committed one durable. With
// group commit (start_group_commit) a commit reaches the disk with its batch, a few milliseconds
// later: a crash loses at most that batch, and never tears the database.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/base/fd.h"
#include "crypto/chunk_codec.h"
#include "crypto/keys.h"
#include "crypto/base/histogram.h"
#include "crypto/base/status.h"
#include "meta/format.h"


namespace cmkfs::meta {

struct Timespec {
  int64_t sec = 0;
  uint32_t nsec = 0;
  bool operator==(const Timespec&) const = default;
};

inline constexpr uint32_t kInodeMayBeSparse = 1;  // flag: an all-zero chunk is a hole, not tampering

struct InodeRecord {
  uint64_t ino = 0;
  uint32_t mode = 0;  // st_mode: type and permission bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint32_t flags = 0;
  uint64_t size = 0;
  uint64_t rdev = 0;
  uint64_t parent = 0;  // directories: the parent, for ".."
  Timespec atime, mtime, ctime;
  uint32_t dek_generation = 0;
  Id128 file_id{};    // names the object file of a regular file
  uint64_t chunk_writes = 0;  // chunks sealed under this file's key: the random-nonce budget
  std::string symlink;        // target of a symlink
  bool operator==(const InodeRecord&) const = default;
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint32_t type = 0;    // S_IFMT bits of the child
  uint64_t slot = 0;    // position in the directory; readdir resumes after it
};

struct Superblock {
  uint32_t format_version = kFormatVersion;
  Id128 store_id{};
  uint32_t chunk_size = 0;
  int64_t created = 0;           // unix seconds
  uint32_t dek_generation = 1;   // the generation new files use
  std::string kek = "{}";        // JSON object: the key provider's settings (opaque to meta)
  std::string objects;           // JSON object: where the objects are (opaque to meta); empty: STORE/objects
  std::string mac;               // hex HMAC-SHA256 of the fields above

  std::string to_json() const;
  // EIO for a damaged superblock, ENOTSUP for a format version this build does not read.
  static Result<Superblock> from_json(std::string_view json);
  void seal(crypto::Bytes mac_key);
  Status verify(crypto::Bytes mac_key) const;  // EIO when the MAC does not match
};

class MetaStore;
class Engine;
class EngineTxn;
enum class Put : uint8_t;

// A transaction; aborts in its destructor unless committed. Inode and entry calls need the store
// keys given to begin() (EACCES without them).
class Txn {
 public:
  Txn(Txn&& o) noexcept;
  Txn& operator=(Txn&&) = delete;
  Txn(const Txn&) = delete;
  ~Txn();

  Result<InodeRecord> get_inode(uint64_t ino);  // ENOENT, EIO
  Status put_inode(const InodeRecord& rec);
  // Rewrites a record still there; one deleted meanwhile (an unlink since the caller looked)
  // stays deleted, and that is no error.
  Status rewrite_inode(const InodeRecord& rec);
  Status delete_inode(uint64_t ino);
  Result<uint64_t> last_inode();  // highest inode number in use

  Result<DirEntry> lookup(uint64_t parent, std::string_view name);  // ENOENT
  Status add_entry(uint64_t parent, std::string_view name, uint64_t ino, uint32_t type);  // EEXIST
  Status remove_entry(uint64_t parent, std::string_view name);  // ENOENT
  // Calls fn for each entry of `parent` with slot > after, in slot order, until fn returns false.
  Status list_entries(uint64_t parent, uint64_t after, const std::function<bool(const DirEntry&)>& fn);
  Result<bool> has_entries(uint64_t parent);

  // Whole-table walks (fsck): every record in key order, each passed with its own result, so a
  // record that does not authenticate (EIO) is reported without ending the walk. fn returns false
  // to stop. A malformed key ends the walk with EIO.
  Status for_each_inode(const std::function<bool(uint64_t ino, Result<InodeRecord> rec)>& fn);
  Status for_each_entry(const std::function<bool(uint64_t parent, Result<DirEntry> entry)>& fn);

  Status add_orphan(uint64_t ino);
  Status remove_orphan(uint64_t ino);
  Result<std::vector<uint64_t>> orphans();

  // Crash recovery records (format.h, kTableRecovery).
  Status add_pending_removal(const Id128& file_id);
  Status remove_pending_removal(const Id128& file_id);
  Result<std::vector<Id128>> pending_removals();
  Status add_writing(uint64_t ino);
  Status remove_writing(uint64_t ino);
  Result<std::vector<uint64_t>> writing();
  // The notes above list only what authenticates. The others (forged, or sealed under a data key
  // since retired): how many, and with `remove` (a write transaction) deleted.
  Result<size_t> unauthentic_recovery_notes(bool remove);

  Result<Superblock> superblock();
  Status put_superblock(const Superblock& sb);  // REQUIRES: sb sealed by the caller
  Result<std::string> wrapped_dek(uint32_t generation);
  Status put_wrapped_dek(uint32_t generation, std::string_view blob);
  Status delete_wrapped_dek(uint32_t generation);
  Result<std::vector<uint32_t>> wrapped_generations();  // ascending

  // The store's name key, carried forward to data-key generation `generation`, sealed under that
  // generation's meta key (crypto/keys.h). ENOENT when the generation has none (the first).
  Status put_name_key(uint32_t generation, const crypto::GcmKey& meta_key, crypto::Bytes name_key);
  Result<crypto::SecretBytes> name_key(uint32_t generation, const crypto::GcmKey& meta_key);
  Status delete_name_key(uint32_t generation);

  // Reseals, under the current meta key, records still sealed under an older one (a data-key
  // rotation): at most `limit` records from `*cursor` on, which it advances. Returns how many were
  // resealed; *cursor is empty once every table has been walked.
  // The recovery table's notes too, so that none is left under a key the rotation's end forgets
  // (one that does not authenticate is left alone).
  struct ResealCursor {
    int table = 0;    // 0 inodes, 1 dirents, 2 recovery notes, 3 done
    std::string key;  // the next record's key in that table
    bool done() const { return table >= 3; }
  };
  Result<size_t> reseal_stale(ResealCursor* cursor, size_t limit);

  // How many records have been sealed under generation `generation`'s meta key, as last saved
  // (0 if never): the nonce budget of random 96-bit nonces is 2^32 seals per key.
  Result<uint64_t> seal_count(uint32_t generation);
  Status put_seal_count(uint32_t generation, uint64_t count);

  // Small plaintext markers beside the superblock, for the store's own bookkeeping (not
  // authenticated: only for what an attacker gains nothing by changing).
  Result<std::string> raw_marker(std::string_view name);  // ENOENT
  Status put_raw_marker(std::string_view name, std::string_view value);
  Status delete_raw_marker(std::string_view name);

  // `applied` runs once the commit succeeded, before another write transaction of this process
  // can begin: the caller's in-memory copy of what it wrote changes there, so that the next
  // writer never reads it older than the store (a flush would write the old copy back over this
  // commit). It must not begin a transaction: a write begun there is refused (EDEADLK), and so
  // is a read on PostgreSQL.
  Status commit(const std::function<void()>& applied = {});

 private:
  friend class MetaStore;
  Status publish_changes();
  Txn(MetaStore* store, std::unique_ptr<EngineTxn> txn, const crypto::StoreKeys* keys);
  Status need_keys() const;
  Status write_inode(const InodeRecord& rec, Put how);
  Status add_recovery_note(const std::string& key);
  template <class Fn>
  Status each_recovery(char tag, Fn&& fn);

  MetaStore* store_;
  std::unique_ptr<EngineTxn> txn_;
  const crypto::StoreKeys* keys_;
  // What this transaction changed, for the store's other processes (a shared engine only).
  std::vector<uint64_t> changed_inodes_;
  std::vector<std::pair<uint64_t, std::string>> changed_entries_;
};

// A PostgreSQL schema name cmkfs accepts: [a-z][a-z0-9_]*, at most 63 bytes.
bool valid_schema_name(std::string_view s);
// EINVAL when libpq cannot parse `conninfo`; the message never quotes it (it may hold a password).
Status check_conninfo(const std::string& conninfo);

class MetaStore {
 public:
  // Opens (create=true: creates) the LMDB environment in directory `dir`. `held`: descriptors
  // closed only after the environment (the caller's own of LMDB's files: closing one earlier
  // would drop the POSIX locks LMDB keeps on that file).
  static Result<std::unique_ptr<MetaStore>> open(const std::string& dir, bool create, bool read_only,
                                                 std::vector<Fd> held = {});
  // Opens (create=true: creates) the store's tables in PostgreSQL: schema `schema` of the
  // database libpq's connection string `conninfo` names (it may carry a password: it is never
  // logged nor put in an error).
  static Result<std::unique_ptr<MetaStore>> open_postgres(const std::string& conninfo, const std::string& schema,
                                                          bool create, bool read_only);
  ~MetaStore();

  // keys may be null for the superblock and wrapped-key tables. REQUIRES: keys outlive the Txn.
  Result<Txn> begin(bool write, const crypto::StoreKeys* keys = nullptr);
  Status sync();  // makes every committed transaction durable
  // From now on write transactions commit into batches written every `interval` or
  // kBatchMaxChanges transactions (see batcher.h). For a mounted store, after its recovery.
  void start_group_commit(std::chrono::microseconds interval);
  // Runs `fn` once every transaction committed so far is durable (at once without group commit).
  // For what must not happen before the metadata that allows it is on disk: removing a deleted
  // file's object. Never runs if that batch fails to reach the disk.
  void when_durable(std::function<void()> fn);
  // Keeps `bytes` of disk allocated past the last page LMDB uses, so that commits (above all the
  // deletes that free space) still succeed when the backing disk is full. Cheap when nothing grew.
  Status reserve_space(uint64_t bytes);
  // Group commit as /metrics shows it: the batches written (empty ones not counted).
  struct BatchStats {
    static constexpr std::array<double, 8> kSizeBounds = {1, 2, 4, 8, 16, 32, 64, 128};
    Histogram<kSizeBounds> changes;    // write transactions per batch
    Histogram<kLatencyBounds> seconds;  // time to write one, its sync included
    std::atomic<uint64_t> failed{0};
  };
  const BatchStats& batch_stats() const { return batch_stats_; }
  // Records sealed through this MetaStore since it was opened.
  uint64_t seals() const { return seals_.load(std::memory_order_relaxed); }
  bool read_only() const { return read_only_; }
  int data_fd() const;  // the database file LMDB opened, -1 if unknown
  // LMDB reads through a map of the whole database file, so every page a walk touched (a `find`
  // over a million files touches them all) stays in this process's resident set. This drops
  // them from the map; they stay in the kernel's page cache, so the next read maps them again
  // without I/O. Safe while other threads read. Nothing for PostgreSQL.
  void release_mapped_pages();
  // Writes a compacted copy of the database (live pages only: nothing deleted survives in it) to
  // `fd`. REQUIRES: nobody writes meanwhile (the store lock is held).
  Status copy_compacted(int fd);
  // Compacts engines that compact in place (PostgreSQL); ENOTSUP for LMDB (copy_compacted).
  Status compact_in_place();
  // Makes this process the store's one writer while the MetaStore is open, across every host that
  // shares its metadata (PostgreSQL: a session lock the server drops when this process's
  // connection ends); EBUSY when another process holds it. Nothing for LMDB.
  Status lock_writer();

  // The change feed of a store several processes share (PostgreSQL): every write transaction
  // tells the others which inodes and which directory entries it changed, sealed under the meta
  // key (the database never sees a name). listen() calls fn on a thread of its own with each
  // payload; open_changes() opens one. ENOTSUP for LMDB.
  struct Changes {
    bool everything = false;  // some changes may have been missed: drop every cached thing
    std::vector<uint64_t> inodes;
    std::vector<std::pair<uint64_t, std::string>> entries;  // (parent, name)
  };
  Status listen(std::function<void(std::string_view payload)> fn);
  // What listen() hands fn first (what the caller loaded before listening may be stale) and
  // whenever payloads may have been lost (a reconnection).
  static const std::string_view kFeedMissed;
  void stop_listening();  // fn is not called after this returns
  // Engine::hold and the rest (engine.h), for the object of `file_id`: a follower holds a file it
  // has open, and the writer keeps an object another process holds until it is let go.
  Status hold(const Id128& file_id);
  Status release_hold(const Id128& file_id);
  Result<bool> held_elsewhere(const Id128& file_id);
  Status renew_holds();
  // EIO when the payload does not authenticate under `keys` (nor came from this process).
  Result<Changes> open_changes(const crypto::StoreKeys& keys, std::string_view payload) const;
  bool shared() const;

 private:
  friend class Txn;
  MetaStore() = default;
  std::atomic<uint64_t> seals_{0};
  BatchStats batch_stats_;
  bool read_only_ = false;
  std::string origin_;  // random: names this process's payloads in the change feed
  // Last, so destroyed first: its threads write the last batch and run what waited on it, which
  // count into batch_stats_ and may begin transactions of this store.
  std::unique_ptr<Engine> engine_;
};

}  // namespace cmkfs::meta
