#include <fcntl.h>
#include <lmdb.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstring>

#include "crypto/base/coding.h"
#include "meta/batcher.h"
#include "meta/lmdb_handles.h"
#include "meta/meta.h"
#include "meta/records.h"

namespace cmkfs::meta {

// ---- MetaStore ----

Result<std::unique_ptr<MetaStore>> MetaStore::open(const std::string& dir, bool create, bool read_only) {
  std::unique_ptr<MetaStore> store(new MetaStore());
  store->read_only_ = read_only;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_create(&store->env_), "mdb_env_create"));
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_set_maxdbs(store->env_, 8), "mdb_env_set_maxdbs"));
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_set_mapsize(store->env_, kLmdbMapSize), "mdb_env_set_mapsize"));
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_set_maxreaders(store->env_, 512), "mdb_env_set_maxreaders"));
  // NOTLS: read transactions are not tied to threads (FUSE workers come and go).
  // NOMETASYNC: a commit syncs its data pages but not the meta page, which the next commit or
  // sync() makes durable. Unlike NOSYNC this keeps LMDB's write ordering, so a power loss can
  // lose the last commit but never tear the database.
  unsigned flags = MDB_NOTLS | MDB_NOMETASYNC | MDB_NORDAHEAD | (read_only ? MDB_RDONLY : 0);
  if (!create) {
    struct stat st;
    if (::stat((dir + "/data.mdb").c_str(), &st) != 0) return Status::NotFound("no metadata database in " + dir);
  }
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_env_open(store->env_, dir.c_str(), flags, 0600), "opening " + dir));
  // A process that locks its memory (crypto::harden_process) must not pin the whole database in
  // RAM through LMDB's map, which holds sealed records only.
  MDB_envinfo info;
  if (mdb_env_info(store->env_, &info) == MDB_SUCCESS) ::munlock(info.me_mapaddr, info.me_mapsize);

  MDB_txn* txn = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_txn_begin(store->env_, nullptr, read_only ? MDB_RDONLY : 0, &txn), "begin"));
  unsigned dbi_flags = create ? MDB_CREATE : 0;
  struct {
    std::string_view name;
    unsigned* dbi;
  } tables[] = {{kTableSuper, &store->super_},
                {kTableKeys, &store->keys_},
                {kTableInodes, &store->inodes_},
                {kTableDirents, &store->dirents_},
                {kTableOrphans, &store->orphans_}};
  for (auto& t : tables) {
    int rc = mdb_dbi_open(txn, std::string(t.name).c_str(), dbi_flags, t.dbi);
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort(txn);
      if (rc == MDB_NOTFOUND) return Status::Corruption("metadata table '" + std::string(t.name) + "' is missing");
      return lmdb_status(rc, "opening table " + std::string(t.name));
    }
  }
  int rc = mdb_dbi_open(txn, std::string(kTableRecovery).c_str(), read_only ? 0 : MDB_CREATE, &store->recovery_);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    return lmdb_status(rc, "opening table recovery");
  }
  store->has_recovery_ = rc == MDB_SUCCESS;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_txn_commit(txn), "commit"));
  return store;
}

MetaStore::~MetaStore() {
  batcher_.reset();  // writes the last batch
  if (env_ != nullptr) mdb_env_close(env_);
}

namespace {
// The store and transaction whose batch lock this thread holds, so that a read inside a
// transaction (loading an inode while creating a name) runs on it instead of waiting for itself.
thread_local const MetaStore* held_store = nullptr;
thread_local MDB_txn* held_txn = nullptr;
thread_local bool held_txn_failed = false;  // see note()
}  // namespace

int note(MDB_txn* txn, int rc) {
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND && rc != MDB_KEYEXIST && txn == held_txn) held_txn_failed = true;
  return rc;
}

Result<Txn> MetaStore::begin(bool write, const crypto::StoreKeys* keys) {
  if (batcher_) {
    if (held_store == this) {
      if (write) return Status(EDEADLK, "a write transaction inside another transaction");
      return Txn(this, held_txn, keys, Txn::Kind::kBorrowed);
    }
    std::unique_lock<std::mutex> lock(batcher_->mu);
    MDB_txn* txn = batcher_->open_batch();
    Txn::Kind kind = Txn::Kind::kBatchRead;
    if (write) {
      auto child = batcher_->begin_write(lock);
      if (!child.ok()) return child.status();
      txn = *child;
      kind = Txn::Kind::kBatchWrite;
    }
    if (txn != nullptr) {
      Txn t(this, txn, keys, kind);
      t.batch_lock_ = std::move(lock);
      held_store = this;
      held_txn = txn;
      held_txn_failed = false;
      return t;
    }
  }
  MDB_txn* txn = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_txn_begin(env_, nullptr, write ? 0 : MDB_RDONLY, &txn), "begin"));
  return Txn(this, txn, keys);
}

