// fs/core: the POSIX filesystem over a store. One method per FUSE operation, each returning 0 or
// an errno; fs/fuse turns them into FUSE replies (exactly one per request). Nothing here knows
// FUSE, so tests drive the operations directly (tests/fs/core/filesystem_test.cc).
//
// While the keyring is revoked every operation answers EACCES, except statfs, getattr of the
// root, forget and release.
//
// Thread-safety: all operations may run concurrently (see inode_table.h for the lock order).
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <array>
#include <atomic>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>

#include "crypto/chunk_layout.h"
#include "fs/core/chunk_file.h"
#include "fs/core/file_crypto.h"
#include "fs/core/inode_table.h"
#include "fs/core/parallel.h"
#include "fs/store/store.h"

namespace cmkfs::fs {

struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// An open file: what fuse_file_info::fh points to.
struct Handle {
  std::shared_ptr<Inode> node;
  int flags = 0;
  std::optional<Id128> held;  // a follower's: the object the writer is told this file reads
  bool direct = false;        // the kernel is to bypass its page cache for this handle (open())
};

// What setattr changes (a subset of FUSE_SET_ATTR_*, decoded by the bridge).
struct AttrChange {
  std::optional<uint32_t> mode, uid, gid;
  std::optional<uint64_t> size;
  std::optional<meta::Timespec> atime, mtime;  // "now" already resolved
  std::optional<meta::Timespec> ctime;         // the kernel's, with the writeback cache; else now
};

// Deleted files' objects another process of the store still reads (Filesystem::held_removals_).
struct HeldRemovals {
  std::mutex mu;
  std::vector<std::pair<Id128, uint64_t>> objects;  // and the inode each was of (0: not known)

  // Keeps the object of `id` for a later flush if another process of the store holds it, or if
  // that cannot be told now (`warn`: say why then); true when kept.
  bool keep_if_held(meta::MetaStore& meta, const Id128& id, uint64_t ino, bool warn);
};

class Filesystem {
 public:
  Filesystem(OpenStore& store, Keyring& keyring, size_t inode_cache = InodeTable::kDefaultCapacity);
  // Reaps inodes left unlinked-but-open by an earlier mount and finds the next inode number.
  Status start();
  // Writes every changed inode and syncs: after this the store is consistent on disk.
  Status shutdown();
  // Commits every changed inode in one transaction (no sync); run periodically so that times and
  // the sizes of files held open never lag far behind in LMDB. Drops the saved inodes the kernel
  // no longer holds.
  Status flush_dirty();

  int lookup(uint64_t parent, std::string_view name, meta::InodeRecord* out);
  void forget(uint64_t ino, uint64_t n);
  int getattr(uint64_t ino, meta::InodeRecord* out);
  int setattr(uint64_t ino, const AttrChange& change, Handle* h, meta::InodeRecord* out);
  int readlink(uint64_t ino, std::string* out);
  int statfs(struct statvfs* out);

