// The embedded metadata engine: LMDB named databases in one file, with group commit (batcher.h).
#include <fcntl.h>
#include <lmdb.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "meta/batcher.h"
#include "meta/engine.h"
#include "meta/format.h"
#include "meta/lmdb_handles.h"

namespace cmkfs::meta {

namespace {

class LmdbEngine;

struct Mapping {
  void* addr = nullptr;
  size_t len = 0;
};

// Where this process maps the file `fd` from its start (the largest such map). LMDB's
// MDB_envinfo gives the map's address only for a fixed map (MDB_FIXEDMAP), so it is looked up in
// /proc/self/maps by the file's device and inode.
Mapping find_file_mapping(int fd) {
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) != 0) return {};
  FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return {};
  Mapping best;
  char* line = nullptr;
  size_t cap = 0;
  while (::getline(&line, &cap, maps) > 0) {
    unsigned long start = 0, end = 0, offset = 0, inode = 0;
    unsigned major = 0, minor = 0;
    if (std::sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &start, &end, &offset, &major, &minor, &inode) != 6) continue;
    if (inode == st.st_ino && makedev(major, minor) == st.st_dev && offset == 0 && end - start > best.len) {
      best = {reinterpret_cast<void*>(start), end - start};
    }
  }
  std::free(line);
  std::fclose(maps);
  return best;
}

// The engine and transaction whose batch lock this thread holds, so that a read inside a
// transaction (loading an inode while creating a name) runs on it instead of waiting for itself.
thread_local const LmdbEngine* held_engine = nullptr;
thread_local MDB_txn* held_txn = nullptr;
thread_local bool held_txn_failed = false;  // see note()

// kOwn: an LMDB transaction of its own. kBatchWrite: nested in the open batch; kBatchRead: reads
// the open batch; both hold the batch's lock. kBorrowed: a read inside one of those, on its txn.
enum class Kind { kOwn, kBatchWrite, kBatchRead, kBorrowed };

class LmdbTxn final : public EngineTxn {
 public:
  LmdbTxn(LmdbEngine* engine, MDB_txn* txn, Kind kind) : engine_(engine), txn_(txn), kind_(kind) {}
  ~LmdbTxn() override;
  Result<std::string> get(Table t, std::string_view key) override;
  Status put(Table t, std::string_view key, std::string_view value, Put how) override;
  Status del(Table t, std::string_view key, bool missing_ok) override;
  Status scan(Table t, std::string_view from, const Visit& fn) override;
  Result<std::string> last_key(Table t) override;
  Status notify(std::string_view) override { return Status::Ok(); }
  Status commit(const std::function<void()>& applied) override;

  std::unique_lock<std::mutex> batch_lock;
  std::unique_lock<std::mutex> own_writer;  // kOwn writes: the engine's own_writer_mu_ until committed

 private:
  void release_batch();
  void release_own_writer();
  Result<MDB_dbi> dbi(Table t) const;

  LmdbEngine* engine_;
  MDB_txn* txn_;
  Kind kind_;
};

class LmdbEngine final : public Engine {
 public:
  LmdbEngine(MetaStore::BatchStats* stats, std::vector<Fd> held) : stats_(stats), held_(std::move(held)) {}
  ~LmdbEngine() override {
    // Stopped before the pointer is cleared: what runs after the last batch may begin a
    // transaction, which must still find the batcher (and be refused by it).
    if (batcher_) batcher_->stop();
    batcher_.reset();
    if (env_ != nullptr) mdb_env_close(env_);
  }
  Status open(const std::string& dir, bool create, bool read_only);

