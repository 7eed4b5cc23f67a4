// Internal to meta/: group commit. Write transactions run as nested transactions of one LMDB
// write transaction (the batch), which a committer thread writes to disk once it is `interval`
// old or holds `max_ops` transactions, or at once for sync(). A create or an unlink then costs
// page copies in memory instead of page writes and an fdatasync of its own.
//
// LMDB ties the batch's writer lock to the thread that began it, so the committer thread begins
// and commits every batch; a writer that finds none open asks it for one. Outside a batch nothing
// holds the writer lock, so other processes (cmkfs encryption rotate-key) can write in between.
//
// Transactions run one at a time while a batch is open (`mu` is held for a transaction's life):
// a reader must see what the batch holds. Without an open batch, readers use their own snapshot.
//
// What waits for a batch to be on disk (removing a deleted file's object) runs on a reaper thread,
// so that a large removal does not hold up the next batch.
#pragma once

#include <lmdb.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/base/status.h"
#include "meta/meta.h"

namespace cmkfs::meta {

class Batcher {
 public:
  // `reserve` keeps disk allocated for the next batches; while it fails (a full disk), each write
  // transaction is committed alone and waits for it, so a failed write fails only itself.
  // `stats` (outliving the Batcher) gets each batch written.
  Batcher(MDB_env* env, std::chrono::microseconds interval, size_t max_ops, std::function<Status()> reserve,
          MetaStore::BatchStats* stats);
  ~Batcher() { stop(); }
  // Commits what is pending and runs what waited on it; later writers get ESHUTDOWN. Called
  // while the engine still points at this Batcher: what waited may begin a transaction.
  void stop();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  std::mutex mu;

  // REQUIRES: `lock` holds mu. A nested transaction of the open batch (opened if need be).
  Result<MDB_txn*> begin_write(std::unique_lock<std::mutex>& lock);
  // REQUIRES: `lock` holds mu. The open batch to read from, or null: read a snapshot instead.
  MDB_txn* open_batch() const { return parent_; }
  // REQUIRES: `lock` holds mu, `child` came from begin_write. Commits it into the batch; in
  // per-transaction mode also writes the batch (waiting on `lock`) and returns how that went.
  // `applied` (may be empty) runs if it committed, before the next writer begins.
  Status commit(MDB_txn* child, std::unique_lock<std::mutex>& lock, const std::function<void()>& applied);
  // Writes the open batch now and waits for it and for what waited on it (the space that freed);
  // then whatever was committed is on disk (data pages).
  Status flush();
  // Runs `fn` once everything committed so far is on disk: at once if no batch is open, else
  // after the batch is written (never, if writing it or an earlier batch failed).
  void when_durable(std::function<void()> fn);
  // REQUIRES: mu held by the caller's open transaction (so a batch is open).
  void defer_locked(std::function<void()> fn) { on_durable_.push_back(std::move(fn)); }

 private:
  void run();
  void commit_batch();  // REQUIRES: mu held
  void reap();

  MDB_env* env_;
  const std::chrono::microseconds interval_;
  const size_t max_ops_;
  std::function<Status()> reserve_;
  MetaStore::BatchStats* stats_;

  // Guarded by mu.
  MDB_txn* parent_ = nullptr;
  size_t ops_ = 0;           // nested transactions in the open batch
  size_t acknowledged_ = 0;  // of those, committed without waiting for the disk
  bool one_at_a_time_ = false;
  bool alone_ = false;  // a per-transaction commit is waiting for its write (no writer begins)
  bool writing_ = false;  // a batch is being written
  bool open_wanted_ = false, flush_wanted_ = false, stopping_ = false;
  bool committer_done_ = false;  // no batch opens any more (stopping)
  Status open_error_, last_batch_;
  // Not OK once a batch holding acknowledged transactions failed to reach the disk: their
  // changes are lost, and every later write transaction fails with it (stop, fsck).
  Status failed_;
  uint64_t batches_written_ = 0;
  uint64_t batches_reaped_ = 0;  // written batches whose callbacks have run
  std::vector<std::function<void()>> on_durable_;                  // of the open batch
  std::deque<std::vector<std::function<void()>>> written_batches_;  // callbacks, one entry per batch written
  bool reaper_stopping_ = false;
  std::condition_variable committer_cv_;  // wakes the committer
  std::condition_variable reaper_cv_;     // wakes the reaper
  std::condition_variable state_cv_;      // a batch opened, was written or was reaped

  // Last: they start once the rest is ready.
  std::thread reaper_;
  std::thread committer_;
};

}  // namespace cmkfs::meta
