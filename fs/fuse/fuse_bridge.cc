#include "fs/fuse/fuse_bridge.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <vector>

#include "fs/fuse/dir_reply.h"
#include "fs/fuse/fuse_uring.h"
#include "fs/fuse/read_ahead.h"

namespace cmkfs::fs {
namespace {

Bridge& bridge(fuse_req_t req) { return *static_cast<Bridge*>(fuse_req_userdata(req)); }
Filesystem& fs_of(fuse_req_t req) { return *bridge(req).fs; }
Handle* handle_of(const fuse_file_info* fi) { return reinterpret_cast<Handle*>(fi->fh); }
// Nothing is timed or counted unless someone scrapes /metrics: every request would pay for it.
OpStats* stats_of(fuse_req_t req) { return bridge(req).collect_stats ? &bridge(req).stats : nullptr; }

Caller caller(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return {c->uid, c->gid};
}

struct timespec to_timespec(const meta::Timespec& t) { return {static_cast<time_t>(t.sec), static_cast<long>(t.nsec)}; }
meta::Timespec from_timespec(const struct timespec& t) { return {t.tv_sec, static_cast<uint32_t>(t.tv_nsec)}; }

struct stat to_stat(const meta::InodeRecord& r, uint32_t block_size) {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  st.st_ino = r.ino;
  st.st_mode = r.mode;
  st.st_nlink = r.nlink;
  st.st_uid = r.uid;
  st.st_gid = r.gid;
  st.st_rdev = r.rdev;
  st.st_size = static_cast<off_t>(r.size);
  st.st_blksize = block_size;
  st.st_blocks = static_cast<blkcnt_t>((r.size + 511) / 512);
  st.st_atim = to_timespec(r.atime);
  st.st_mtim = to_timespec(r.mtime);
  st.st_ctim = to_timespec(r.ctime);
  return st;
}

fuse_entry_param entry_of(fuse_req_t req, const meta::InodeRecord& rec) {
  fuse_entry_param e{};
  e.ino = rec.ino;
  e.generation = 1;
  e.attr = to_stat(rec, fs_of(req).block_size());
  e.attr_timeout = bridge(req).config.attr_timeout;
  e.entry_timeout = bridge(req).config.entry_timeout;
  return e;
}

void reply_entry(fuse_req_t req, int err, const meta::InodeRecord& rec) {
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_entry_param e = entry_of(req, rec);
  fuse_reply_entry(req, &e);
}

void reply_attr(fuse_req_t req, int err, const meta::InodeRecord& rec) {
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct stat st = to_stat(rec, fs_of(req).block_size());
  fuse_reply_attr(req, &st, bridge(req).config.attr_timeout);
}

constexpr unsigned kMaxBackground = 64;

void ll_init(void* userdata, fuse_conn_info* conn) {
  auto* b = static_cast<Bridge*>(userdata);
  conn->max_write = b->config.max_write;
  // The kernel keeps the smaller of the mount's current window and the one in this reply, so the
  // window is raised in sysfs first and then asked for here.
  if (b->config.read_ahead > conn->max_readahead) {
    Status s = set_read_ahead(b->config.mountpoint, b->config.source, b->config.read_ahead);
    if (s.ok()) conn->max_readahead = static_cast<unsigned>(b->config.read_ahead);
    else spdlog::info("read-ahead window left at {} KiB: {}", conn->max_readahead / 1024, s.message());
  }
  // Readahead goes out as background requests, and the kernel lets 12 of them be in flight by
  // default and stops adding async readahead at 9: fio's sequential 1 MiB reads (whose
  // POSIX_FADV_SEQUENTIAL doubles the window) waited on that (docs/performance.md).
  conn->max_background = kMaxBackground;
  conn->congestion_threshold = kMaxBackground * 3 / 4;  // the kernel's own default ratio
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  // The writeback cache lets write(2) return once the data is in the page cache; the kernel
  // sends it on in large requests, at close(2) and at fsync(2). A registry upload arrives as
  // thousands of ~16 KiB writes, which the kernel merges. The price: small files get an extra
  // SETATTR (the kernel flushes times), and a full disk's ENOSPC comes from fsync(2)/close(2)
  // instead of write(2).
  if (b->config.writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    b->fs->set_writeback_cache(true);
  } else {
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE);
  }
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  spdlog::info("FUSE session: protocol {}.{}, max_write {}, read-ahead {} KiB, background {}, capabilities {:#x}",
               conn->proto_major, conn->proto_minor, conn->max_write, conn->max_readahead / 1024,
               conn->max_background, conn->want);
}

void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  OpTimer t(stats_of(req), OpStats::kLookup);
  meta::InodeRecord rec;
  int err = fs_of(req).lookup(parent, name, &rec);
  t.err = err == ENOENT ? 0 : err;
  if (err == ENOENT) {  // a negative entry: the kernel may cache the absence too
    fuse_entry_param e{};
    e.entry_timeout = bridge(req).config.entry_timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  reply_entry(req, err, rec);
}

void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  fs_of(req).forget(ino, nlookup);
  fuse_reply_none(req);
}

