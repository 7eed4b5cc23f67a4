// Filesystem: start and shutdown, inode bookkeeping, attributes.
#include "fs/core/filesystem.h"

#include <spdlog/spdlog.h>
#include <time.h>

#include <cstring>
#include <set>

#include "fs/core/chunk_file.h"
#include "fs/core/inode_writer.h"

namespace cmkfs::fs {

// The kernel's clock for file times: the last timer tick, as on ext4 before 6.6. With the
// writeback cache the kernel keeps a file's times itself and must send them back (a SETATTR at
// close) once write(2) moved them; stamped from the same clock, a file created and written within
// one tick is not moved at all. That takes creating a small file from 5 requests to 4.
meta::Timespec now_timespec() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return {ts.tv_sec, static_cast<uint32_t>(ts.tv_nsec)};
}

namespace {

// Removes a deleted file's object and then the note that it must go, unless another process of
// the store still reads it (or whether one does cannot be told now): then it waits in `held`.
void remove_unless_held(meta::MetaStore& meta, ObjectStore& objects, HeldRemovals& held, const Id128& id,
                        uint64_t ino, bool retry = false) {
  if (held.keep_if_held(meta, id, ino, /*warn=*/!retry)) return;  // warned once, not at every retry
  Status s = objects.remove(id);
  if (!s.ok()) {
    spdlog::error("inode {}: its object stays behind (the next mount retries): {}", ino, s.message());
    return;
  }
  // Gone: the note that it had to go may go too (with the next batch; a crash before that only
  // makes the next mount try a removal that is already done).
  auto txn = meta.begin(true);
  if (txn.ok() && txn->remove_pending_removal(id).ok()) (void)txn->commit();
}

}  // namespace

bool HeldRemovals::keep_if_held(meta::MetaStore& meta, const Id128& id, uint64_t ino, bool warn) {
  auto elsewhere = meta.held_elsewhere(id);
  if (elsewhere.ok() && !*elsewhere) return false;
  if (!elsewhere.ok() && warn) {
    spdlog::warn("inode {}: its object stays until its readers are known: {}", ino, elsewhere.status().message());
  }
  std::lock_guard<std::mutex> g(mu);
  objects.emplace_back(id, ino);
  return true;
}

Filesystem::Filesystem(OpenStore& store, Keyring& keyring, size_t inode_cache)
    : store_(store),
      keyring_(keyring),
      layout_(store.super.chunk_size),
      store_id_(store.super.store_id),
      held_removals_(std::make_shared<HeldRemovals>()),
      inodes_(inode_cache) {}

void Filesystem::retry_held_removals() {
  std::vector<std::pair<Id128, uint64_t>> waiting;
  {
    std::lock_guard<std::mutex> g(held_removals_->mu);
    waiting.swap(held_removals_->objects);
  }
  for (const auto& [id, ino] : waiting) {
    remove_unless_held(*store_.meta, *store_.objects, *held_removals_, id, ino, /*retry=*/true);
  }
}

std::vector<uint64_t> Filesystem::known_inodes() { return inodes_.referenced(); }

bool Filesystem::reload(uint64_t ino, const Keyring::Access& access, bool* gone) {
  std::lock_guard<std::mutex> order(reload_mu_[ino % reload_mu_.size()]);
  auto node = inodes_.find(ino);
  if (!node) {  // not in memory (the kernel may still cache it): the next lookup loads it
    inodes_.changed_while_loading(ino);  // and one in flight loads it again
    return true;
  }
  Result<meta::InodeRecord> rec = Status::Unavailable("not read");
  {
    auto txn = store_.meta->begin(false, &access.store_keys());
    if (!txn.ok()) return true;
    rec = txn->get_inode(ino);
  }
  if (!rec.ok()) {  // removed: the kernel forgets it
    if (gone != nullptr && rec.status().code() == ENOENT) *gone = true;
    return true;
  }
  Id128 old_file;
  {
    std::lock_guard<std::mutex> g(node->mu);
    if (node->rec == *rec) return false;
    old_file = node->rec.file_id;
  }
  std::unique_lock<std::shared_mutex> data(node->data_mu, std::defer_lock);
  if (rec->file_id != old_file && !follow_move(ino, *node, *rec, access, &data)) return true;  // tried again later
  {
    std::lock_guard<std::mutex> g(node->mu);
    node->rec = std::move(*rec);  // a follower changes nothing: never unsaved
  }
  node->kernel_stale = true;
  return true;
}

