// The inodes the kernel holds references to (lookup counts) or that are open. While the mount
// lives, an Inode's record is the authoritative copy; it is written to LMDB by the filesystem
// (InodeWriter) on namespace changes, flush, fsync and release.
//
// Lock order: the keyring gate (Keyring::Access), then a follower's reload stripe
// (Filesystem::reload_mu_), then Inode::data_mu, then an LMDB write transaction, then
// InodeTable's mutex, then Inode::mu, then the engine's holds mutex. Nothing holding a later lock
// takes an earlier one.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "fs/core/lost_ranges.h"
#include "fs/store/store.h"
#include "meta/meta.h"

namespace cmkfs::fs {

struct Inode {
  explicit Inode(meta::InodeRecord r) : rec(std::move(r)) {}

  // Content: exclusive for write and resize, shared for read. Also guards `object`.
  std::shared_mutex data_mu;
  std::unique_ptr<ObjectFile> object;  // while open (regular files)
  LostRanges lost;                     // also guarded by data_mu
  // The store's recovery table names this file as written since its size was saved (a crash may
  // leave its object longer than that size). Set and cleared holding data_mu exclusively.
  std::atomic<bool> writing_noted{false};
  // A follower's: the record was reloaded and the kernel may still cache the old one (the
  // feed's invalidation comes after its reload). The next open drops what the kernel cached.
  std::atomic<bool> kernel_stale{false};
  // A follower's, guarded by data_mu: the object it holds for its open handles since a data-key
  // rotation moved the file to it (each handle holds the object it opened). Let go at last close.
  std::optional<Id128> moved_hold;
  // Handles open for writing, and read-only handles the kernel reads directly (Filesystem::open).
  // Guarded by data_mu.
  uint32_t writable_handles = 0, direct_readers = 0;

  // The record and its save state.
  std::mutex mu;
  meta::InodeRecord rec;
  uint64_t change_seq = 0;  // bumped by every change of rec
  uint64_t saved_seq = 0;   // the change_seq LMDB holds
  // What of the file is on disk: its record (and object); after an unlink that deleted the
  // record while the file was open, only its object (removed at the last release); or nothing.
  enum class OnDisk { kRecord, kObjectOnly, kNothing };
  OnDisk on_disk = OnDisk::kRecord;

  // Guarded by InodeTable's mutex.
  uint64_t lookups = 0;
  uint32_t opens = 0;

  meta::InodeRecord snapshot(uint64_t* seq = nullptr) {
    std::lock_guard<std::mutex> g(mu);
    if (seq != nullptr) *seq = change_seq;
    return rec;
  }
  // The record if it has changes LMDB lacks (and the inode still has a record), else false.
  bool snapshot_if_dirty(meta::InodeRecord* rec, uint64_t* seq) {
    std::lock_guard<std::mutex> g(mu);
    if (!unsaved()) return false;
    *rec = this->rec;
    *seq = change_seq;
    return true;
  }
  template <class F>
  void update(F&& change) {
    std::lock_guard<std::mutex> g(mu);
    change(rec);
    ++change_seq;
  }
  bool dirty() {
    std::lock_guard<std::mutex> g(mu);
    return unsaved();
  }
  // LMDB has its record as it is, and a name links it (an unlinked inode waits to be reaped).
  bool saved_and_linked() {
    std::lock_guard<std::mutex> g(mu);
    return on_disk == OnDisk::kRecord && !unsaved() && rec.nlink > 0;
  }
  OnDisk disk_state() {
    std::lock_guard<std::mutex> g(mu);
    return on_disk;
  }
  void set_disk_state(OnDisk state) {
    std::lock_guard<std::mutex> g(mu);
    on_disk = state;
  }
  void mark_saved(uint64_t seq) {
    std::lock_guard<std::mutex> g(mu);
    if (seq > saved_seq) saved_seq = seq;
  }
  // Applies `change`, which a transaction committed on top of the snapshot taken at `seq`. The
  // record counts as saved only if nothing else changed it since that snapshot.
  template <class F>
  void apply_committed(F&& change, uint64_t seq) {
    std::lock_guard<std::mutex> g(mu);
    change(rec);
    ++change_seq;
    if (change_seq == seq + 1) saved_seq = change_seq;
  }