void MetaStore::start_group_commit(std::chrono::microseconds interval) {
  batcher_ = std::make_unique<Batcher>(env_, interval, kBatchMaxChanges, [this] { return reserve_space(kMetaReserveBytes); },
                                       &batch_stats_);
}

void MetaStore::when_durable(std::function<void()> fn) {
  if (!batcher_) return fn();
  if (held_store == this) return batcher_->defer_locked(std::move(fn));
  batcher_->when_durable(std::move(fn));
}

Status MetaStore::sync() {
  // Inside a transaction the batch cannot be written (this thread holds it): say so, not hang.
  if (held_store == this) return Status(EDEADLK, "sync inside a transaction");
  if (batcher_) CMKFS_RETURN_IF_ERROR(batcher_->flush());
  return lmdb_status(mdb_env_sync(env_, 1), "syncing metadata");
}

int MetaStore::data_fd() const {
  int fd = -1;
  return mdb_env_get_fd(env_, &fd) == MDB_SUCCESS ? fd : -1;
}

Status MetaStore::copy_compacted(int fd) {
  return lmdb_status(mdb_env_copyfd2(env_, fd, MDB_CP_COMPACT), "compacting the metadata");
}

Status MetaStore::reserve_space(uint64_t bytes) {
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

// ---- Txn: raw access ----

Txn::Txn(Txn&& o) noexcept
    : store_(o.store_),
      txn_(o.txn_),
      keys_(o.keys_),
      kind_(o.kind_),
      batch_lock_(std::move(o.batch_lock_)) {
  o.txn_ = nullptr;
}

Txn::~Txn() {
  // An aborted nested transaction leaves its batch as it was.
  if (txn_ != nullptr && (kind_ == Kind::kOwn || kind_ == Kind::kBatchWrite)) mdb_txn_abort(txn_);
  release_batch();
}

void Txn::release_batch() {
  if (!batch_lock_.owns_lock()) return;
  held_store = nullptr;
  held_txn = nullptr;
  batch_lock_.unlock();
}

Status Txn::commit() {
  MDB_txn* t = txn_;
  txn_ = nullptr;
  switch (kind_) {
    case Kind::kOwn:
      return lmdb_status(mdb_txn_commit(t), "commit");
    case Kind::kBatchWrite: {
      if (held_txn_failed) {
        mdb_txn_abort(t);  // leaves the batch as it was
        release_batch();
        return Status::IOError(EIO, "commit: the transaction failed earlier");
      }
      Status s = store_->batcher_->commit(t, batch_lock_);
      release_batch();
      return s;
    }
    case Kind::kBatchRead:
      release_batch();
      return Status::Ok();
    case Kind::kBorrowed:
      break;
  }
  return Status::Ok();  // the enclosing transaction commits
}

Result<std::string> Txn::get_raw(unsigned dbi, std::string_view key) {
  MDB_val k = mdb_val(key), v;
  int rc = note(txn_, mdb_get(txn_, dbi, &k, &v));
  if (rc != MDB_SUCCESS) return lmdb_status(rc, "get");
  return std::string(as_view(v));
}

Status Txn::put_raw(unsigned dbi, std::string_view key, std::string_view value, unsigned flags) {
  MDB_val k = mdb_val(key), v = mdb_val(value);
  return lmdb_status(note(txn_, mdb_put(txn_, dbi, &k, &v, flags)), "put");
}

Status Txn::del_raw(unsigned dbi, std::string_view key) {
  MDB_val k = mdb_val(key);
  return lmdb_status(note(txn_, mdb_del(txn_, dbi, &k, nullptr)), "delete");
}

Status Txn::need_keys() const {
  if (keys_ == nullptr || keys_->empty()) return Status::AccessDenied("the store's keys are not available");
  return Status::Ok();
}

// ---- superblock and wrapped keys ----

Result<Superblock> Txn::superblock() {
  auto raw = get_raw(store_->super_, kSuperKey);
  if (!raw.ok()) {
    if (raw.status().code() == ENOENT) return Status::Corruption("the superblock is missing");
    return raw.status();
  }
  return Superblock::from_json(*raw);
}

Status Txn::put_superblock(const Superblock& sb) { return put_raw(store_->super_, kSuperKey, sb.to_json()); }

Result<std::string> Txn::wrapped_dek(uint32_t generation) {
  auto raw = get_raw(store_->keys_, be64_key(generation));
  if (!raw.ok() && raw.status().code() == ENOENT) {
    return Status::Corruption("wrapped data key generation " + std::to_string(generation) + " is missing");
  }
  return raw;
}

Status Txn::put_wrapped_dek(uint32_t generation, std::string_view blob) {
  return put_raw(store_->keys_, be64_key(generation), blob);
}

Status Txn::delete_wrapped_dek(uint32_t generation) {
  Status s = del_raw(store_->keys_, be64_key(generation));
  return s.code() == ENOENT ? Status::Ok() : s;
}

Result<std::vector<uint32_t>> Txn::wrapped_generations() {
  MDB_cursor* c = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_cursor_open(txn_, store_->keys_, &c), "cursor"));
  MdbCursor cursor(c);
  std::vector<uint32_t> out;
  MDB_val k, v;
  for (int rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_FIRST)); rc == MDB_SUCCESS;
       rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_NEXT))) {
    if (k.mv_size == 8) out.push_back(static_cast<uint32_t>(get_be64(static_cast<const uint8_t*>(k.mv_data))));
  }
  return out;
}

