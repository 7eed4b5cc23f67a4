// Filesystem: repairing at mount what a crash of the last mount left (README, Durability). Each
// kind of leftover was noted where it is cheap, so the work is bounded by what was in flight, not
// by the size of the store:
// - objects whose removal was committed but not done (the recovery table's pending removals),
//   but for those a follower still reads, which wait for it (remove_unless_held);
// - objects created for files whose create never reached the disk (the creation log);
// - objects longer than their file's saved size (the recovery table's files being written);
// - files unlinked while open (the orphans table, reaped by start()).
#include <spdlog/spdlog.h>

#include <chrono>

#include "fs/core/filesystem.h"

namespace cmkfs::fs {

Status Filesystem::recover(const Keyring::Access& access) {
  auto began = std::chrono::steady_clock::now();
  std::vector<Id128> pending;
  std::vector<uint64_t> writing;
  size_t unauthentic = 0;
  {
    auto txn = store_.meta->begin(false, &access.store_keys());
    if (!txn.ok()) return txn.status();
    auto p = txn->pending_removals();
    if (!p.ok()) return p.status();
    auto w = txn->writing();
    if (!w.ok()) return w.status();
    auto u = txn->unauthentic_recovery_notes(/*remove=*/false);
    if (!u.ok()) return u.status();
    pending = std::move(*p);
    writing = std::move(*w);
    unauthentic = *u;
  }
  std::vector<CreationLog::Entry> created;
  size_t forged = 0;  // creation notes
  if (store_.creations) {
    auto c = store_.creations->entries(access.store_keys().name, &forged);
    if (!c.ok()) return c.status();
    created = std::move(*c);
  }
  if (unauthentic + forged > 0) {  // never acted on: they go with this recovery
    spdlog::warn("{} crash-recovery notes in the store do not authenticate (tampered, or sealed under a retired "
                 "data key): ignored and removed", unauthentic + forged);
  }
  if (pending.empty() && writing.empty() && created.empty() && unauthentic + forged == 0) return Status::Ok();

  size_t removed = 0, leaked = 0, trimmed = 0;
  std::vector<Id128> done;  // those whose note goes; one a follower still reads waits for it
  for (const Id128& id : pending) {
    if (held_removals_->keep_if_held(*store_.meta, id, 0, /*warn=*/false)) continue;
    CMKFS_RETURN_IF_ERROR(store_.objects->remove(id));
    done.push_back(id);
    ++removed;
  }
  // A noted object whose inode does not name it was made by a create that never committed.
  for (const auto& e : created) {
    auto txn = store_.meta->begin(false, &access.store_keys());
    if (!txn.ok()) return txn.status();
    auto rec = txn->get_inode(e.ino);
    if (rec.ok() && rec->file_id == e.file_id) continue;
    if (!rec.ok() && rec.status().code() != ENOENT) return rec.status();
    auto object = store_.objects->open(e.file_id, /*create=*/false);
    if (!object.ok()) continue;  // never made, or already gone
    object->reset();
    CMKFS_RETURN_IF_ERROR(store_.objects->remove(e.file_id));
    ++leaked;
  }
  for (uint64_t ino : writing) {
    auto node = inodes_.get(ino, loader(ino, access));
    if (!node.ok()) {
      auto txn = store_.meta->begin(false, &access.store_keys());
      if (!txn.ok()) return txn.status();
      if (txn->get_inode(ino).status().code() == ENOENT) continue;  // deleted since
      return node.status();
    }
    if (!S_ISREG((*node)->snapshot().mode)) continue;
    std::unique_lock<std::shared_mutex> data((*node)->data_mu);
    bool had = (*node)->object != nullptr;
    Status s = ensure_object(**node, access, /*recovering=*/true);  // makes it what authenticates
    if (!had) (*node)->object.reset();
    data.unlock();
    if (s.code() == EIO) continue;  // a missing object: fsck reports it
    CMKFS_RETURN_IF_ERROR(s);
    trimmed += (*node)->dirty() ? 1 : 0;
    CMKFS_RETURN_IF_ERROR(persist(**node, access));
    inodes_.erase_if_unused(ino);
  }
  {
    auto txn = store_.meta->begin(true, &access.store_keys());
    if (!txn.ok()) return txn.status();
    for (const Id128& id : done) CMKFS_RETURN_IF_ERROR(txn->remove_pending_removal(id));
    for (uint64_t ino : writing) CMKFS_RETURN_IF_ERROR(txn->remove_writing(ino));
    if (unauthentic > 0) CMKFS_RETURN_IF_ERROR(txn->unauthentic_recovery_notes(/*remove=*/true).status());
    CMKFS_RETURN_IF_ERROR(txn->commit());
  }
  CMKFS_RETURN_IF_ERROR(store_.meta->sync());
  if (store_.creations) CMKFS_RETURN_IF_ERROR(store_.creations->clear());
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
  if (removed + leaked + trimmed > 0) {
    spdlog::warn("recovered from an unclean stop in {} ms: {} deleted files' objects removed, {} objects of "
                 "creates that never committed removed, {} files cut back to what their objects hold ({} creates, {} "
                 "written files and {} removals were in flight)",
                 ms, removed, leaked, trimmed, created.size(), writing.size(), pending.size());
  }
  return Status::Ok();
}

}  // namespace cmkfs::fs