 private:
  bool unsaved() const { return on_disk == OnDisk::kRecord && change_seq != saved_seq; }  // REQUIRES: mu
};

// The kernel may hold references to millions of inodes (a `find` over a registry). Only the
// last `capacity` used stay whole in memory; past that, an inode that nothing holds, that is
// not open, whose record LMDB already has and that lost no write is demoted to its lookup count
// (tens of bytes), and its record is read again on its next use. The daemon's memory then
// follows the capacity, not the kernel's inode cache.
class InodeTable {
 public:
  static constexpr size_t kDefaultCapacity = 16384;
  explicit InodeTable(size_t capacity = kDefaultCapacity) : capacity_(capacity) {}

  std::shared_ptr<Inode> find(uint64_t ino);  // null if not whole in memory
  // The inode, with `lookups` more kernel references; when it is not in the table, `load` reads
  // its record. An inode leaves the table only after its changes were committed, so `load` must
  // read a snapshot taken after the miss: begin a new read transaction in it, or use the write
  // transaction the caller holds (no commit can land while it is open).
  using Loader = std::function<Result<meta::InodeRecord>()>;
  Result<std::shared_ptr<Inode>> get(uint64_t ino, const Loader& load, uint64_t lookups = 0);
  // REQUIRES: `write_txn` is a write transaction (see above).
  Result<std::shared_ptr<Inode>> get(uint64_t ino, meta::Txn& write_txn, uint64_t lookups = 0) {
    return get(ino, [&] { return write_txn.get_inode(ino); }, lookups);
  }
  // The store changed `ino` (a follower heard so): a load of it in flight may have read the
  // record before the change, and reads it again. (So does one in flight while a node of it
  // leaves the table: it may have been changed while it was in.)
  void changed_while_loading(uint64_t ino);
  // Adds a just-created inode with `lookups` references, open `opens` times.
  std::shared_ptr<Inode> insert(meta::InodeRecord rec, uint64_t lookups, uint32_t opens = 0);

  // Drops n kernel references to `ino`; the inode if it is now unused (no references, not open).
  // An inode that would go below zero is a kernel/bookkeeping bug: it aborts.
  std::shared_ptr<Inode> forget(uint64_t ino, uint64_t n);
  void add_lookups(Inode& node, uint64_t n);
  void opened(Inode& node);
  bool is_open(Inode& node);
  bool closed(Inode& node);  // true when now unused
  // Removes the inode if it is still unused and has no unsaved changes (those wait for a flush).
  void erase_if_unused(uint64_t ino);
  // Demotes idle inodes until no more than the capacity are whole, or none is idle (a request
  // demotes a few; this, from the daemon's periodic flush, those that were busy then).
  void shrink();
  std::vector<std::shared_ptr<Inode>> all();  // those whole in memory
  std::vector<uint64_t> referenced();         // every inode the kernel holds or that is open
  size_t size();                              // whole in memory
  size_t demoted();                           // held as a lookup count only

 private:
  struct Demoted {
    uint64_t lookups;
    uint64_t seq;  // which demotion: a load that began before it must not be kept
  };
  // REQUIRES: mu_. Demotes the oldest idle inodes while more than capacity_ are whole, looking
  // at no more than `budget` of them.
  void shrink_locked(size_t budget = 16);
  void changed_while_loading_locked(uint64_t ino);  // REQUIRES: mu_
  // REQUIRES: mu_. Removes a node from map_; a load of it in flight reads its record again.
  void erase_locked(std::unordered_map<uint64_t, std::shared_ptr<Inode>>::iterator it);

  const size_t capacity_;
  std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Inode>> map_;
  std::unordered_map<uint64_t, Demoted> demoted_;
  struct Loading {
    uint32_t loads;    // in flight
    uint64_t changes;  // changed_while_loading() calls since the first of them began
  };
  std::unordered_map<uint64_t, Loading> loading_;
  std::deque<uint64_t> order_;  // map_'s inodes, oldest first (and some already gone)
  uint64_t demotions_ = 0;
};

}  // namespace cmkfs::fs
