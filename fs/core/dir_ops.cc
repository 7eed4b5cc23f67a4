// Filesystem: operations on names — create, link, unlink, rename, readdir.
#include <spdlog/spdlog.h>

#include <cstdio>

#include "fs/core/filesystem.h"
#include "fs/core/inode_writer.h"

namespace cmkfs::fs {
namespace {

int check_name(std::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos) return EINVAL;
  return name.size() > 255 ? ENAMETOOLONG : 0;
}

uint32_t type_of(uint32_t mode) { return mode & S_IFMT; }

// A directory's times after a name in it changed. Kept in memory and saved by the next flush,
// like a file's times: rewriting the directory's record in every create and unlink cost a page or
// two per transaction. A crash loses at most the last second of them, never a name or a link.
void touch_dir(Inode& dir, meta::Timespec now) {
  dir.update([now](meta::InodeRecord& r) { r.mtime = r.ctime = now; });
}

}  // namespace

int Filesystem::make_node(uint64_t parent, std::string_view name, meta::InodeRecord rec, const Caller& c,
                          meta::InodeRecord* out, std::shared_ptr<Inode>* opened) {
  if (int err = check_name(name); err != 0) return err;
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto txn = store_.meta->begin(true, &access.store_keys());
  if (!txn.ok()) return fail(txn.status(), "create", parent);
  auto dir = inodes_.get(parent, *txn);
  if (!dir.ok()) return fail(dir.status(), "create", parent);
  meta::InodeRecord prec = (*dir)->snapshot();
  if (!S_ISDIR(prec.mode)) return ENOTDIR;

  meta::Timespec now = now_timespec();
  rec.ino = next_ino_++;
  rec.uid = c.uid;
  rec.gid = c.gid;
  if (prec.mode & S_ISGID) {  // BSD group semantics under a setgid directory
    rec.gid = prec.gid;
    if (S_ISDIR(rec.mode)) rec.mode |= S_ISGID;
  }
  rec.atime = rec.mtime = rec.ctime = now;
  bool is_dir = S_ISDIR(rec.mode);
  if (is_dir) rec.parent = parent;
  std::unique_ptr<ObjectFile> object;
  int noted = -1;  // the creation log's ticket (crash recovery finds the object if the create is lost)
  if (S_ISREG(rec.mode)) {
    rec.dek_generation = access.generation();
    Status s = crypto::random_bytes(rec.file_id);
    if (!s.ok()) return fail(s, "create", parent);
    if (store_.creations) {
      auto ticket = store_.creations->note(rec.ino, rec.file_id, access.store_keys().name);
      if (!ticket.ok()) return fail(ticket.status(), "create", parent);
      noted = *ticket;
    }
    auto obj = store_.objects->open(rec.file_id, /*create=*/true);
    if (!obj.ok()) {
      if (noted >= 0) store_.creations->committed(noted);
      return fail(obj.status(), "create", parent);
    }
    object = std::move(*obj);
  }
  Status s = txn->add_entry(parent, name, rec.ino, type_of(rec.mode));
  if (s.ok()) s = txn->put_inode(rec);
  // A new file is being written: until its size is saved, a crash may leave its object longer.
  if (s.ok() && S_ISREG(rec.mode)) s = txn->add_writing(rec.ino);
  InodeWriter writer(*txn);
  if (s.ok() && is_dir) s = writer.stage(*dir, [](meta::InodeRecord& r) { ++r.nlink; });
  std::shared_ptr<Inode> node;
  if (s.ok()) {
    // In the table before any other transaction can find the new inode's number.
    s = writer.commit([&] {
      // Open from the moment another thread can find it: a release or a flush in between would
      // close its object or end its writing note under the caller.
      node = inodes_.insert(rec, 1, opened != nullptr ? 1 : 0);
      node->mark_saved(node->change_seq);
      if (opened != nullptr) node->object = std::move(object);  // else closed: nobody has it open
      node->writing_noted = S_ISREG(rec.mode);
    });
  }
  if (noted >= 0) store_.creations->committed(noted);
  if (!s.ok()) {
    if (S_ISREG(rec.mode)) (void)store_.objects->remove(rec.file_id);
    return s.code() == EEXIST ? EEXIST : fail(s, "create", parent);
  }
  touch_dir(**dir, now);
  *out = rec;
  if (opened != nullptr) *opened = node;
  return 0;
}

