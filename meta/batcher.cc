#include "meta/batcher.h"

#include <pthread.h>

#include "meta/lmdb_handles.h"

namespace cmkfs::meta {

Batcher::Batcher(MDB_env* env, std::chrono::microseconds interval, size_t max_ops, std::function<Status()> reserve,
                 MetaStore::BatchStats* stats)
    : env_(env),
      interval_(interval),
      max_ops_(max_ops),
      reserve_(std::move(reserve)),
      stats_(stats),
      reaper_([this] { reap(); }),
      committer_([this] { run(); }) {}

void Batcher::stop() {
  {
    std::lock_guard<std::mutex> g(mu);
    stopping_ = true;
  }
  committer_cv_.notify_all();
  if (committer_.joinable()) committer_.join();  // writes the open batch first
  {
    std::lock_guard<std::mutex> g(mu);
    reaper_stopping_ = true;
  }
  reaper_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();  // runs what waited on the last batches
}

Result<MDB_txn*> Batcher::begin_write(std::unique_lock<std::mutex>& lock) {
  for (;;) {
    if (!failed_.ok()) return failed_;
    if (alone_) {  // a transaction committing alone has yet to apply what it wrote in memory
      state_cv_.wait(lock, [this] { return !alone_; });
      continue;
    }
    if (parent_ != nullptr) break;
    if (committer_done_) return Status(ESHUTDOWN, "the metadata is closing");
    open_wanted_ = true;
    committer_cv_.notify_one();
    state_cv_.wait(lock, [this] { return parent_ != nullptr || !open_wanted_ || !failed_.ok() || committer_done_; });
    if (parent_ == nullptr && !open_error_.ok()) return open_error_;
  }
  MDB_txn* child = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_txn_begin(env_, parent_, 0, &child), "begin"));
  return child;
}

Status Batcher::commit(MDB_txn* child, std::unique_lock<std::mutex>& lock, const std::function<void()>& applied) {
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_txn_commit(child), "commit"));
  ++ops_;
  if (!one_at_a_time_) {
    ++acknowledged_;
    if (ops_ >= max_ops_) committer_cv_.notify_one();
    if (applied) applied();
    return Status::Ok();
  }
  // Per-transaction mode (the disk is full): this transaction's outcome is the batch's. Waiting
  // for it lets mu go; no other writer begins until `applied` ran.
  uint64_t batch = batches_written_;
  flush_wanted_ = true;
  alone_ = true;
  committer_cv_.notify_one();
  state_cv_.wait(lock, [&] { return batches_written_ != batch; });
  if (last_batch_.ok() && applied) applied();
  alone_ = false;
  state_cv_.notify_all();
  return last_batch_;
}

Status Batcher::flush() {
  std::unique_lock<std::mutex> lock(mu);
  // The batch open or being written now, else the last one written; and what waited on it, so
  // that on a full disk the caller finds the space its deletions freed.
  uint64_t batch = batches_written_ + (parent_ != nullptr || writing_ ? 1 : 0);
  if (parent_ != nullptr) {
    flush_wanted_ = true;
    committer_cv_.notify_one();
  }
  state_cv_.wait(lock, [&] { return batches_reaped_ >= batch; });
  return failed_;
}

void Batcher::when_durable(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> g(mu);
    // A batch was lost: the change `fn` waits on may have been in it (a record that still names
    // the object `fn` would remove). Never run: a leaked object, which fsck reports.
    if (!failed_.ok()) return;
    if (parent_ != nullptr) {
      on_durable_.push_back(std::move(fn));
      return;
    }
  }
  fn();
}

void Batcher::run() {
  pthread_setname_np(pthread_self(), "cmkfs-commit");  // for top -H and perf
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    committer_cv_.wait(lock, [this] { return stopping_ || open_wanted_; });
    if (!open_wanted_) {  // stopping, nothing pending
      committer_done_ = true;
      state_cv_.notify_all();
      return;
    }
    // LMDB's writer lock may be held by another process: waited for without holding mu, so that
    // readers carry on with their snapshots meanwhile.
    lock.unlock();
    MDB_txn* parent = nullptr;
    Status opened = lmdb_status(mdb_txn_begin(env_, nullptr, 0, &parent), "beginning a metadata batch");
    lock.lock();
    open_wanted_ = false;
    open_error_ = opened;
    if (opened.ok()) {
      parent_ = parent;
      ops_ = acknowledged_ = 0;
    }
    state_cv_.notify_all();
    if (!opened.ok()) continue;
    auto due = std::chrono::steady_clock::now() + interval_;
    committer_cv_.wait_until(lock, due, [&] { return stopping_ || flush_wanted_ || ops_ >= max_ops_; });
    commit_batch();  // holding mu: no transaction is running
  }
}

void Batcher::commit_batch() {
  MDB_txn* parent = parent_;
  parent_ = nullptr;
  writing_ = true;
  auto started = std::chrono::steady_clock::now();
  Status s = ops_ == 0 ? (mdb_txn_abort(parent), Status::Ok())
                       : lmdb_status(mdb_txn_commit(parent), "writing a metadata batch");
  if (ops_ > 0) {
    stats_->changes.observe(static_cast<double>(ops_));
    stats_->seconds.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (!s.ok()) stats_->failed.fetch_add(1, std::memory_order_relaxed);
  }
  std::vector<std::function<void()>> callbacks;
  if (s.ok()) {
    callbacks.swap(on_durable_);
  } else {
    on_durable_.clear();  // their changes did not reach the disk: the objects they free stay
    if (acknowledged_ > 0) {
      failed_ = Status::IOError(EIO, s.message() + " (" + std::to_string(acknowledged_) +
                                         " acknowledged metadata changes lost; unmount and run cmkfs fsck)");
    }
  }
  // Batches are kept small enough for the space reserved past LMDB's last page; when that space
  // cannot be renewed, writes go one at a time until it can.
  one_at_a_time_ = !reserve_().ok();
  // One entry per batch, even an empty one: the reaper counts batches. Removing a 1 GiB object
  // here instead stalled every create for 60 ms behind it.
  written_batches_.push_back(std::move(callbacks));
  reaper_cv_.notify_one();
  last_batch_ = s;
  ++batches_written_;
  flush_wanted_ = writing_ = false;
  state_cv_.notify_all();
}

void Batcher::reap() {
  pthread_setname_np(pthread_self(), "cmkfs-reap");
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    reaper_cv_.wait(lock, [this] { return reaper_stopping_ || !written_batches_.empty(); });
    if (written_batches_.empty()) return;  // stopping, nothing left
    std::vector<std::function<void()>> callbacks = std::move(written_batches_.front());
    written_batches_.pop_front();
    lock.unlock();
    for (auto& fn : callbacks) fn();
    lock.lock();
    ++batches_reaped_;
    state_cv_.notify_all();
  }
}

}  // namespace cmkfs::meta