// Moved to another object (a data-key rotation): a file open here reads the new one from now on,
// held as the old one is (the writer may delete the file next), and swapped under data_mu with the
// record so that no read pairs one's keys with the other. The new object is held first, the record
// read again (still naming it: the writer will find it held) and the object opened, all before
// data_mu is taken. False, with nothing changed, when one of those fails: the old object stays
// held by the handles that opened it, and the next reload tries again.
bool Filesystem::follow_move(uint64_t ino, Inode& node, const meta::InodeRecord& rec, const Keyring::Access& access,
                             std::unique_lock<std::shared_mutex>* data) {
  {
    std::shared_lock<std::shared_mutex> g(node.data_mu);
    if (!node.object) return true;  // not open here
  }
  if (!store_.meta->hold(rec.file_id).ok()) return false;
  auto let_go = [&] { (void)store_.meta->release_hold(rec.file_id); };
  {
    auto txn = store_.meta->begin(false, &access.store_keys());
    auto again = txn.ok() ? txn->get_inode(ino) : Result<meta::InodeRecord>(txn.status());
    if (!again.ok() || again->file_id != rec.file_id) return let_go(), false;
  }
  auto object = store_.objects->open(rec.file_id, /*create=*/false);
  if (!object.ok()) {
    spdlog::warn("inode {}: its new object does not open ({}); it reads the old one meanwhile", ino,
                 object.status().message());
    return let_go(), false;
  }
  data->lock();
  if (!node.object) return let_go(), true;  // closed meanwhile
  node.object = std::move(*object);
  std::optional<Id128> before = std::exchange(node.moved_hold, rec.file_id);
  if (before) (void)store_.meta->release_hold(*before);
  return true;
}

Result<meta::MetaStore::Changes> Filesystem::apply_changes(std::string_view payload) {
  auto access = keyring_.access();
  if (!access.ok()) return Status::AccessDenied("the key is revoked");  // the kernel's caches were emptied
  auto changes = store_.meta->open_changes(access.store_keys(), payload);
  if (!changes.ok()) return changes.status();
  if (changes->everything) changes->inodes = known_inodes();
  for (uint64_t ino : changes->inodes) reload(ino, access);
  return changes;
}

int Filesystem::fail(const Status& s, const char* op, uint64_t ino) {
  if (s.code() == EIO) io_errors_.fetch_add(1, std::memory_order_relaxed);
  if (s.code() == EIO || s.code() == ENOSPC || s.code() == EFBIG) {
    // Once per distinct problem: a damaged chunk read in a loop must not flood the log.
    static std::mutex mu;
    static std::set<std::string> seen;
    std::string key = std::to_string(ino) + ":" + s.message();
    std::lock_guard<std::mutex> g(mu);
    if (seen.size() < 4096 && seen.insert(key).second) {
      spdlog::error("{} on inode {}: {} ({})", op, ino, s.message(), std::strerror(s.code()));
    }
  } else {
    spdlog::debug("{} on inode {}: {}", op, ino, s.message());
  }
  return s.code();
}

Status Filesystem::start() {
  Status reserved = store_.meta->reserve_space(meta::kMetaReserveBytes);
  if (!reserved.ok()) spdlog::warn("{}", reserved.message());  // a full disk must not stop a mount
  auto access = keyring_.access();
  std::vector<uint64_t> orphans;
  {
    auto txn = store_.meta->begin(false, &access.store_keys());
    if (!txn.ok()) return txn.status();
    auto last = txn->last_inode();
    if (!last.ok()) return last.status();
    next_ino_ = *last + 1;
    auto o = txn->orphans();
    if (!o.ok()) return o.status();
    orphans = std::move(*o);
    auto root = inodes_.get(meta::kRootIno, loader(meta::kRootIno, access), 1);  // pinned: never forgotten
    if (!root.ok()) return root.status();
  }
  if (follower_) return Status::Ok();  // the writer repairs
  CMKFS_RETURN_IF_ERROR(recover(access));
  for (uint64_t ino : orphans) {
    spdlog::info("removing inode {}, unlinked while open before the last unmount", ino);
    CMKFS_RETURN_IF_ERROR(reap(ino, access));
  }
  return Status::Ok();
}

