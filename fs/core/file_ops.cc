// Filesystem: open files — open, create, read, write, flush, fsync, release.
#include <fcntl.h>
#include <spdlog/spdlog.h>

#include "fs/core/chunk_file.h"
#include "fs/core/filesystem.h"

namespace cmkfs::fs {
namespace {

// A file key seals at most this many chunks: 2^32 random 96-bit nonces keep the chance of a
// repeat below 2^-32 (NIST SP 800-38D, 8.3).
constexpr uint64_t kMaxChunkWritesPerKey = uint64_t{1} << 32;

// The handle counts each inode keeps (Filesystem::open, new_handle, release) by this.
bool for_writing(int flags) { return (flags & O_ACCMODE) != O_RDONLY; }

}  // namespace

int Filesystem::open(uint64_t ino, int flags, Handle** out, bool* cache_stale, bool direct_reads) {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  auto loaded = node_of(ino, access);
  if (!loaded.ok()) return fail(loaded.status(), "open", ino);
  std::shared_ptr<Inode> node = *loaded;
  if (!S_ISREG(node->snapshot().mode)) return S_ISDIR(node->snapshot().mode) ? EISDIR : EINVAL;
  bool stale = false;
  std::optional<Id128> held;
  if (follower_) {
    int err = follow_open(ino, *node, access, &held, &stale);
    if (err != 0) return err;
  }
  // Also when the feed reloaded it first and has not yet told the kernel. Only an open for the
  // kernel (the registry view's own opens tell it nothing) takes the flag.
  if (follower_ && cache_stale != nullptr && node->kernel_stale.exchange(false)) stale = true;
  if (cache_stale != nullptr) *cache_stale = stale;
  auto unheld = [&](int err) {  // an open that fails lets its hold go
    if (held) (void)store_.meta->release_hold(*held);
    return err;
  };
  std::unique_lock<std::shared_mutex> g(node->data_mu);
  Status s = ensure_object(*node, access);
  if (!s.ok()) return unheld(fail(s, "open", ino));
  // Linux truncates on O_TRUNC also with O_RDONLY (it asks for write permission): the kernel has
  // made the file empty already, and so must this.
  if ((flags & O_TRUNC) && !follower_ && node->snapshot().size > 0) {
    if (int err = resize(*node, 0, access); err != 0) return unheld(err);
  }
  bool direct = for_writing(flags) ? node->direct_readers > 0 : direct_reads && node->writable_handles == 0;
  inodes_.opened(*node);
  *out = new_handle(node, flags, direct);
  (*out)->held = held;
  return 0;
}

// A follower's open holds the file's object (the writer keeps an object a live follower holds,
// and removes a deleted file's only after its delete committed), then reads the record again
// (close-to-open: what the writer last saved). A record still there names an object that stays
// while held; one gone was deleted meanwhile. Without a hold (the database unreachable) the file
// still reads, as long as the writer leaves its object.
int Filesystem::follow_open(uint64_t ino, Inode& node, const Keyring::Access& access, std::optional<Id128>* held,
                            bool* stale) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    Id128 id = node.snapshot().file_id;
    Status h = store_.meta->hold(id);
    if (!h.ok()) {
      spdlog::warn("inode {}: the writer cannot be told this file is open here ({}); a delete there ends its reads",
                   ino, h.message());
      *stale = reload(ino, access) || *stale;
      return 0;
    }
    bool gone = false;
    *stale = reload(ino, access, &gone) || *stale;
    if (gone) return (void)store_.meta->release_hold(id), ENOENT;
    if (node.snapshot().file_id == id) {
      *held = id;
      return 0;
    }
    (void)store_.meta->release_hold(id);  // moved to a new object (a rotation) meanwhile: hold that one
  }
  return EAGAIN;  // moved on every try
}

// REQUIRES: node->data_mu held exclusively, or the inode not yet published.
Handle* Filesystem::new_handle(std::shared_ptr<Inode> node, int flags, bool direct) {
  node->writable_handles += for_writing(flags) ? 1 : 0;
  node->direct_readers += direct && !for_writing(flags) ? 1 : 0;
  auto* h = new Handle{std::move(node), flags, std::nullopt, direct};
  std::lock_guard<std::mutex> g(handles_mu_);
  handles_.insert(h);
  return h;
}

int Filesystem::create(uint64_t parent, std::string_view name, uint32_t mode, int flags, const Caller& c,
                       meta::InodeRecord* out, Handle** handle) {
  meta::InodeRecord rec;
  rec.mode = S_IFREG | (mode & 07777);
  rec.nlink = 1;
  std::shared_ptr<Inode> node;
  if (int err = make_node(parent, name, rec, c, out, &node); err != 0) return err;  // open already
  std::unique_lock<std::shared_mutex> g(node->data_mu);  // published: its counts of handles
  *handle = new_handle(node, flags, false);
  return 0;
}