namespace {
std::string name_key_key(uint32_t generation) { return "name" + be64_key(generation); }
std::string seal_count_key(uint32_t generation) { return "seals" + be64_key(generation); }
}  // namespace

Status Txn::put_name_key(uint32_t generation, const crypto::GcmKey& meta_key, crypto::Bytes name_key) {
  std::string key = name_key_key(generation);
  auto sealed = seal_record(meta_key, kTableKeys, key, {reinterpret_cast<const char*>(name_key.data()), name_key.size()});
  if (!sealed.ok()) return sealed.status();
  return put_raw(store_->keys_, key, *sealed);
}

Result<crypto::SecretBytes> Txn::name_key(uint32_t generation, const crypto::GcmKey& meta_key) {
  std::string key = name_key_key(generation);
  auto sealed = get_raw(store_->keys_, key);
  if (!sealed.ok()) return sealed.status();
  auto plain = open_record(meta_key, kTableKeys, key, *sealed);
  if (!plain.ok()) return plain.status();
  auto out = crypto::SecretBytes::copy_of(crypto::as_bytes(*plain));
  std::fill(plain->begin(), plain->end(), '\0');
  if (out.size() != crypto::kKeySize) return Status::Corruption("the carried name key is damaged");
  return out;
}

Status Txn::delete_name_key(uint32_t generation) {
  Status s = del_raw(store_->keys_, name_key_key(generation));
  return s.code() == ENOENT ? Status::Ok() : s;
}

Result<uint64_t> Txn::seal_count(uint32_t generation) {
  auto raw = get_raw(store_->super_, seal_count_key(generation));
  if (!raw.ok()) return raw.status().code() == ENOENT ? Result<uint64_t>(uint64_t{0}) : raw.status();
  if (raw->size() != 8) return Status::Corruption("seal count record is damaged");
  return get_be64(reinterpret_cast<const uint8_t*>(raw->data()));
}

namespace {
std::string marker_key(std::string_view name) { return "marker:" + std::string(name); }
}  // namespace

Result<std::string> Txn::raw_marker(std::string_view name) { return get_raw(store_->super_, marker_key(name)); }

Status Txn::put_raw_marker(std::string_view name, std::string_view value) {
  return put_raw(store_->super_, marker_key(name), value);
}

Status Txn::delete_raw_marker(std::string_view name) {
  Status s = del_raw(store_->super_, marker_key(name));
  return s.code() == ENOENT ? Status::Ok() : s;
}

Status Txn::put_seal_count(uint32_t generation, uint64_t count) {
  return put_raw(store_->super_, seal_count_key(generation), be64_key(count));
}

// ---- inodes ----

Result<InodeRecord> Txn::get_inode(uint64_t ino) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  std::string key = be64_key(ino);
  auto sealed = get_raw(store_->inodes_, key);
  if (!sealed.ok()) return sealed.status();
  auto plain = open_record(*keys_, kTableInodes, key, *sealed);
  if (!plain.ok()) return Status::Corruption("inode " + std::to_string(ino) + ": " + plain.status().message());
  return decode_inode(ino, *plain);
}

Status Txn::update_inode(const InodeRecord& rec) {
  auto existing = get_raw(store_->inodes_, be64_key(rec.ino));
  if (!existing.ok()) return existing.status();
  return put_inode(rec);
}

