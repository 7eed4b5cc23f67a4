#include "fs/fuse/view_session.h"

#include <spdlog/spdlog.h>

#include "fs/fuse/dir_reply.h"
#include "fs/fuse/mount_table.h"
#include "fs/fuse/read_ahead.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <vector>

namespace cmkfs::fs {

// What the session's requests reach (fuse_session_new's userdata).
struct ViewContext {
  RegistryView* view;
  std::string mountpoint, source;
};

namespace {

// Names and attributes may change with every push: the kernel keeps them half a second, so a
// change shows within the view's own refresh plus this.
constexpr double kTimeout = 0.5;

RegistryView& view_of(fuse_req_t req) { return *static_cast<ViewContext*>(fuse_req_userdata(req))->view; }

// Layers are read in sequence, as through the mount: the same readahead window and background
// requests (fs/fuse/fuse_bridge.cc says why).
constexpr uint64_t kReadAhead = 4 << 20;
constexpr unsigned kMaxBackground = 64;

void v_init(void* userdata, fuse_conn_info* conn) {
  auto* c = static_cast<ViewContext*>(userdata);
  if (kReadAhead > conn->max_readahead && set_read_ahead(c->mountpoint, c->source, kReadAhead).ok()) {
    conn->max_readahead = static_cast<unsigned>(kReadAhead);
  }
  conn->max_background = kMaxBackground;
  conn->congestion_threshold = kMaxBackground * 3 / 4;
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
}
RegistryView::File* file_of(const fuse_file_info* fi) { return reinterpret_cast<RegistryView::File*>(fi->fh); }

struct stat to_stat(const ViewAttr& a) {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_rdev = a.rdev;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blksize = 1 << 20;
  st.st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  st.st_mtim = st.st_ctim = st.st_atim = {static_cast<time_t>(a.mtime.sec), static_cast<long>(a.mtime.nsec)};
  return st;
}

void v_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ViewAttr a;
  int err = view_of(req).lookup(parent, name, &a);
  if (err != 0 && err != ENOENT) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_entry_param e{};
  e.entry_timeout = kTimeout;
  if (err == 0) {
    e.ino = a.ino;
    e.generation = 1;
    e.attr = to_stat(a);
    e.attr_timeout = kTimeout;
  }
  fuse_reply_entry(req, &e);
}

void v_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  view_of(req).forget(ino, n);
  fuse_reply_none(req);
}
void v_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) view_of(req).forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void v_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  ViewAttr a;
  int err = view_of(req).getattr(ino, &a);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  struct stat st = to_stat(a);
  fuse_reply_attr(req, &st, kTimeout);
}

void v_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  RegistryView& view = view_of(req);  // the reply frees req, also when it fails
  RegistryView::File* f = nullptr;
  int err = view.open(ino, fi->flags, &f);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(f);
  fi->keep_cache = 1;  // a blob's bytes never change under its name
  if (fuse_reply_open(req, fi) != 0) view.release(f);
}

void v_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  thread_local std::vector<uint8_t> buf;
  buf.resize(size);
  size_t n = 0;
  int err = view_of(req).read(file_of(fi), static_cast<uint64_t>(off), buf, &n);
  if (err != 0) fuse_reply_err(req, err);
  else fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), n);
}

void v_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  view_of(req).release(file_of(fi));
  fuse_reply_err(req, 0);
}

void v_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  ViewAttr a;
  int err = view_of(req).getattr(ino, &a);
  if (err == 0 && !S_ISDIR(a.mode)) err = ENOTDIR;
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<uint64_t>(RegistryView::new_dir_cursor());
  if (fuse_reply_open(req, fi) != 0) RegistryView::free_dir_cursor(reinterpret_cast<RegistryView::DirCursor*>(fi->fh));
}

void v_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  DirReply reply(req, size);
  int err = view_of(req).readdir(
      ino, static_cast<uint64_t>(off),
      [&](std::string_view name, uint64_t child, uint32_t mode, uint64_t next) { return reply.add(name, child, mode, next); },
      reinterpret_cast<RegistryView::DirCursor*>(fi->fh));
  reply.send(err);
}

void v_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  RegistryView::free_dir_cursor(reinterpret_cast<RegistryView::DirCursor*>(fi->fh));
  fuse_reply_err(req, 0);
}