int Filesystem::read(Handle* h, uint64_t offset, crypto::MutableBytes buf, size_t* n) {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  Inode& node = *h->node;
  std::shared_lock<std::shared_mutex> g(node.data_mu);
  meta::InodeRecord rec = node.snapshot();
  if (node.lost.first_in(offset, offset + buf.size()) < offset + buf.size()) {
    // Not a short read: the kernel would fill the rest with zeros.
    return fail(Status(EIO, "a write failed after the writer was told it had succeeded (writeback "
                            "cache); its bytes read as EIO until written again"),
                "read", rec.ino);
  }
  auto fc = file_crypto(access, rec);
  if (!fc.ok()) return fail(fc.status(), "read", rec.ino);
  auto got = read_chunks(chunks(*node.object, *fc), rec.size, offset, buf);
  if (!got.ok()) return fail(got.status(), "read", rec.ino);
  *n = *got;
  return 0;
}

int Filesystem::write(Handle* h, uint64_t offset, crypto::Bytes data, size_t* n) {
  auto access = keyring_.access();  // before data_mu, as everywhere
  Inode& node = *h->node;
  std::unique_lock<std::shared_mutex> g(node.data_mu);
  int err = access.ok() ? write_locked(node, access, h->flags, offset, data) : EACCES;
  if (err == 0) node.lost.forget(offset, offset + data.size());
  else if (writeback_cache_) node.lost.add(offset, offset + data.size());
  *n = err == 0 ? data.size() : 0;
  return err;
}

int Filesystem::write_locked(Inode& node, const Keyring::Access& access, int flags, uint64_t offset,
                             crypto::Bytes data) {
  meta::InodeRecord rec = node.snapshot();
  if ((flags & O_APPEND) && !writeback_cache_) offset = rec.size;
  if (rec.chunk_writes >= kMaxChunkWritesPerKey) {
    return fail(Status(EFBIG, "the file's key has sealed 2^32 chunks; copy the file to renew it"), "write", rec.ino);
  }
  auto fc = file_crypto(access, rec);
  if (!fc.ok()) return fail(fc.status(), "write", rec.ino);
  if (Status s = note_writing(node, access); !s.ok()) return fail(s, "write", rec.ino);
  auto attempt = [&] {
    auto w = write_chunks(chunks(*node.object, *fc), rec.size, offset, data);
    // A failed write may have extended the object (ENOSPC midway): cut it back to the old size.
    if (!w.ok()) (void)node.object->truncate(layout_.phys_size(rec.size));
    return w;
  };
  auto w = attempt();
  // Deleted files give their space back once their unlink is on disk (within the commit
  // interval): on ENOSPC write that now and try once more, as ext4 commits its journal.
  if (!w.ok() && w.status().code() == ENOSPC && store_.meta->sync().ok()) w = attempt();
  if (!w.ok()) return fail(w.status(), "write", rec.ino);
  meta::Timespec now = now_timespec();
  node.update([&](meta::InodeRecord& r) {
    r.size = w->new_size;
    // With the writeback cache the kernel keeps the times and sends them in a SETATTR when
    // write(2) moved them: stamping them here would store times nobody was shown.
    if (!writeback_cache_) r.mtime = r.ctime = now;
    r.chunk_writes += w->chunks_sealed;
    if (w->made_hole) r.flags |= meta::kInodeMayBeSparse;
    r.mode &= ~static_cast<uint32_t>(S_ISUID);  // a write drops set-user-ID, as on local filesystems
  });
  return 0;
}

int Filesystem::fsync(Handle* h, bool /*datasync: the size is metadata a reader needs*/) {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  Inode& node = *h->node;
  {
    std::shared_lock<std::shared_mutex> g(node.data_mu);
    Status s = node.object->sync();
    if (!s.ok()) return fail(s, "fsync", node.rec.ino);
  }
  Status s = persist(node, access);
  if (s.ok()) s = store_.meta->sync();
  return s.ok() ? 0 : fail(s, "fsync", node.rec.ino);
}

int Filesystem::flush(Handle* h) {
  auto access = keyring_.access();
  if (!access.ok()) return EACCES;
  Status s = persist(*h->node, access);
  return s.ok() ? 0 : fail(s, "flush", h->node->snapshot().ino);
}

void Filesystem::release(Handle* h) {
  std::shared_ptr<Inode> node = std::move(h->node);
  if (h->held) {
    Status s = store_.meta->release_hold(*h->held);
    if (!s.ok()) spdlog::warn("inode {}: the writer is not told this file was closed here: {}", node->snapshot().ino, s.message());
  }
  {
    std::lock_guard<std::mutex> g(handles_mu_);
    handles_.erase(h);
  }
  bool writable = for_writing(h->flags), direct_reader = h->direct && !writable;
  delete h;
  bool unused;
  std::optional<Id128> moved_hold;
  {
    std::unique_lock<std::shared_mutex> g(node->data_mu);
    node->writable_handles -= writable ? 1 : 0;
    node->direct_readers -= direct_reader ? 1 : 0;
    unused = inodes_.closed(*node);
    if (!inodes_.is_open(*node)) {
      node->object.reset();
      moved_hold = std::exchange(node->moved_hold, std::nullopt);
    }
  }
  if (moved_hold) (void)store_.meta->release_hold(*moved_hold);
  // A changed size is committed by the next periodic flush (within a second, batched with every
  // other change), or at once if the kernel has let go of the inode too. fsync(2) commits at once.
  if (unused) drop_if_unused(node);
}

}  // namespace cmkfs::fs