Status Txn::put_inode(const InodeRecord& rec) {
  CMKFS_RETURN_IF_ERROR(need_keys());
  std::string key = be64_key(rec.ino);
  auto sealed = seal_record(keys_->meta, kTableInodes, key, encode_inode(rec));
  store_->seals_.fetch_add(1, std::memory_order_relaxed);
  if (!sealed.ok()) return sealed.status();
  return put_raw(store_->inodes_, key, *sealed);
}

Status Txn::delete_inode(uint64_t ino) { return del_raw(store_->inodes_, be64_key(ino)); }

Result<uint64_t> Txn::last_inode() {
  MDB_cursor* c = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_cursor_open(txn_, store_->inodes_, &c), "cursor"));
  MdbCursor cursor(c);
  MDB_val k, v;
  int rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_LAST));
  if (rc == MDB_NOTFOUND) return uint64_t{0};
  if (rc != MDB_SUCCESS) return lmdb_status(rc, "last inode");
  if (k.mv_size != 8) return Status::Corruption("inode table: malformed key");
  return get_be64(static_cast<const uint8_t*>(k.mv_data));
}

// ---- orphans ----

Status Txn::add_orphan(uint64_t ino) { return put_raw(store_->orphans_, be64_key(ino), ""); }

Status Txn::remove_orphan(uint64_t ino) {
  Status s = del_raw(store_->orphans_, be64_key(ino));
  return s.code() == ENOENT ? Status::Ok() : s;
}

namespace {
std::string pending_key(const Id128& id) { return "p" + std::string(reinterpret_cast<const char*>(id.data()), id.size()); }
std::string writing_key(uint64_t ino) { return "w" + be64_key(ino); }
}  // namespace

Status Txn::add_pending_removal(const Id128& file_id) { return put_raw(store_->recovery_, pending_key(file_id), ""); }

Status Txn::remove_pending_removal(const Id128& file_id) {
  Status s = del_raw(store_->recovery_, pending_key(file_id));
  return s.code() == ENOENT ? Status::Ok() : s;
}

Status Txn::add_writing(uint64_t ino) { return put_raw(store_->recovery_, writing_key(ino), ""); }

Status Txn::remove_writing(uint64_t ino) {
  Status s = del_raw(store_->recovery_, writing_key(ino));
  return s.code() == ENOENT ? Status::Ok() : s;
}

// Calls fn(key) for each recovery record whose key starts with `tag` and has `size` bytes.
template <class Fn>
Status Txn::each_recovery(char tag, size_t size, Fn&& fn) {
  if (!store_->has_recovery_) return Status::Ok();
  MDB_cursor* c = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_cursor_open(txn_, store_->recovery_, &c), "cursor"));
  MdbCursor cursor(c);
  MDB_val k, v;
  std::string start(1, tag);
  k = mdb_val(start);
  for (int rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)); rc == MDB_SUCCESS;
       rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_NEXT))) {
    std::string_view key = as_view(k);
    if (key.empty() || key[0] != tag) break;
    if (key.size() == size) fn(key.substr(1));
  }
  return Status::Ok();
}

Result<std::vector<Id128>> Txn::pending_removals() {
  std::vector<Id128> out;
  CMKFS_RETURN_IF_ERROR(each_recovery('p', 17, [&](std::string_view k) {
    Id128 id{};
    std::copy(k.begin(), k.end(), id.begin());
    out.push_back(id);
  }));
  return out;
}

Result<std::vector<uint64_t>> Txn::writing() {
  std::vector<uint64_t> out;
  CMKFS_RETURN_IF_ERROR(each_recovery('w', 9, [&](std::string_view k) {
    out.push_back(get_be64(reinterpret_cast<const uint8_t*>(k.data())));
  }));
  return out;
}

Result<std::vector<uint64_t>> Txn::orphans() {
  MDB_cursor* c = nullptr;
  CMKFS_RETURN_IF_ERROR(lmdb_status(mdb_cursor_open(txn_, store_->orphans_, &c), "cursor"));
  MdbCursor cursor(c);
  std::vector<uint64_t> out;
  MDB_val k, v;
  for (int rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_FIRST)); rc == MDB_SUCCESS;
       rc = note(txn_, mdb_cursor_get(c, &k, &v, MDB_NEXT))) {
    if (k.mv_size == 8) out.push_back(get_be64(static_cast<const uint8_t*>(k.mv_data)));
  }
  return out;
}

}  // namespace cmkfs::meta