Status Filesystem::shutdown() {
  // The kernel sends no release after an unmount: the handles left are freed on every return.
  struct FreeHandles {
    Filesystem* fs;
    ~FreeHandles() {
      std::lock_guard<std::mutex> g(fs->handles_mu_);
      for (Handle* h : fs->handles_) delete h;
      fs->handles_.clear();
    }
  } free_handles{this};
  if (follower_) return Status::Ok();  // it changed nothing
  auto access = keyring_.access();
  if (!access.ok()) {
    spdlog::warn("unmounting while the key is revoked: unsaved attribute changes are lost");
    return Status::AccessDenied("key revoked");
  }
  Status first;
  auto all = inodes_.all();
  std::vector<Inode*> nodes;
  for (auto& node : all) {
    std::unique_lock<std::shared_mutex> g(node->data_mu);
    if (node->object) {
      Status s = node->object->sync();
      if (!s.ok() && first.ok()) first = s;
    }
    nodes.push_back(node.get());
  }
  if (Status s = save(nodes, access); !s.ok() && first.ok()) first = s;
  if (first.ok()) {
    // Every size is saved and every object synced: nothing is being written any more, and every
    // create noted has committed.
    auto txn = store_.meta->begin(true, &access.store_keys());
    auto writing = txn.ok() ? txn->writing() : Result<std::vector<uint64_t>>(txn.status());
    Status w = writing.ok() ? Status::Ok() : writing.status();
    if (w.ok()) {
      for (uint64_t ino : *writing) {
        if (w.ok()) w = txn->remove_writing(ino);
      }
    }
    if (w.ok()) w = txn->commit();
    if (!w.ok()) first = w;
  }
  Status s = store_.meta->sync();
  if (s.ok() && first.ok() && store_.creations) s = store_.creations->clear();
  return first.ok() ? s : first;
}

Status Filesystem::persist(Inode& node, const Keyring::Access& access) {
  return node.dirty() ? save({&node}, access) : Status::Ok();
}

Status Filesystem::save(const std::vector<Inode*>& nodes, const Keyring::Access& access) {
  if (nodes.empty()) return Status::Ok();
  auto txn = store_.meta->begin(true, &access.store_keys());
  if (!txn.ok()) return txn.status();
  std::vector<std::pair<Inode*, uint64_t>> saved;
  for (Inode* node : nodes) {
    uint64_t seq;
    meta::InodeRecord rec;
    // Checked again inside the write txn: since it was picked, the inode may have been saved and
    // evicted (a newer copy may be in use), or deleted.
    if (!node->snapshot_if_dirty(&rec, &seq)) continue;
    // Only ever rewrites a record: an unlink may have deleted it since it was picked (the node's
    // disk state changes just after that commit), and must not see it come back.
    CMKFS_RETURN_IF_ERROR(txn->rewrite_inode(rec));
    saved.emplace_back(node, seq);
  }
  // A file nobody has open whose size is now saved (here or before) is no longer being written:
  // its recovery note goes in the same commit. Never waits for a file in use (lock order).
  std::vector<std::pair<Inode*, std::unique_lock<std::shared_mutex>>> done_writing;
  for (Inode* node : nodes) {
    if (!node->writing_noted || node->dirty()) continue;
    std::unique_lock<std::shared_mutex> g(node->data_mu, std::try_to_lock);
    if (!g.owns_lock() || inodes_.is_open(*node) || !node->writing_noted) continue;
    CMKFS_RETURN_IF_ERROR(txn->remove_writing(node->snapshot().ino));
    done_writing.emplace_back(node, std::move(g));
  }
  if (saved.empty() && done_writing.empty()) return Status::Ok();
  return txn->commit([&] {
    for (auto& [node, seq] : saved) node->mark_saved(seq);
    for (auto& [node, g] : done_writing) node->writing_noted = false;
  });
}

Status Filesystem::note_writing(Inode& node, const Keyring::Access& access) {
  if (node.writing_noted) return Status::Ok();
  auto txn = store_.meta->begin(true, &access.store_keys());
  if (!txn.ok()) return txn.status();
  CMKFS_RETURN_IF_ERROR(txn->add_writing(node.snapshot().ino));
  CMKFS_RETURN_IF_ERROR(txn->commit());
  node.writing_noted = true;
  return Status::Ok();
}