  Result<std::unique_ptr<EngineTxn>> begin(bool write) override;
  Status sync() override;
  void start_group_commit(std::chrono::microseconds interval) override {
    batcher_ = std::make_unique<Batcher>(env_, interval, kBatchMaxChanges, [this] { return reserve_space(kMetaReserveBytes); },
                                         stats_);
  }
  void when_durable(std::function<void()> fn) override {
    if (!batcher_) return fn();
    if (held_engine == this) return batcher_->defer_locked(std::move(fn));
    batcher_->when_durable(std::move(fn));
  }
  Status reserve_space(uint64_t bytes) override;
  int data_fd() const override {
    int fd = -1;
    return mdb_env_get_fd(env_, &fd) == MDB_SUCCESS ? fd : -1;
  }
  void release_mapped_pages() override;
  Status copy_compacted(int fd) override {
    return lmdb_status(mdb_env_copyfd2(env_, fd, MDB_CP_COMPACT), "compacting the metadata");
  }
  Status compact_in_place() override { return Status(ENOTSUP, "LMDB compacts into a copy"); }
  Status lock_writer() override { return Status::Ok(); }
  bool shared() const override { return false; }
  Status listen(std::function<void(std::string_view)>) override {
    return Status(ENOTSUP, "an LMDB store has one process: nothing to listen to");
  }
  void stop_listening() override {}
  Status hold(std::string_view) override { return Status::Ok(); }
  Status release_hold(std::string_view) override { return Status::Ok(); }
  Result<bool> held_elsewhere(std::string_view) override { return false; }
  Status renew_holds() override { return Status::Ok(); }

 private:
  friend class LmdbTxn;
  MetaStore::BatchStats* stats_;
  std::vector<Fd> held_;  // closed after the environment: a member, destroyed after ~LmdbEngine's body
  MDB_env* env_ = nullptr;
  std::unique_ptr<Batcher> batcher_;  // with group commit
  std::mutex own_writer_mu_;          // without: held by a write from its begin to its commit's end
  // The thread that took own_writer_mu_: a second write begun on it is refused, not a hang.
  std::atomic<std::thread::id> own_writer_thread_{};
  std::mutex reserve_mu_;
  uint64_t reserved_end_ = 0;  // guarded by reserve_mu_
  MDB_dbi dbis_[kTableCount] = {};
  bool has_recovery_ = false;  // a read-only open of a store from before the table
  Mapping map_;                // LMDB's map of the database file
};

void LmdbEngine::release_mapped_pages() {
  // The map is read-only (no MDB_WRITEMAP: writes go through the file), so dropping its pages
  // loses nothing; a reader on another thread faults its page back in from the page cache. Past
  // the file's end nothing is mapped, and the kernel skips the empty page tables.
  if (map_.addr != nullptr) ::madvise(map_.addr, map_.len, MADV_DONTNEED);
}

Status LmdbEngine::open(const std::string& dir, bool create, bool read_only) {
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_create(&env_), "mdb_env_create"));
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_set_maxdbs(env_, 8), "mdb_env_set_maxdbs"));
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_set_mapsize(env_, kLmdbMapSize), "mdb_env_set_mapsize"));
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_set_maxreaders(env_, 512), "mdb_env_set_maxreaders"));
  // NOTLS: read transactions are not tied to threads (FUSE workers come and go).
  // NOMETASYNC: a commit syncs its data pages but not the meta page, which the next commit or
  // sync() makes durable. Unlike NOSYNC this keeps LMDB's write ordering, so a power loss can
  // lose the last commit but never tear the database.
  unsigned flags = MDB_NOTLS | MDB_NOMETASYNC | MDB_NORDAHEAD | (read_only ? MDB_RDONLY : 0);
  if (!create) {
    struct stat st;
    if (::stat((dir + "/data.mdb").c_str(), &st) != 0) return Status::NotFound("no metadata database in " + dir);
  }
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_open(env_, dir.c_str(), flags, 0600), "opening " + dir));
  // A process that locks its memory (crypto::harden_process) must not pin the whole database in
  // RAM through LMDB's map, which holds sealed records only.
  map_ = find_file_mapping(data_fd());
  if (map_.addr != nullptr) ::munlock(map_.addr, map_.len);

  MDB_txn* txn = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_txn_begin(env_, nullptr, read_only ? MDB_RDONLY : 0, &txn), "begin"));
  for (int i = 0; i < kTableCount; ++i) {
    Table t = static_cast<Table>(i);
    std::string name(table_name(t));
    bool recovery = t == Table::kRecovery;
    unsigned dbi_flags = (create || (recovery && !read_only)) ? MDB_CREATE : 0;
    int rc = mdb_dbi_open(txn, name.c_str(), dbi_flags, &dbis_[i]);
    if (recovery && rc == MDB_NOTFOUND) continue;
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort(txn);
      if (rc == MDB_NOTFOUND) return Status::Corruption("metadata table '" + name + "' is missing");
      return lmdb_status(rc, "opening table " + name);
    }
    if (recovery) has_recovery_ = true;
  }
  return lmdb_status(mdb_txn_commit(txn), "commit");
}