void ll_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) fs_of(req).forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void ll_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  OpTimer t(stats_of(req), OpStats::kGetattr);
  meta::InodeRecord rec;
  int err = t.err = fs_of(req).getattr(ino, &rec);
  reply_attr(req, err, rec);
}

void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  OpTimer t(stats_of(req), OpStats::kSetattr);
  AttrChange c;
  if (to_set & FUSE_SET_ATTR_MODE) c.mode = attr->st_mode;
  if (to_set & FUSE_SET_ATTR_UID) c.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) c.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) c.size = static_cast<uint64_t>(attr->st_size);
  meta::Timespec now = now_timespec();
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) c.atime = now;
  else if (to_set & FUSE_SET_ATTR_ATIME) c.atime = from_timespec(attr->st_atim);
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) c.mtime = now;
  else if (to_set & FUSE_SET_ATTR_MTIME) c.mtime = from_timespec(attr->st_mtim);
  if (to_set & FUSE_SET_ATTR_CTIME) c.ctime = from_timespec(attr->st_ctim);
  meta::InodeRecord rec;
  int err = t.err = fs_of(req).setattr(ino, c, fi != nullptr ? handle_of(fi) : nullptr, &rec);
  reply_attr(req, err, rec);
}

void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  std::string target;
  int err = fs_of(req).readlink(ino, &target);
  if (err != 0) fuse_reply_err(req, err);
  else fuse_reply_readlink(req, target.c_str());
}

void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  meta::InodeRecord rec;
  int err = fs_of(req).mknod(parent, name, mode, rdev, caller(req), &rec);
  reply_entry(req, err, rec);
}

void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  OpTimer t(stats_of(req), OpStats::kMkdir);
  meta::InodeRecord rec;
  int err = t.err = fs_of(req).mkdir(parent, name, mode, caller(req), &rec);
  reply_entry(req, err, rec);
}

void ll_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  meta::InodeRecord rec;
  int err = fs_of(req).symlink(link, parent, name, caller(req), &rec);
  reply_entry(req, err, rec);
}

void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  meta::InodeRecord rec;
  int err = fs_of(req).link(ino, parent, name, &rec);
  reply_entry(req, err, rec);
}

void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  OpTimer t(stats_of(req), OpStats::kUnlink);
  fuse_reply_err(req, t.err = fs_of(req).unlink(parent, name));
}

void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  OpTimer t(stats_of(req), OpStats::kRmdir);
  fuse_reply_err(req, t.err = fs_of(req).rmdir(parent, name));
}

void ll_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
               unsigned int flags) {
  OpTimer t(stats_of(req), OpStats::kRename);
  fuse_reply_err(req, t.err = fs_of(req).rename(parent, name, newparent, newname, flags));
}

void ll_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  OpTimer t(stats_of(req), OpStats::kOpen);
  Filesystem& fs = fs_of(req);  // the reply frees req, also when it fails
  Handle* h = nullptr;
  bool stale = false;
  int err = t.err = fs.open(ino, fi->flags, &h, &stale, bridge(req).direct_reads.load(std::memory_order_relaxed));
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(h);
  // Every change comes through this mount, so cached pages stay valid; a follower's are dropped
  // when open found a newer record, and its attributes too, before the first read asks for the
  // size (the feed's invalidation may come later). Attributes only: no page is locked, so it
  // cannot deadlock with this request.
  fi->keep_cache = !stale;
  // --direct-reads: read straight into the reader's buffer, no plaintext copy in the page cache,
  // which a registry serving many different blobs at once only fills and evicts
  // (docs/performance.md); and a writer beside such a reader writes through (Filesystem::open).
  fi->direct_io = h->direct;
  if (stale && bridge(req).session != nullptr) fuse_lowlevel_notify_inval_inode(bridge(req).session, ino, -1, 0);
  if (fuse_reply_open(req, fi) != 0) fs.release(h);  // interrupted: no release will come
}

void ll_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  OpTimer t(stats_of(req), OpStats::kCreate);
  meta::InodeRecord rec;
  Handle* h = nullptr;
  int err = t.err = fs_of(req).create(parent, name, mode, fi->flags, caller(req), &rec, &h);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(h);
  fi->keep_cache = 1;
  fuse_entry_param e = entry_of(req, rec);
  Filesystem& fs = fs_of(req);  // the reply frees req, also when it fails
  if (fuse_reply_create(req, &e, fi) != 0) {
    fs.release(h);
    fs.forget(rec.ino, 1);
  }
}