Status Filesystem::reap(uint64_t ino, const Keyring::Access& access) {
  auto txn = store_.meta->begin(true, &access.store_keys());
  if (!txn.ok()) return txn.status();
  auto rec = txn->get_inode(ino);
  if (!rec.ok() && rec.status().code() != ENOENT) return rec.status();
  // The orphans table is not sealed: only the inode's own (sealed) record can say it is unlinked.
  bool linked = rec.ok() && rec->nlink > 0;
  if (!linked && rec.ok() && S_ISREG(rec->mode)) CMKFS_RETURN_IF_ERROR(txn->add_pending_removal(rec->file_id));
  if (linked) {
    spdlog::error("inode {} is listed as an orphan but its record has {} links: keeping it, dropping the entry "
                  "(tampered?)",
                  ino, rec->nlink);
  } else if (rec.ok()) {
    CMKFS_RETURN_IF_ERROR(txn->delete_inode(ino));
  }
  CMKFS_RETURN_IF_ERROR(txn->remove_orphan(ino));
  CMKFS_RETURN_IF_ERROR(txn->commit());
  if (rec.ok() && !linked && S_ISREG(rec->mode)) remove_object_when_durable(*rec);
  return Status::Ok();
}

// An object goes only once the metadata that no longer names it is on disk: a crash before
// then must find the file whole (its name, or its orphan entry, and its bytes), never a record
// without its object. A crash after the commit but before the removal leaks the object, which
// fsck reports. An object a follower still reads waits for it (remove_unless_held). Runs on the
// group committer's thread: it uses nothing of this Filesystem but what it shares.
void Filesystem::remove_object_when_durable(const meta::InodeRecord& rec) {
  store_.meta->when_durable([meta = store_.meta.get(), objects = store_.objects.get(), held = held_removals_,
                             id = rec.file_id, ino = rec.ino] { remove_unless_held(*meta, *objects, *held, id, ino); });
}

void Filesystem::drop_if_unused(const std::shared_ptr<Inode>& node) {
  auto access = keyring_.access();
  if (!access.ok()) return;  // kept in memory until the key returns; orphans are reaped at mount
  meta::InodeRecord rec = node->snapshot();
  Status s;
  switch (node->disk_state()) {
    case Inode::OnDisk::kNothing:
      break;
    case Inode::OnDisk::kObjectOnly:  // its record went at unlink, while it was open
      remove_object_when_durable(rec);
      node->set_disk_state(Inode::OnDisk::kNothing);
      break;
    case Inode::OnDisk::kRecord:
      // A linked inode with unsaved changes (a new file's size) stays in the table until the next
      // flush: one commit for all the inodes the kernel evicts in that second, not one each.
      if (rec.nlink > 0) break;
      s = reap(rec.ino, access);
      // A flush holding this node must not write its record back.
      if (s.ok()) node->set_disk_state(Inode::OnDisk::kNothing);
      break;
  }
  if (!s.ok()) {
    fail(s, "releasing", rec.ino);
    return;
  }
  inodes_.erase_if_unused(rec.ino);
}