Result<std::unique_ptr<EngineTxn>> LmdbEngine::begin(bool write) {
  if (batcher_) {
    if (held_engine == this) {
      if (write) return Status(EDEADLK, "a write transaction inside another transaction");
      return std::unique_ptr<EngineTxn>(new LmdbTxn(this, held_txn, Kind::kBorrowed));
    }
    std::unique_lock<std::mutex> lock(batcher_->mu);
    MDB_txn* txn = batcher_->open_batch();
    Kind kind = Kind::kBatchRead;
    if (write) {
      auto child = batcher_->begin_write(lock);
      if (!child.ok()) return child.status();
      txn = *child;
      kind = Kind::kBatchWrite;
    }
    if (txn != nullptr) {
      auto t = std::make_unique<LmdbTxn>(this, txn, kind);
      t->batch_lock = std::move(lock);
      held_engine = this;
      held_txn = txn;
      held_txn_failed = false;
      return std::unique_ptr<EngineTxn>(std::move(t));
    }
  }
  // LMDB serializes writers itself, but lets the next one in at its commit, before the caller
  // applied what it committed in memory (Txn::commit): held until then.
  std::unique_lock<std::mutex> own_writer;
  if (write) {
    if (own_writer_thread_.load() == std::this_thread::get_id()) {
      return Status(EDEADLK, "a write transaction inside another transaction");
    }
    own_writer = std::unique_lock<std::mutex>(own_writer_mu_);
  }
  MDB_txn* txn = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_txn_begin(env_, nullptr, write ? 0 : MDB_RDONLY, &txn), "begin"));
  auto t = std::make_unique<LmdbTxn>(this, txn, Kind::kOwn);
  if (write) own_writer_thread_ = std::this_thread::get_id();
  t->own_writer = std::move(own_writer);
  return std::unique_ptr<EngineTxn>(std::move(t));
}

Status LmdbEngine::sync() {
  // Inside a transaction the batch cannot be written (this thread holds it): say so, not hang.
  if (held_engine == this) return Status(EDEADLK, "sync inside a transaction");
  if (batcher_) CMKFS_RETURN_IF_ERROR(batcher_->flush());
  return lmdb_status(mdb_env_sync(env_, 1), "syncing metadata");
}

Status LmdbEngine::reserve_space(uint64_t bytes) {
  std::lock_guard<std::mutex> g(reserve_mu_);
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &st);
  uint64_t used = (static_cast<uint64_t>(info.me_last_pgno) + 1) * st.ms_psize;
  if (used + bytes / 2 <= reserved_end_) return Status::Ok();  // still more than half left
  int fd = -1;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_get_fd(env_, &fd), "metadata file"));
  if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(used + bytes)) != 0) {
    return Status::IOError(errno, std::string("reserving space for metadata: ") + std::strerror(errno));
  }
  reserved_end_ = used + bytes;
  return Status::Ok();
}

// ---- LmdbTxn ----

LmdbTxn::~LmdbTxn() {
  // An aborted nested transaction leaves its batch as it was.
  if (txn_ != nullptr && (kind_ == Kind::kOwn || kind_ == Kind::kBatchWrite)) mdb_txn_abort(txn_);
  release_own_writer();
  release_batch();
}

void LmdbTxn::release_own_writer() {
  if (!own_writer.owns_lock()) return;
  engine_->own_writer_thread_ = std::thread::id();
  own_writer.unlock();
}

void LmdbTxn::release_batch() {
  if (!batch_lock.owns_lock()) return;
  held_engine = nullptr;
  held_txn = nullptr;
  batch_lock.unlock();
}

Status LmdbTxn::commit(const std::function<void()>& applied) {
  MDB_txn* t = txn_;
  txn_ = nullptr;
  switch (kind_) {
    case Kind::kOwn: {  // without group commit (offline tools, --commit-interval 0)
      Status s = lmdb_status(mdb_txn_commit(t), "commit");
      if (s.ok() && applied) applied();
      release_own_writer();
      return s;
    }
    case Kind::kBatchWrite: {
      if (held_txn_failed) {
        mdb_txn_abort(t);  // leaves the batch as it was
        release_batch();
        return Status::IOError(EIO, "commit: the transaction failed earlier");
      }
      Status s = engine_->batcher_->commit(t, batch_lock, applied);
      release_batch();
      return s;
    }
    case Kind::kBatchRead:
      release_batch();
      break;
    case Kind::kBorrowed:
      break;  // the enclosing transaction commits
  }
  if (applied) applied();  // a read: nothing to order
  return Status::Ok();
}