void ll_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  OpTimer t(stats_of(req), OpStats::kRead);
  thread_local std::vector<uint8_t> buf;
  std::span<uint8_t> out = uring_reply_space(size);  // over io_uring: decrypted straight into the ring
  if (out.empty()) {
    buf.resize(size);
    out = buf;
  }
  size_t n = 0;
  int err = t.err = fs_of(req).read(handle_of(fi), static_cast<uint64_t>(off), out, &n);
  if (err == 0 && t.stats()) t.stats()->bytes_read.fetch_add(n, std::memory_order_relaxed);
  if (err != 0) fuse_reply_err(req, err);
  else fuse_reply_buf(req, reinterpret_cast<const char*>(out.data()), n);
}

void ll_write(fuse_req_t req, fuse_ino_t, const char* data, size_t size, off_t off, fuse_file_info* fi) {
  OpTimer t(stats_of(req), OpStats::kWrite);
  bridge(req).writes.fetch_add(1, std::memory_order_relaxed);  // before the reply frees req
  size_t n = 0;
  int err = t.err = fs_of(req).write(handle_of(fi), static_cast<uint64_t>(off),
                                     {reinterpret_cast<const uint8_t*>(data), size}, &n);
  if (err == 0 && t.stats()) t.stats()->bytes_written.fetch_add(n, std::memory_order_relaxed);
  if (err != 0) fuse_reply_err(req, err);
  else fuse_reply_write(req, n);
}

void ll_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  OpTimer t(stats_of(req), OpStats::kRelease);
  fs_of(req).release(handle_of(fi));
  fuse_reply_err(req, 0);
}

void ll_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  OpTimer t(stats_of(req), OpStats::kFsync);
  fuse_reply_err(req, t.err = fs_of(req).fsync(handle_of(fi), datasync != 0));
}

void ll_flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  fuse_reply_err(req, fs_of(req).flush(handle_of(fi)));
}

void ll_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int err = fs_of(req).opendir(ino);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->cache_readdir = 0;
  fuse_reply_open(req, fi);
}

void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  OpTimer t(stats_of(req), OpStats::kReaddir);
  DirReply reply(req, size);
  int err = t.err = fs_of(req).readdir(ino, static_cast<uint64_t>(off),
                               [&](std::string_view name, uint64_t child, uint32_t type, uint64_t next) {
                                 return reply.add(name, child, type, next);
                               });
  reply.send(err);
}

void ll_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
void ll_fsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, fs_of(req).fsyncdir()); }

void ll_statfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs st;
  int err = fs_of(req).statfs(&st);
  if (err != 0) fuse_reply_err(req, err);
  else fuse_reply_statfs(req, &st);
}

fuse_lowlevel_ops make_ops(bool with_flush) {
  fuse_lowlevel_ops ops{};
  ops.init = ll_init;
  ops.lookup = ll_lookup;
  ops.forget = ll_forget;
  ops.forget_multi = ll_forget_multi;
  ops.getattr = ll_getattr;
  ops.setattr = ll_setattr;
  ops.readlink = ll_readlink;
  ops.mknod = ll_mknod;
  ops.mkdir = ll_mkdir;
  ops.symlink = ll_symlink;
  ops.link = ll_link;
  ops.unlink = ll_unlink;
  ops.rmdir = ll_rmdir;
  ops.rename = ll_rename;
  ops.open = ll_open;
  ops.create = ll_create;
  ops.read = ll_read;
  ops.write = ll_write;
  ops.release = ll_release;
  ops.fsync = ll_fsync;
  ops.opendir = ll_opendir;
  ops.readdir = ll_readdir;
  ops.releasedir = ll_releasedir;
  ops.fsyncdir = ll_fsyncdir;
  ops.statfs = ll_statfs;
  // No flush on a store of one mount: writes are never deferred, so close() has nothing to
  // report; the size is saved at release, which the application does not wait for. No xattr
  // handlers either. libfuse answers ENOSYS once for each and the kernel stops asking: two fewer
  // round trips per small file. A shared store saves at close, for the other mounts to see.
  if (with_flush) ops.flush = ll_flush;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& fuse_operations(bool save_at_close) {
  static const fuse_lowlevel_ops ops = make_ops(false);
  static const fuse_lowlevel_ops with_flush = make_ops(true);
  return save_at_close ? with_flush : ops;
}

}  // namespace cmkfs::fs