Status Filesystem::ensure_object(Inode& node, const Keyring::Access& access, bool recovering) {
  if (node.object) return Status::Ok();
  meta::InodeRecord rec = node.snapshot();
  // A follower never makes, nor cuts, an object: the writer's may be longer than the size it
  // last saved because it is being written.
  auto obj = store_.objects->open(rec.file_id, /*create=*/rec.size == 0 && !follower_);
  if (!obj.ok()) {
    if (obj.status().code() == ENOENT) return Status::Corruption("the object file is missing");
    // A link, a FIFO or a file with other names in an object's place: damage, as a chunk that
    // does not authenticate is (EIO, and logged), not the refusal of a revoked key (EACCES).
    if (obj.status().code() == EACCES) return Status::IOError(EIO, obj.status().message());
    return obj.status();
  }
  // A file the crashed mount was writing may not be as long as its saved size says: chunks
  // written since (a rewritten partial last chunk among them), or a cut. Recovery makes it what
  // authenticates, and the object exactly as long as that. Anywhere else a short object is damage
  // (its reads fail), and bytes past the size are dropped.
  auto len = (*obj)->length();
  if (!len.ok()) return len.status();
  uint64_t want = layout_.phys_size(rec.size);
  if (!recovering && *len > want && !follower_) {
    spdlog::warn("inode {}: object is {} bytes longer than its saved size; dropping them", rec.ino, *len - want);
    CMKFS_RETURN_IF_ERROR((*obj)->truncate(want));
  } else if (recovering && *len != want) {
    auto fc = file_crypto(access, rec);
    if (!fc.ok()) return fc.status();
    auto size = recoverable_size(chunks(**obj, *fc), rec.size, *len);
    if (!size.ok()) return size.status();
    spdlog::warn("inode {}: object is {} bytes for a saved size of {}: the file is now the {} bytes that authenticate",
                 rec.ino, *len, rec.size, *size);
    CMKFS_RETURN_IF_ERROR((*obj)->truncate(layout_.phys_size(*size)));
    if (*size != rec.size) node.update([&](meta::InodeRecord& r) { r.size = *size; });
  }
  node.object = std::move(*obj);
  return Status::Ok();
}

int Filesystem::lookup(uint64_t parent, std::string_view name, meta::InodeRecord* out) {
  if (name.size() > 255) return ENAMETOOLONG;
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto txn = store_.meta->begin(false, &access.store_keys());
  if (!txn.ok()) return fail(txn.status(), "lookup", parent);
  auto entry = txn->lookup(parent, name);
  if (!entry.ok()) return entry.status().code() == ENOENT ? ENOENT : fail(entry.status(), "lookup", parent);
  auto node = inodes_.get(entry->ino, loader(entry->ino, access), 1);
  if (!node.ok()) return fail(node.status(), "lookup", entry->ino);
  *out = (*node)->snapshot();
  return 0;
}

void Filesystem::forget(uint64_t ino, uint64_t n) {
  if (auto unused = inodes_.forget(ino, n)) drop_if_unused(unused);
}

InodeTable::Loader Filesystem::loader(uint64_t ino, const Keyring::Access& access) {
  return [this, ino, &access]() -> Result<meta::InodeRecord> {
    auto txn = store_.meta->begin(false, &access.store_keys());  // begun after the table missed
    if (!txn.ok()) return txn.status();
    return txn->get_inode(ino);
  };
}

Result<std::shared_ptr<Inode>> Filesystem::node_of(uint64_t ino, const Keyring::Access& access) {
  return inodes_.get(ino, loader(ino, access));
}

int Filesystem::getattr(uint64_t ino, meta::InodeRecord* out) {
  auto access = keyring_.access();
  if (!access.ok() && ino != meta::kRootIno) return EACCES;
  auto node = ino == meta::kRootIno ? Result<std::shared_ptr<Inode>>(inodes_.find(ino)) : node_of(ino, access);
  if (!node.ok()) return fail(node.status(), "getattr", ino);
  *out = (*node)->snapshot();
  return 0;
}

int Filesystem::resize(Inode& node, uint64_t size, const Keyring::Access& access) {
  meta::InodeRecord rec = node.snapshot();
  auto fc = file_crypto(access, rec);
  if (!fc.ok()) return fail(fc.status(), "truncate", rec.ino);
  if (Status s = note_writing(node, access); !s.ok()) return fail(s, "truncate", rec.ino);
  auto w = resize_chunks(chunks(*node.object, *fc), rec.size, size);
  if (!w.ok()) return fail(w.status(), "truncate", rec.ino);
  node.lost.forget(std::min(rec.size, size), UINT64_MAX);  // cut off, or now a hole of zeros
  meta::Timespec now = now_timespec();
  node.update([&](meta::InodeRecord& r) {
    r.size = size;
    r.mtime = r.ctime = now;
    r.chunk_writes += w->chunks_sealed;
    if (w->made_hole) r.flags |= meta::kInodeMayBeSparse;
  });
  return 0;
}