void v_readlink(fuse_req_t req, fuse_ino_t ino) {
  std::string target;
  int err = view_of(req).readlink(ino, &target);
  if (err != 0) fuse_reply_err(req, err);
  else fuse_reply_readlink(req, target.c_str());
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = v_init;
  ops.lookup = v_lookup;
  ops.forget = v_forget;
  ops.forget_multi = v_forget_multi;
  ops.getattr = v_getattr;
  ops.open = v_open;
  ops.read = v_read;
  ops.release = v_release;
  ops.opendir = v_opendir;
  ops.readdir = v_readdir;
  ops.releasedir = v_releasedir;
  ops.readlink = v_readlink;
  return ops;
}

}  // namespace

Result<std::unique_ptr<ViewSession>> ViewSession::start(std::unique_ptr<RegistryView> view,
                                                        const std::string& mountpoint, const std::string& source) {
  CMKFS_RETURN_IF_ERROR(check_mount_target(mountpoint));
  std::unique_ptr<ViewSession> vs(new ViewSession());
  vs->view_ = std::move(view);
  vs->mountpoint_ = mountpoint;
  vs->context_ = std::make_unique<ViewContext>(ViewContext{vs->view_.get(), mountpoint, source});
  std::string opts = "ro,nosuid,nodev,fsname=" + fuse_option_value(source) + ",subtype=cmkfs-view";
  std::vector<std::string> argv_s = {"cmkfs", "-o", opts};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  static const fuse_lowlevel_ops ops = make_ops();
  vs->se_ = fuse_session_new(&args, &ops, sizeof ops, vs->context_.get());
  fuse_opt_free_args(&args);
  if (vs->se_ == nullptr) return Status::InvalidArgument("cannot create the view's FUSE session");
  // As root, on the directory opened without following a link: a path component swapped for a
  // link after the checks cannot move the mount elsewhere (fusermount3 does the same for users).
  std::string target = mountpoint;
  int dir = -1;
  if (::geteuid() == 0) {
    dir = ::open(mountpoint.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0) {
      fuse_session_destroy(vs->se_);
      vs->se_ = nullptr;
      return Status(ENOTDIR, mountpoint + " is not a directory");
    }
    target = "/proc/self/fd/" + std::to_string(dir);
  }
  int rc = fuse_session_mount(vs->se_, target.c_str());
  vs->dir_fd_ = dir;  // open as long as the session: its number stays ours
  if (rc != 0) {
    fuse_session_destroy(vs->se_);
    vs->se_ = nullptr;
    return Status(EIO, "cannot mount the view on " + mountpoint);
  }
  for (const auto& m : current_mounts()) {  // the connection, to abort it at the end
    if (m.target == mountpoint && m.type == "fuse.cmkfs-view") vs->device_ = m.device;
  }
  ViewSession* self = vs.get();
  vs->loop_ = std::thread([self] {
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, 8);
    fuse_session_loop_mt(self->se_, cfg);
    fuse_loop_cfg_destroy(cfg);
    self->finished_ = true;
  });
  spdlog::info("registry view on {}", mountpoint);
  return vs;
}

// Aborting the connection ends the loop at once, also while files in the view are open or a
// process sits in it (an unmount alone would wait for them). False when fusectl is not there.
bool ViewSession::abort_connection() {
  if (device_.empty()) return false;
  size_t colon = device_.find(':');
  std::string path = "/sys/fs/fuse/connections/" + device_.substr(colon == std::string::npos ? 0 : colon + 1) + "/abort";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 && ::geteuid() == 0) {  // systemd mounts fusectl; containers may not
    ::mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr);
  }
  std::ofstream abort(path);
  if (abort) abort << "1" << std::flush;
  if (!abort) spdlog::warn("view on {}: cannot abort its connection; it ends when nothing uses it", mountpoint_);
  return static_cast<bool>(abort);
}

ViewSession::~ViewSession() {
  if (se_ != nullptr) {
    fuse_session_exit(se_);
    bool ended = finished_ || abort_connection();
    bool ours = false;  // still mounted there, by this session
    for (const auto& m : current_mounts()) ours |= m.target == mountpoint_ && m.device == device_;
    if (ours && ::geteuid() == 0) ::umount2(mountpoint_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);  // libfuse knows /proc/self/fd/N
    if (!ended) fuse_session_unmount(se_);  // the loop ends once nothing uses the view
    if (loop_.joinable()) loop_.join();
    fuse_session_unmount(se_);  // after the loop: closes the device and frees what mount kept
    fuse_session_destroy(se_);
  }
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

void ViewSession::invalidate() {
  for (uint64_t ino : view_->inodes()) fuse_lowlevel_notify_inval_inode(se_, ino, 0, 0);
}

}  // namespace cmkfs::fs
