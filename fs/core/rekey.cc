// Filesystem: data-key rotation, moving files and records to the current generation.
#include <spdlog/spdlog.h>

#include "fs/core/chunk_file.h"
#include "fs/core/filesystem.h"
#include "fs/core/inode_writer.h"

namespace cmkfs::fs {

Result<Filesystem::RekeyProgress> Filesystem::rekey_step(size_t max_files, size_t max_records) {
  auto access = keyring_.access();
  if (!access.ok()) return Status::AccessDenied("the store's key is revoked");
  uint32_t generation = access.generation();
  std::lock_guard<std::mutex> g(rekey_mu_);
  if (generation != rekey_generation_) {  // a new rotation: start over
    rekey_generation_ = generation;
    rekey_scanned_ = false;
    rekey_queue_.clear();
    reseal_cursor_ = {};
    rekey_pass_worked_ = true;
  }
  RekeyProgress p;
  if (!reseal_cursor_.done()) {
    auto txn = store_.meta->begin(true, &access.store_keys());
    if (!txn.ok()) return txn.status();
    auto n = txn->reseal_stale(&reseal_cursor_, max_records);
    if (!n.ok()) return n.status();
    CMKFS_RETURN_IF_ERROR(txn->commit());
    p.records_resealed = *n;
  }
  if (!rekey_scanned_) {
    auto txn = store_.meta->begin(false, &access.store_keys());
    if (!txn.ok()) return txn.status();
    CMKFS_RETURN_IF_ERROR(txn->for_each_inode([&](uint64_t ino, Result<meta::InodeRecord> rec) {
      if (rec.ok() && S_ISREG(rec->mode) && rec->dek_generation < generation) rekey_queue_.push_back(ino);
      return true;
    }));
    rekey_scanned_ = true;
  }
  while (!rekey_queue_.empty() && p.files_moved < max_files) {
    CMKFS_RETURN_IF_ERROR(rekey_file(rekey_queue_.back(), access));
    rekey_queue_.pop_back();
    ++p.files_moved;
  }
  p.files_left = rekey_queue_.size();
  if (p.records_resealed > 0 || p.files_moved > 0) rekey_pass_worked_ = true;
  // A file unlinked while open keeps only its object, under its generation, until released: the
  // older keys must stay until it is.
  bool open_under_older = false;
  for (const auto& node : inodes_.all()) {
    meta::InodeRecord r = node->snapshot();
    if (S_ISREG(r.mode) && r.dek_generation < generation && node->disk_state() == Inode::OnDisk::kObjectOnly) {
      open_under_older = true;
    }
  }
  if (rekey_queue_.empty() && reseal_cursor_.done() && !open_under_older) {
    // Done only after a whole pass that found nothing left: what it reports is what the store holds.
    p.done = !rekey_pass_worked_;
    if (!p.done) {
      rekey_pass_worked_ = false;
      rekey_scanned_ = false;
      reseal_cursor_ = {};
    }
  }
  return p;
}

Status Filesystem::rekey_file(uint64_t ino, const Keyring::Access& access) {
  uint32_t generation = access.generation();
  {
    auto txn = store_.meta->begin(false, &access.store_keys());
    if (!txn.ok()) return txn.status();
    auto rec = txn->get_inode(ino);
    if (!rec.ok()) return rec.status().code() == ENOENT ? Status::Ok() : rec.status();  // deleted since the scan
  }
  auto loaded = node_of(ino, access);
  if (!loaded.ok()) return loaded.status();
  std::shared_ptr<Inode> node = *loaded;
  Status s = [&]() -> Status {
    std::unique_lock<std::shared_mutex> data(node->data_mu);
    meta::InodeRecord old = node->snapshot();
    if (!S_ISREG(old.mode) || old.dek_generation >= generation || node->disk_state() != Inode::OnDisk::kRecord) {
      return Status::Ok();
    }
    CMKFS_RETURN_IF_ERROR(ensure_object(*node, access));
    meta::InodeRecord moved = old;
    CMKFS_RETURN_IF_ERROR(crypto::random_bytes(moved.file_id));
    moved.dek_generation = generation;
    moved.chunk_writes = 0;
    auto from = file_crypto(access, old);
    auto to = file_crypto(access, moved);
    if (!from.ok()) return from.status();
    if (!to.ok()) return to.status();
    auto object = store_.objects->open(moved.file_id, /*create=*/true);
    if (!object.ok()) return object.status();
    auto copy = [&]() -> Status {
      ChunkFile src = chunks(*node->object, *from), dst = chunks(**object, *to);
      crypto::PlainBuffer buf(1 << 20);
      uint64_t size = 0;
      for (uint64_t off = 0; off < old.size; off += buf.size()) {
        auto n = read_chunks(src, old.size, off, buf);
        if (!n.ok()) return n.status();
        crypto::Bytes window(buf.data(), *n);
        // A hole stays a hole (a sparse file is not written out in full).
        if ((old.flags & meta::kInodeMayBeSparse) != 0 && crypto::is_all_zero(window)) continue;
        auto w = write_chunks(dst, size, off, window);
        if (!w.ok()) return w.status();
        size = w->new_size;
        moved.chunk_writes += w->chunks_sealed;
      }
      if (size < old.size) {
        auto w = resize_chunks(dst, size, old.size);
        if (!w.ok()) return w.status();
        moved.chunk_writes += w->chunks_sealed;
      }
      return (*object)->sync();
    }();
    if (!copy.ok()) {
      (void)store_.objects->remove(moved.file_id);
      return copy;
    }
    // Switched in one commit, and only if the inode is still the one copied (an unlink may have
    // deleted its record meanwhile: it must not come back).
    auto txn = store_.meta->begin(true, &access.store_keys());
    Status committed = txn.ok() ? Status::Ok() : txn.status();
    if (committed.ok()) {
      auto on_disk = txn->get_inode(ino);
      if (!on_disk.ok() || on_disk->file_id != old.file_id) {
        (void)store_.objects->remove(moved.file_id);
        return Status::Ok();
      }
      InodeWriter writer(*txn);
      committed = txn->add_pending_removal(old.file_id);
      if (committed.ok()) committed = writer.stage(node, [&](meta::InodeRecord& r) {
        r.file_id = moved.file_id;
        r.dek_generation = moved.dek_generation;
        r.chunk_writes = moved.chunk_writes;
      });
      if (committed.ok()) committed = writer.commit();
    }
    if (!committed.ok()) {
      (void)store_.objects->remove(moved.file_id);
      return committed;
    }
    bool open = inodes_.is_open(*node);
    node->object = open ? std::move(*object) : nullptr;
    remove_object_when_durable(old);
    return Status::Ok();
  }();
  inodes_.erase_if_unused(ino);
  return s;
}

}  // namespace cmkfs::fs