int Filesystem::mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev, const Caller& c,
                      meta::InodeRecord* out) {
  uint32_t type = mode & S_IFMT;
  if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR && type != S_IFBLK) return EINVAL;
  meta::InodeRecord rec;
  rec.mode = mode;
  rec.rdev = rdev;
  rec.nlink = 1;
  return make_node(parent, name, rec, c, out, nullptr);
}

int Filesystem::mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& c,
                      meta::InodeRecord* out) {
  meta::InodeRecord rec;
  rec.mode = S_IFDIR | (mode & 07777);
  rec.nlink = 2;
  rec.size = 4096;
  return make_node(parent, name, rec, c, out, nullptr);
}

int Filesystem::symlink(std::string_view target, uint64_t parent, std::string_view name, const Caller& c,
                        meta::InodeRecord* out) {
  if (target.size() > 4095) return ENAMETOOLONG;
  meta::InodeRecord rec;
  rec.mode = S_IFLNK | 0777;
  rec.nlink = 1;
  rec.symlink = std::string(target);
  rec.size = target.size();
  return make_node(parent, name, rec, c, out, nullptr);
}

int Filesystem::link(uint64_t ino, uint64_t parent, std::string_view name, meta::InodeRecord* out) {
  if (int err = check_name(name); err != 0) return err;
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto txn = store_.meta->begin(true, &access.store_keys());
  if (!txn.ok()) return fail(txn.status(), "link", ino);
  auto node = inodes_.get(ino, *txn);
  auto dir = inodes_.get(parent, *txn);
  if (!node.ok()) return fail(node.status(), "link", ino);
  if (!dir.ok()) return fail(dir.status(), "link", parent);
  meta::InodeRecord rec = (*node)->snapshot();
  if (S_ISDIR(rec.mode)) return EPERM;
  if (rec.nlink >= 65000) return EMLINK;
  meta::Timespec now = now_timespec();
  InodeWriter writer(*txn);
  Status s = txn->add_entry(parent, name, ino, type_of(rec.mode));
  if (s.ok()) s = writer.stage(*node, [now](meta::InodeRecord& r) { ++r.nlink, r.ctime = now; });
  if (s.ok()) s = writer.stage(*dir, [now](meta::InodeRecord& r) { r.mtime = r.ctime = now; });
  if (s.ok()) s = writer.commit();
  if (!s.ok()) return s.code() == EEXIST ? EEXIST : fail(s, "link", ino);
  inodes_.add_lookups(**node, 1);  // the kernel's reference through the new name
  *out = (*node)->snapshot();
  return 0;
}

int Filesystem::unlink(uint64_t parent, std::string_view name) { return remove_name(parent, name, false); }
int Filesystem::rmdir(uint64_t parent, std::string_view name) { return remove_name(parent, name, true); }