  int mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev, const Caller& c,
            meta::InodeRecord* out);
  int mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& c, meta::InodeRecord* out);
  int symlink(std::string_view target, uint64_t parent, std::string_view name, const Caller& c,
              meta::InodeRecord* out);
  int link(uint64_t ino, uint64_t parent, std::string_view name, meta::InodeRecord* out);
  int unlink(uint64_t parent, std::string_view name);
  int rmdir(uint64_t parent, std::string_view name);
  int rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
             unsigned flags);
  int opendir(uint64_t ino);
  // Calls fn(name, ino, type, next_offset) per entry after `offset` until it returns false.
  using DirFiller = std::function<bool(std::string_view, uint64_t, uint32_t, uint64_t)>;
  int readdir(uint64_t ino, uint64_t offset, const DirFiller& fn);

  // A follower's open reloads the record (close-to-open); *cache_stale then says whether what the
  // kernel may have cached of the file (attributes, pages) is older than it.
  // `direct_reads`: a read-only open is direct ((*out)->direct) unless the file is open for
  // writing; a writable open is direct while a direct reader has it open. A direct reader then
  // never waits on the kernel's cached writes: their size would reach this process only at
  // write-back, and a read past it would end early.
  int open(uint64_t ino, int flags, Handle** out, bool* cache_stale = nullptr, bool direct_reads = false);
  int create(uint64_t parent, std::string_view name, uint32_t mode, int flags, const Caller& c,
             meta::InodeRecord* out, Handle** handle);
  int read(Handle* h, uint64_t offset, crypto::MutableBytes buf, size_t* n);
  int write(Handle* h, uint64_t offset, crypto::Bytes data, size_t* n);
  int fsync(Handle* h, bool datasync);
  // close(2) of a store other mounts follow: commits the file's size and times if they changed
  // (no sync), so that whoever opens it next, anywhere, reads what was written.
  int flush(Handle* h);
  void release(Handle* h);
  int fsyncdir();

  // Data-key rotation (rekey.cc): moves files and records still under an older data-key
  // generation to the current one, a bounded step at a time, while the filesystem serves. A file
  // is copied into a new object under the current key and its inode switched in one commit (its
  // readers and writers wait meanwhile); records are resealed in place. Resumable: each step
  // starts from what the store holds.
  struct RekeyProgress {
    uint64_t files_left = 0;        // files still under an older generation
    uint64_t files_moved = 0;       // by this step
    uint64_t records_resealed = 0;  // by this step
    bool done = false;              // nothing under an older generation remains
  };
  Result<RekeyProgress> rekey_step(size_t max_files, size_t max_records);

  uint32_t block_size() const { return layout_.chunk_size(); }
  // With the writeback cache the kernel turns O_APPEND writes into writes at its end of file, and
  // a failed write loses bytes the writer was told were written (see lost_ranges.h).
  void set_writeback_cache(bool on) { writeback_cache_ = on; }
  // Every inode the kernel may cache, for invalidation after a revocation.
  std::vector<uint64_t> known_inodes();

  // A follower serves a store another process writes (metadata in PostgreSQL): it writes nothing
  // (start() repairs nothing, the mount is read-only), reloads a file's record when it is opened
  // (close-to-open), and takes the writer's changes from the change feed. Before start().
  void set_follower(bool on) { follower_ = on; }
  bool follower() const { return follower_; }
  // A payload of the change feed (meta.h): reloads the records of the inodes it names, and
  // returns what the kernel must forget (its cached attributes, pages and names).
  Result<meta::MetaStore::Changes> apply_changes(std::string_view payload);
  // Requests answered EIO so far (chunks that did not authenticate, I/O errors of the store).
  uint64_t io_errors() const { return io_errors_.load(std::memory_order_relaxed); }
  // Inodes the kernel has references to, or open: whole in memory, and held as a count only.
  size_t inodes_in_memory() { return inodes_.size(); }
  size_t inodes_demoted() { return inodes_.demoted(); }

 private:
  // The inode, from the table or loaded from LMDB (without adding a kernel reference).
  Result<std::shared_ptr<Inode>> node_of(uint64_t ino, const Keyring::Access& access);
  // Loads an inode's record through a read transaction begun when called (see InodeTable::get).
  InodeTable::Loader loader(uint64_t ino, const Keyring::Access& access);
  Status persist(Inode& node, const Keyring::Access& access);  // save() of one, if it changed
  // A follower's: the store's record. False when it held the record already; true when the
  // record changed or was not in memory to compare.
  bool reload(uint64_t ino, const Keyring::Access& access, bool* gone = nullptr);  // *gone: no record now
  // Part of reload: an open file's record names a new object. Locks *data when it swaps.
  bool follow_move(uint64_t ino, Inode& node, const meta::InodeRecord& rec, const Keyring::Access& access,
                   std::unique_lock<std::shared_mutex>* data);
  // Notes in the store's recovery table that the file is being written, once per open-to-save
  // span. REQUIRES: data_mu held exclusively.
  Status note_writing(Inode& node, const Keyring::Access& access);
  // Repairs what a crash of an earlier mount left (recovery.cc); part of start().
  Status recover(const Keyring::Access& access);
  // Commits the changes of `nodes` (those still changed) in one write transaction.
  Status save(const std::vector<Inode*>& nodes, const Keyring::Access& access);
  void drop_if_unused(const std::shared_ptr<Inode>& node);
  Status reap(uint64_t ino, const Keyring::Access& access);
  void remove_object_when_durable(const meta::InodeRecord& rec);
  // Removes the objects whose removal waited for another process to let go of them.
  void retry_held_removals();
  // Opens the node's object. REQUIRES: data_mu held exclusively.
  Status ensure_object(Inode& node, const Keyring::Access& access, bool recovering = false);
  Result<FileCrypto> file_crypto(const Keyring::Access& a, const meta::InodeRecord& rec) const {
    return fs::file_crypto(a, store_id_, rec);
  }
  ChunkFile chunks(ObjectFile& object, const FileCrypto& fc) const { return fc.chunks(object, layout_); }
  // `opened` non-null: the caller opens the new file, which is published open, with its object.
  int make_node(uint64_t parent, std::string_view name, meta::InodeRecord rec, const Caller& c,
                meta::InodeRecord* out, std::shared_ptr<Inode>* opened);
  int resize(Inode& node, uint64_t size, const Keyring::Access& a);  // REQUIRES: data_mu exclusive
  int write_locked(Inode& node, const Keyring::Access& a, int flags, uint64_t offset,
                   crypto::Bytes data);  // REQUIRES: data_mu exclusive, a.ok()
  int remove_name(uint64_t parent, std::string_view name, bool dir_wanted);
  void forget_on_disk(Inode& node);  // REQUIRES: its record was deleted
  int fail(const Status& s, const char* op, uint64_t ino);  // logs, returns the errno

  Handle* new_handle(std::shared_ptr<Inode> node, int flags, bool direct);
  // A follower's open of a regular file: holds its object, then reads its record again.
  int follow_open(uint64_t ino, Inode& node, const Keyring::Access& access, std::optional<Id128>* held, bool* stale);
  Status rekey_file(uint64_t ino, const Keyring::Access& access);

  // Data-key rotation state, for the generation it works towards. Guarded by rekey_mu_.
  std::mutex rekey_mu_;
  uint32_t rekey_generation_ = 0;
  bool rekey_scanned_ = false;
  bool rekey_pass_worked_ = true;  // the current pass moved or resealed something
  std::vector<uint64_t> rekey_queue_;  // files found under an older generation, not yet moved
  meta::Txn::ResealCursor reseal_cursor_;

  OpenStore& store_;
  Keyring& keyring_;
  // Handles the kernel has not released; those left at unmount are freed by shutdown().
  std::mutex handles_mu_;
  // A follower reloads an inode from the feed's thread and at open(2): one at a time per inode
  // (striped), so the later read of the store is the one kept, never an older record over a newer.
  std::array<std::mutex, 64> reload_mu_;
  std::unordered_set<Handle*> handles_;
  crypto::ChunkLayout layout_;
  const Id128 store_id_;  // a copy: the key monitor may replace store_.super
  bool writeback_cache_ = false;
  bool follower_ = false;
  // Deleted files' objects another process of the store still reads (a follower's open file):
  // kept until it lets go, then removed by a flush. Shared with the committer's callbacks.
  std::shared_ptr<HeldRemovals> held_removals_;
  // A follower's: renewing its holds failed (told once). Flushes run on the flusher and in fsyncdir.
  std::atomic<bool> holds_unrenewed_{false};
  InodeTable inodes_;
  std::atomic<uint64_t> next_ino_{0};
  std::atomic<uint64_t> io_errors_{0};
};

meta::Timespec now_timespec();

// Reading a file without a mount (fsck, inspect): calls fn with a regular file's plaintext, in
// order, in windows of up to 1 MiB, through the mount's own read path. EIO when a chunk does not
// authenticate, ENOENT when the object is missing. REQUIRES: the keyring holds the store's key.
Status read_plaintext(OpenStore& store, Keyring& keyring, const meta::InodeRecord& rec,
                      const std::function<void(crypto::Bytes)>& fn);
// The same from an object already open.
Status read_plaintext(OpenStore& store, Keyring& keyring, ObjectFile& object, const meta::InodeRecord& rec,
                      const std::function<void(crypto::Bytes)>& fn);

}  // namespace cmkfs::fs