Result<MDB_dbi> LmdbTxn::dbi(Table t) const {
  if (t == Table::kRecovery && !engine_->has_recovery_) return Status::NotFound("no recovery table");
  return engine_->dbis_[static_cast<int>(t)];
}

Result<std::string> LmdbTxn::get(Table t, std::string_view key) {
  auto d = dbi(t);
  if (!d.ok()) return d.status();
  MDB_val k = mdb_val(key), v;
  int rc = note(txn_, mdb_get(txn_, *d, &k, &v));
  if (rc != MDB_SUCCESS) return lmdb_status(rc, "get");
  return std::string(as_view(v));
}

Status LmdbTxn::put(Table t, std::string_view key, std::string_view value, Put how) {
  auto d = dbi(t);
  if (!d.ok()) return Status(EROFS, "a store from before the recovery table, opened read-only");
  MDB_val k = mdb_val(key), v = mdb_val(value);
  if (how == Put::kReplace) {
    MDB_val old;
    int rc = note(txn_, mdb_get(txn_, *d, &k, &old));
    if (rc == MDB_NOTFOUND) return Status::Ok();
    CMKFS_RETURN_IF_ERROR(lmdb_status(rc, "get"));
  }
  int rc = note(txn_, mdb_put(txn_, *d, &k, &v, how == Put::kCreate ? MDB_NOOVERWRITE : 0));
  if (rc == MDB_KEYEXIST) return Status::Exists("record exists");
  return lmdb_status(rc, "put");
}

Status LmdbTxn::del(Table t, std::string_view key, bool missing_ok) {
  auto d = dbi(t);
  if (!d.ok()) return d.status();
  MDB_val k = mdb_val(key);
  int rc = note(txn_, mdb_del(txn_, *d, &k, nullptr));
  if (rc == MDB_NOTFOUND && missing_ok) return Status::Ok();
  return lmdb_status(rc, "delete");
}

Status LmdbTxn::scan(Table t, std::string_view from, const Visit& fn) {
  auto d = dbi(t);
  if (!d.ok()) return Status::Ok();  // no recovery table: nothing to visit
  MDB_cursor* c = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_cursor_open(txn_, *d, &c), "cursor"));
  MdbCursor cursor(c);
  MDB_val k = mdb_val(from), v;
  for (int rc = note(txn_, mdb_cursor_get(c, &k, &v, from.empty() ? MDB_FIRST : MDB_SET_RANGE)); rc != MDB_NOTFOUND;
       rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_NEXT))) {
    if (rc != MDB_SUCCESS) return lmdb_status(rc, std::string(table_name(t)) + " scan");
    Result<bool> more = fn(as_view(k), as_view(v));
    if (!more.ok()) return more.status();
    if (!*more) break;
  }
  return Status::Ok();
}

Result<std::string> LmdbTxn::last_key(Table t) {
  auto d = dbi(t);
  if (!d.ok()) return d.status();
  MDB_cursor* c = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_cursor_open(txn_, *d, &c), "cursor"));
  MdbCursor cursor(c);
  MDB_val k, v;
  int rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_LAST));
  if (rc != MDB_SUCCESS) return lmdb_status(rc, "last key");
  return std::string(as_view(k));
}

}  // namespace

int note(MDB_txn* txn, int rc) {
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND && rc != MDB_KEYEXIST && txn == held_txn) held_txn_failed = true;
  return rc;
}

Result<std::unique_ptr<Engine>> open_lmdb_engine(const std::string& dir, bool create, bool read_only,
                                                 MetaStore::BatchStats* stats, std::vector<Fd> held) {
  auto engine = std::make_unique<LmdbEngine>(stats, std::move(held));
  CMKFS_RETURN_IF_ERROR(engine->open(dir, create, read_only));
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace cmkfs::meta