int Filesystem::remove_name(uint64_t parent, std::string_view name, bool dir_wanted) {
  if (name.size() > 255) return ENAMETOOLONG;
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto txn = store_.meta->begin(true, &access.store_keys());
  if (!txn.ok()) return fail(txn.status(), "unlink", parent);
  auto entry = txn->lookup(parent, name);
  if (!entry.ok()) return entry.status().code() == ENOENT ? ENOENT : fail(entry.status(), "unlink", parent);
  bool is_dir = entry->type == S_IFDIR;
  if (is_dir != dir_wanted) return is_dir ? EISDIR : ENOTDIR;
  if (is_dir) {
    auto any = txn->has_entries(entry->ino);
    if (!any.ok()) return fail(any.status(), "rmdir", entry->ino);
    if (*any) return ENOTEMPTY;
  }
  auto child = inodes_.get(entry->ino, *txn);
  auto dir = inodes_.get(parent, *txn);
  if (!child.ok()) return fail(child.status(), "unlink", entry->ino);
  if (!dir.ok()) return fail(dir.status(), "unlink", parent);
  meta::Timespec now = now_timespec();
  std::shared_ptr<Inode> node = *child;
  bool gone = is_dir || node->snapshot().nlink <= 1;
  // A last link to a file nobody has open goes at once, record and all; one still open stays as
  // an orphan until its release (or the next mount, after a crash).
  bool delete_now = gone && !inodes_.is_open(*node);
  InodeWriter writer(*txn);
  Status s = txn->remove_entry(parent, name);
  if (s.ok() && gone) s = delete_now ? txn->delete_inode(entry->ino) : txn->add_orphan(entry->ino);
  // The object goes after this commit is durable: noted, so that a crash in between cannot leak it.
  if (s.ok() && delete_now && !is_dir && S_ISREG(node->snapshot().mode)) {
    s = txn->add_pending_removal(node->snapshot().file_id);
  }
  if (s.ok() && !delete_now) {
    s = writer.stage(node, [is_dir, now](meta::InodeRecord& r) {
      r.nlink = is_dir ? 0 : r.nlink - 1;
      r.ctime = now;
    });
  }
  if (s.ok() && is_dir) s = writer.stage(*dir, [](meta::InodeRecord& r) { --r.nlink; });
  if (s.ok()) s = writer.commit();
  if (!s.ok()) return fail(s, "unlink", parent);
  touch_dir(**dir, now);
  if (delete_now) {
    node->update([now](meta::InodeRecord& r) {
      r.nlink = 0;
      r.ctime = now;
    });
    forget_on_disk(*node);
    inodes_.erase_if_unused(entry->ino);  // loaded just for this unlink: the kernel never knew it
  }
  return 0;
}

// After a record was deleted: the object goes too, unless someone opened the file meanwhile; then
// its last release removes it.
void Filesystem::forget_on_disk(Inode& node) {
  std::unique_lock<std::shared_mutex> g(node.data_mu);
  meta::InodeRecord rec = node.snapshot();
  bool object_stays = S_ISREG(rec.mode) && inodes_.is_open(node);
  node.set_disk_state(object_stays ? Inode::OnDisk::kObjectOnly : Inode::OnDisk::kNothing);
  if (S_ISREG(rec.mode) && !object_stays) remove_object_when_durable(rec);
}