int Filesystem::setattr(uint64_t ino, const AttrChange& c, Handle* h, meta::InodeRecord* out) {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  std::shared_ptr<Inode> node = h != nullptr ? h->node : nullptr;
  if (!node) {
    auto found = node_of(ino, access);  // the kernel holds it; it may have been demoted
    if (!found.ok()) return fail(found.status(), "setattr", ino);
    node = std::move(*found);
  }
  if (c.size) {
    if (!S_ISREG(node->snapshot().mode)) return S_ISDIR(node->snapshot().mode) ? EISDIR : EINVAL;
    std::unique_lock<std::shared_mutex> g(node->data_mu);
    bool was_open = node->object != nullptr;
    Status s = ensure_object(*node, access);
    if (!s.ok()) return fail(s, "truncate", ino);
    int err = resize(*node, *c.size, access);
    if (!was_open && !inodes_.is_open(*node)) node->object.reset();
    if (err != 0) return err;
  }
  meta::Timespec now = now_timespec();
  auto change = [&c, now](meta::InodeRecord& r) {
    if (c.mode) r.mode = (r.mode & S_IFMT) | (*c.mode & 07777);
    if (c.uid) r.uid = *c.uid;
    if (c.gid) r.gid = *c.gid;
    if (c.atime) r.atime = *c.atime;
    if (c.mtime) r.mtime = *c.mtime;
    r.ctime = c.ctime ? *c.ctime : now;
  };
  if (!c.mode && !c.uid && !c.gid) {
    // Times only (the writeback cache sends them at every close): saved by the next flush.
    node->update(change);
  } else {
    auto txn = store_.meta->begin(true, &access.store_keys());
    if (!txn.ok()) return fail(txn.status(), "setattr", ino);
    InodeWriter writer(*txn);
    Status s = writer.stage(node, change);
    if (s.ok()) s = writer.commit();
    if (!s.ok()) return fail(s, "setattr", ino);
  }
  *out = node->snapshot();
  return 0;
}

Status Filesystem::flush_dirty() {
  if (follower_) {  // nothing to save: only the cache to trim, and the writer to keep told
    inodes_.shrink();
    Status held = store_.meta->renew_holds();
    bool was_unrenewed = holds_unrenewed_.exchange(!held.ok());
    if (!held.ok() && !was_unrenewed) spdlog::warn("the writer cannot be told which files are open here: {}", held.message());
    if (held.ok() && was_unrenewed) spdlog::info("the writer is told again which files are open here");
    return Status::Ok();
  }
  Status reserved = store_.meta->reserve_space(meta::kMetaReserveBytes);
  if (!reserved.ok()) spdlog::warn("{}", reserved.message());
  auto access = keyring_.access();
  if (!access.ok()) return Status::Ok();  // nothing can be sealed; kept until the key returns
  auto all = inodes_.all();  // holds them while they are saved
  std::vector<Inode*> dirty;
  for (auto& node : all) {
    if (node->dirty() || node->writing_noted) dirty.push_back(node.get());
  }
  CMKFS_RETURN_IF_ERROR(save(dirty, access));
  retry_held_removals();
  if (store_.creations) {
    store_.creations->maybe_turn([this](std::function<void()> fn) { store_.meta->when_durable(std::move(fn)); });
  }
  for (Inode* node : dirty) inodes_.erase_if_unused(node->snapshot().ino);  // kept only to be saved
  dirty.clear();
  all.clear();
  inodes_.shrink();  // what was dirty or busy when its turn came
  return Status::Ok();
}

int Filesystem::readlink(uint64_t ino, std::string* out) {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto node = node_of(ino, access);
  if (!node.ok()) return fail(node.status(), "readlink", ino);
  meta::InodeRecord rec = (*node)->snapshot();
  if (!S_ISLNK(rec.mode)) return EINVAL;
  *out = rec.symlink;
  return 0;
}

int Filesystem::statfs(struct statvfs* out) {
  auto st = store_.objects->statfs();
  if (!st.ok()) return fail(st.status(), "statfs", meta::kRootIno);
  *out = *st;
  out->f_namemax = 255;
  return 0;
}

// Writes every metadata change made so far, the unsaved sizes of files written through the
// writeback cache included (as a journal commit would), not just this directory's names.
int Filesystem::fsyncdir() {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  Status s = flush_dirty();
  if (s.ok()) s = store_.meta->sync();
  return s.ok() ? 0 : fail(s, "fsyncdir", meta::kRootIno);
}

}  // namespace cmkfs::fs