int Filesystem::rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                       unsigned flags) {
  if (int err = check_name(new_name); err != 0) return err;
  if (name.size() > 255) return ENAMETOOLONG;
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE)) return EINVAL;  // RENAME_EXCHANGE, WHITEOUT
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto txn = store_.meta->begin(true, &access.store_keys());
  if (!txn.ok()) return fail(txn.status(), "rename", parent);
  auto src = txn->lookup(parent, name);
  if (!src.ok()) return src.status().code() == ENOENT ? ENOENT : fail(src.status(), "rename", parent);
  auto dst = txn->lookup(new_parent, new_name);
  if (!dst.ok() && dst.status().code() != ENOENT) return fail(dst.status(), "rename", new_parent);
  bool replacing = dst.ok();
  if (replacing && (flags & RENAME_NOREPLACE)) return EEXIST;
  if (replacing && dst->ino == src->ino) return 0;  // two links to one file: nothing to do
  bool src_dir = src->type == S_IFDIR;
  if (replacing) {
    bool dst_dir = dst->type == S_IFDIR;
    if (src_dir && !dst_dir) return ENOTDIR;
    if (!src_dir && dst_dir) return EISDIR;
    if (dst_dir) {
      auto any = txn->has_entries(dst->ino);
      if (!any.ok()) return fail(any.status(), "rename", dst->ino);
      if (*any) return ENOTEMPTY;
    }
  }
  auto moved = inodes_.get(src->ino, *txn);
  auto from = inodes_.get(parent, *txn);
  auto to = inodes_.get(new_parent, *txn);
  if (!moved.ok() || !from.ok() || !to.ok()) {
    return fail(!moved.ok() ? moved.status() : !from.ok() ? from.status() : to.status(), "rename", parent);
  }
  std::shared_ptr<Inode> victim;
  if (replacing) {
    auto v = inodes_.get(dst->ino, *txn);
    if (!v.ok()) return fail(v.status(), "rename", dst->ino);
    victim = *v;
  }
  meta::Timespec now = now_timespec();
  bool cross = parent != new_parent;
  bool victim_gone = replacing && (dst->type == S_IFDIR || victim->snapshot().nlink <= 1);

  InodeWriter writer(*txn);
  Status s = Status::Ok();
  if (replacing) {
    s = txn->remove_entry(new_parent, new_name);
    if (s.ok() && victim_gone) s = txn->add_orphan(dst->ino);
    bool vdir = dst->type == S_IFDIR;
    if (s.ok()) {
      s = writer.stage(victim, [vdir, now](meta::InodeRecord& r) {
        r.nlink = vdir ? 0 : r.nlink - 1;
        r.ctime = now;
      });
    }
  }
  if (s.ok()) s = txn->remove_entry(parent, name);
  if (s.ok()) s = txn->add_entry(new_parent, new_name, src->ino, src->type);
  if (s.ok()) {
    s = writer.stage(*moved, [src_dir, new_parent, now](meta::InodeRecord& r) {
      if (src_dir) r.parent = new_parent;
      r.ctime = now;
    });
  }
  // Directory link counts: a moved directory's ".." leaves `parent` for `new_parent`; a replaced
  // directory's ".." leaves `new_parent`.
  bool dst_dir_gone = replacing && dst->type == S_IFDIR;
  if (s.ok()) {
    s = writer.stage(*from, [src_dir, cross, dst_dir_gone, now](meta::InodeRecord& r) {
      if (src_dir && cross) --r.nlink;
      if (dst_dir_gone && !cross) --r.nlink;
      r.mtime = r.ctime = now;
    });
  }
  if (s.ok() && cross) {
    s = writer.stage(*to, [src_dir, dst_dir_gone, now](meta::InodeRecord& r) {
      if (src_dir) ++r.nlink;
      if (dst_dir_gone) --r.nlink;
      r.mtime = r.ctime = now;
    });
  }
  if (s.ok()) s = writer.commit();
  if (!s.ok()) return fail(s, "rename", parent);
  if (victim_gone) {
    uint64_t ino = victim->snapshot().ino;
    victim.reset();
    inodes_.erase_if_unused(ino);
    if (!inodes_.find(ino)) {
      Status r = reap(ino, access);
      if (!r.ok()) fail(r, "rename", ino);
    }
  }
  return 0;
}

int Filesystem::opendir(uint64_t ino) {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto node = node_of(ino, access);
  if (!node.ok()) return fail(node.status(), "opendir", ino);
  return S_ISDIR((*node)->snapshot().mode) ? 0 : ENOTDIR;
}

int Filesystem::readdir(uint64_t ino, uint64_t offset, const DirFiller& fn) {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto node = node_of(ino, access);
  if (!node.ok()) return fail(node.status(), "readdir", ino);
  meta::InodeRecord rec = (*node)->snapshot();
  // Offsets: 0 start, 1 after ".", 2 after "..", then the slot of the last entry returned.
  if (offset == 0 && !fn(".", ino, S_IFDIR, 1)) return 0;
  if (offset <= 1 && !fn("..", rec.parent, S_IFDIR, 2)) return 0;
  auto txn = store_.meta->begin(false, &access.store_keys());
  if (!txn.ok()) return fail(txn.status(), "readdir", ino);
  Status s = txn->list_entries(ino, offset <= 2 ? 0 : offset, [&](const meta::DirEntry& e) {
    return fn(e.name, e.ino, e.type, e.slot);
  });
  return s.ok() ? 0 : fail(s, "readdir", ino);
}

}  // namespace cmkfs::fs
