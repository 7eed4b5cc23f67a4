#include "fs/daemon/daemon.h"

#include <fcntl.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "crypto/base/hex.h"
#include "crypto/base/printable.h"
#include "fs/core/filesystem.h"
#include "fs/daemon/control.h"
#include "fs/daemon/key_monitor.h"
#include "fs/daemon/log_file.h"
#include "fs/daemon/memory.h"
#include "fs/daemon/metrics.h"
#include "fs/daemon/notify.h"
#include "fs/daemon/periodic.h"
#include "fs/daemon/rekeyer.h"
#include "fs/daemon/views.h"
#include "fs/fuse/fuse.h"
#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

namespace stdfs = std::filesystem;

Status check_mountpoint(const std::string& mp) {
  struct stat st;
  if (::stat(mp.c_str(), &st) != 0) {
    if (errno == ENOTCONN) return Status(EBUSY, "mountpoint " + mp + " is a dead FUSE mount; run: cmkfs umount " + mp);
    return Status(ENOENT, "mountpoint " + mp + " does not exist");
  }
  if (!S_ISDIR(st.st_mode)) return Status(ENOTDIR, "mountpoint " + mp + " is not a directory");
  CMKFS_RETURN_IF_ERROR(check_mount_target(mp));
  for (const auto& m : current_mounts()) {
    if (m.target == mp) return Status(EBUSY, "mountpoint " + mp + " is busy: " + m.source + " is mounted there");
  }
  return Status::Ok();
}

std::string default_log_file(const Id128& store_id) {
  std::string dir = ::geteuid() == 0 ? "/var/log/cmkfs" : std::string(std::getenv("HOME") ? std::getenv("HOME") : ".") + "/.local/state/cmkfs";
  return dir + "/" + to_hex(store_id) + ".log";
}

// Logs to `path` from now on; the sink returned reopens it (SIGHUP).
std::shared_ptr<ReopenableFileSink> use_file_log(const std::string& path, const std::string& level,
                                                 const std::string& format) {
  std::error_code ec;
  stdfs::create_directories(stdfs::path(path).parent_path(), ec);
  auto sink = std::make_shared<ReopenableFileSink>(path);
  auto logger = std::make_shared<spdlog::logger>("cmkfs-daemon", sink);
  logger->set_formatter(log_formatter(format));
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return sink;
}

// Tells the waiting parent how the start went: "0" or "<exit code> <message>".
class Readiness {
 public:
  explicit Readiness(int fd) : fd_(fd) {}
  void report(int code, const std::string& message) {
    if (fd_ < 0) return;
    std::string s = std::to_string(code) + " " + message;
    (void)!::write(fd_, s.data(), s.size());
    ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// The parent side of daemonizing: waits for the child's report and returns the exit code.
int wait_for_daemon(int fd, pid_t child) {
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (msg.empty()) {
    int status = 0;
    ::waitpid(child, &status, 0);
    std::cerr << "cmkfs: the mount daemon exited during start (status " << status << ")\n";
    return kExitMount;
  }
  int code = std::atoi(msg.c_str());
  auto space = msg.find(' ');
  std::string text = space == std::string::npos ? "" : msg.substr(space + 1);
  if (code != 0) std::cerr << "cmkfs: " << printable(text) << "\n";
  return code;
}

// The metadata key's nonce budget: records sealed under the current generation's meta key, saved
// every minute with a margin for what a crash loses; at half the budget (2^31 of the 2^32 random
// 96-bit nonces one key may use) the key monitor starts a data-key rotation, whose new key starts
// a new count.
class SealBudget {
 public:
  SealBudget(OpenStore& st, Keyring& keyring, KeyMonitor& monitor) : st_(st), keyring_(keyring), monitor_(monitor) {
    restart(st.super.dek_generation);
  }
  void tick() {
    if (++ticks_ % 60 != 0) return;
    uint32_t gen = keyring_.access().generation();
    if (gen != generation_) restart(gen);
    uint64_t used = saved_ + (st_.meta->seals() - at_open_);
    auto txn = st_.meta->begin(true);
    if (txn.ok() && txn->put_seal_count(generation_, used).ok()) (void)txn->commit();
    if (used >= kRotateAt && !requested_) {
      spdlog::warn("the metadata key of data-key generation {} has sealed {} records: starting a data-key rotation",
                   generation_, used);
      monitor_.request_rotation();
      requested_ = true;
    }
  }

 private:
  static constexpr uint64_t kRotateAt = uint64_t{1} << 31;
  static constexpr uint64_t kCrashMargin = uint64_t{1} << 20;  // more than a minute of seals
  void restart(uint32_t gen) {
    generation_ = gen;
    auto txn = st_.meta->begin(false);
    auto count = txn.ok() ? txn->seal_count(gen) : Result<uint64_t>(uint64_t{0});
    saved_ = (count.ok() ? *count : 0) + kCrashMargin;
    at_open_ = st_.meta->seals();
    requested_ = false;
  }
  OpenStore& st_;
  Keyring& keyring_;
  KeyMonitor& monitor_;
  uint32_t generation_ = 0;
  uint64_t saved_ = 0, at_open_ = 0, ticks_ = 0;
  bool requested_ = false;
};

// Once the parent has its answer, a daemon's output goes nowhere but its log.
void detach_stdio() {
  int devnull = ::open("/dev/null", O_RDWR);
  if (devnull < 0) return;
  ::dup2(devnull, 0);
  ::dup2(devnull, 1);
  ::dup2(devnull, 2);
  if (devnull > 2) ::close(devnull);
}

// The control socket of the mount at `mountpoint`: `cmkfs view MOUNTPOINT VIEWDIR` asks here.
std::unique_ptr<ControlServer> start_control(const std::string& mountpoint, Views& views) {
  auto path = control_socket_path(mountpoint);
  auto server = path.ok() ? ControlServer::start(*path, [&views](const nlohmann::json& request) -> nlohmann::json {
    auto text = [&](const char* key) {  // a request's field, "" when missing or not a string
      auto it = request.find(key);
      return it != request.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    if (text("op") != "view") return {{"error", "unknown request"}};
    std::string dir = text("dir"), root = text("registry_root");
    Status s = views.attach(dir, root);
    if (!s.ok()) return {{"error", s.message()}};
    return {{"ok", true}};
  }) : Result<std::unique_ptr<ControlServer>>(path.status());
  if (!server.ok()) {
    spdlog::warn("no control socket ({}): cmkfs view cannot attach to this mount", server.status().message());
    return nullptr;
  }
  return std::move(*server);
}

// `cmkfs view --store`: serves one registry view at o.mountpoint, with the key monitor, until
// it is unmounted or a stop signal arrives.
int serve_views(const MountOptions& o, OpenStore& st, Filesystem& fs, Keyring& keyring, Views& views,
                std::unique_ptr<keyclient::KeyProvider> provider, AuditLog& audit, const sigset_t& stop_signals,
                const std::function<void()>& reopen_log, Readiness& ready) {
  Status s = views.attach(o.mountpoint, o.registry_root);
  if (!s.ok()) {
    ready.report(kExitMount, s.message());
    (void)fs.shutdown();
    return kExitMount;
  }
  KeyMonitor monitor(st, keyring, std::move(provider), o.monitor, audit, [&views] { views.invalidate(); }, o.mountpoint);
  monitor.start();
  ready.report(0, "");
  if (!o.foreground) detach_stdio();
  timespec tick{0, 200 * 1000 * 1000};
  while (views.reap() > 0) {
    int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig == SIGHUP) reopen_log();
    else if (sig > 0) break;
  }
  views.clear();
  monitor.stop();
  s = fs.shutdown();
  if (s.ok()) spdlog::info("view on {} stopped", o.mountpoint);
  return KeyMonitor::finish(monitor, s.ok() ? kExitOk : kExitError);
}

int serve(const MountOptions& o, const std::string& log_level, Readiness& ready) {
  bool file_log = false;
  // In the foreground the log is stderr; daemonized, the waiting parent prints the one line.
  auto fail = [&](const Status& s, int code) {
    if (o.foreground || file_log) spdlog::error("{}", printable(s.message()));
    ready.report(code, s.message());
    return code;
  };
  // A daemon serving only a view waits for these itself (serve_views: SIGHUP reopens the log);
  // every thread it starts inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, sig);
  if (o.view_only) pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // Again in the daemon: a fork does not inherit memory locks.
  Status hardened = crypto::harden_process(/*lock_memory=*/::geteuid() == 0);
  if (!hardened.ok()) return fail(hardened, kExitError);

  auto store = open_store(o.store, /*exclusive=*/!o.follow, /*read_only=*/o.follow);
  if (!store.ok()) return fail(store.status(), open_store_exit_code(store.status()));
  OpenStore& st = **store;
  if (o.follow && !st.meta->shared()) {
    return fail(Status::InvalidArgument("--follow needs a store whose metadata is in PostgreSQL (cmkfs init --meta postgres)"),
                kExitUsage);
  }
  std::shared_ptr<ReopenableFileSink> log_sink;
  if (!o.foreground) {
    log_sink = use_file_log(o.log_file.empty() ? default_log_file(st.super.store_id) : o.log_file, log_level,
                            o.log_format);
    file_log = true;
  }
  auto reopen_log = [&log_sink] {
    if (log_sink) log_sink->reopen();
    spdlog::info("SIGHUP: log file reopened");
  };

  AuditLog audit(o.audit_log.empty() ? default_audit_path(st.super.store_id) : o.audit_log, to_hex(st.super.store_id));
  // A start whose provider hangs ends with the reason; the key monitor, which the provider goes
  // to next, bounds its calls its own way.
  double timeout = std::chrono::duration<double>(o.monitor.request_timeout).count();
  auto start_watch = command_watchdog(timeout, [&fail](const std::string& why) {
    fail(Status(ETIMEDOUT, "cannot unlock the store's data key: " + why), kExitKey);
    spdlog::default_logger()->flush();
  });
  auto provider = bound_provider(st, timeout, start_watch);
  if (!provider.ok()) return fail(provider.status(), kExitKey);
  auto unlocked = unlock(st, **provider, audit, "mount");
  // Watched until the monitor takes it (a failed start's C_CloseSession may hang too).
  auto hand_over = [&] {
    start_watch->stop();
    return std::move(*provider);
  };
  if (!unlocked.ok()) {
    Status s(unlocked.status().code(), "cannot unlock the store's data key: " + unlocked.status().message());
    return fail(s, unlock_exit_code(s));
  }
  Keyring keyring;
  Status s = install_keys(keyring, st.super.dek_generation, std::move(*unlocked));
  if (!s.ok()) return fail(s, kExitKey);
  Filesystem fs(st, keyring, o.inode_cache);
  fs.set_follower(o.follow);
  s = fs.start();
  if (!s.ok()) return fail(s, kExitNotAStore);
  Views views(fs, keyring, "cmkfs-view:" + st.paths.root);
  if (o.view_only) {
    return serve_views(o, st, fs, keyring, views, hand_over(), audit, stop_signals, reopen_log, ready);
  }
  if (o.commit_interval_ms > 0) {
    st.meta->start_group_commit(std::chrono::microseconds(static_cast<int64_t>(o.commit_interval_ms * 1000)));
  }

  // With allow_other the kernel enforces permissions (default_permissions). Without it nobody but
  // the mounting user can enter the mount, and skipping the kernel's checks spares a GETATTR of
  // the parent directory on every create and unlink.
  std::string opts = "fsname=" + fuse_option_value("cmkfs:" + st.paths.root) + ",subtype=cmkfs";
  bool allow_other = false;
  for (const auto& extra : o.fuse_options) {
    opts += "," + extra;
    allow_other = allow_other || ("," + extra + ",").find(",allow_other,") != std::string::npos;
  }
  if (allow_other) opts += ",default_permissions";
  if (o.follow) opts += ",ro";
  std::vector<std::string> argv_s = {"cmkfs", "-o", opts};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  Bridge bridge{&fs, BridgeConfig{.attr_timeout = o.attr_timeout,
                                  .entry_timeout = o.entry_timeout,
                                  .max_write = o.max_write,
                                  .writeback_cache = o.writeback_cache && !o.follow,  // it would keep its own sizes
                                  .read_ahead = o.read_ahead,
                                  .mountpoint = o.mountpoint,
                                  .source = "cmkfs:" + st.paths.root}};
  bridge.collect_stats = !o.metrics_listen.empty();
  fuse_session* se = fuse_session_new(&args, &fuse_operations(/*save_at_close=*/st.meta->shared() && !o.follow),
                                     sizeof(fuse_lowlevel_ops), &bridge);
  fuse_opt_free_args(&args);
  if (se == nullptr) return fail(Status::InvalidArgument("invalid mount options: " + opts), kExitUsage);
  // Destroyed on every return after the threads declared below that use it have ended.
  std::unique_ptr<fuse_session, decltype(&fuse_session_destroy)> session(se, fuse_session_destroy);
  bridge.session = se;
  // Workers: a request for objects in a cluster waits on its network round trips (a 200 MiB cold
  // read from S3 took 1.1-1.3 s with 4 workers, 0.57 s with 16: docs/performance.md).
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  unsigned threads = o.max_threads != 0 ? o.max_threads
                     : st.super.objects.empty() ? std::max(4u, 2 * cores)
                                                : std::max(16u, 8 * cores);
  // The kernel offers io_uring in INIT only once its switch is on, so it is turned on first.
  std::unique_ptr<UringTransport> uring;
  if (o.io_uring) {
    Status on = enable_kernel_uring();
    unsigned per_cpu = threads / cores;
    if (on.ok()) uring = std::make_unique<UringTransport>(se, per_cpu, o.direct_reads ? &bridge.direct_reads : nullptr);
    else spdlog::info("{}: serving over /dev/fuse", on.message());
  }
  if (o.direct_reads && !uring) spdlog::warn("direct reads need FUSE over io_uring: reads stay cached");
  if (fuse_session_mount(se, o.mountpoint.c_str()) != 0) {
    return fail(Status(EIO, "cannot mount on " + o.mountpoint + " (is /dev/fuse available?)"), kExitMount);
  }
  if (uring) {
    Status installed = uring->install();
    if (!installed.ok()) {
      spdlog::warn("{}: serving over /dev/fuse{}", installed.message(), o.direct_reads ? "; reads stay cached" : "");
      uring.reset();
    }
  }
  spdlog::info("mounted store {} on {}", st.paths.root, o.mountpoint);
  // Revocation must also empty the kernel's caches; this runs on the monitor's thread.
  CacheInvalidator invalidations(se);
  auto invalidate = [&fs, &invalidations, &views] {
    for (uint64_t ino : fs.known_inodes()) invalidations.inode(ino);
    views.invalidate();
  };
  // Before any other thread starts.
  ShutdownOnSignal shutdown(se, o.mountpoint, &bridge.writes, &invalidations, reopen_log);
  KeyMonitor monitor(st, keyring, hand_over(), o.monitor, audit, invalidate, o.mountpoint);
  auto rekeyer = o.follow ? nullptr : std::make_unique<Rekeyer>(fs, keyring, monitor);
  monitor.set_status_extra([&rekeyer] { return rekeyer ? rekeyer->status() : nlohmann::json::object(); });
  // A follower's change feed: the records a payload names are reloaded, and the kernel forgets
  // what it cached of them (attributes, pages, names). Never called from a request handler.
  auto apply_feed = [&fs, &invalidations](std::string_view payload) {
    auto changes = fs.apply_changes(payload);
    if (!changes.ok()) return changes.status();
    for (uint64_t ino : changes->inodes) invalidations.inode(ino);
    for (const auto& [parent, name] : changes->entries) invalidations.entry(parent, name);
    return Status::Ok();
  };
  if (o.follow) {
    // The writer seals its change feed under a new data-key generation before this process's key
    // check takes it, and those payloads do not open here: what they said (every file moved to a
    // new object under the new key) is read again at once, or open files would read on with a
    // key that is gone (EIO).
    monitor.set_on_new_generation([&apply_feed] { (void)apply_feed(meta::MetaStore::kFeedMissed); });
  }
  monitor.start();
  SealBudget seals(st, keyring, monitor);
  ServiceNotifier notifier;
  auto key_status = [&monitor, &o] { return std::string("serving ") + o.mountpoint + "; key " + to_string(monitor.state()); };
  Periodic flusher(std::chrono::seconds(1), [&fs, &st, &seals, &views, &notifier, &key_status] {
    Status s = fs.flush_dirty();
    if (!s.ok()) spdlog::warn("periodic inode flush: {}", s.message());
    if (resident_file_bytes() > kResidentFileBudget) st.meta->release_mapped_pages();
    seals.tick();
    views.reap();
    notifier.status(key_status());
    if (s.ok()) notifier.watchdog();  // the daemon still commits: alive
  });
  auto control = start_control(o.mountpoint, views);
  // The mount is up but cannot serve: taken down as a stop would, the monitor first (its status
  // reads the rekeyer, destroyed before it on return, and its revocation notifies the session).
  auto take_down = [&monitor, se] {
    monitor.stop();
    fuse_session_exit(se);
    fuse_session_unmount(se);
  };
  std::unique_ptr<MetricsServer> metrics;
  if (!o.metrics_listen.empty()) {
    auto started = MetricsServer::start(o.metrics_listen, [&] {
      return render_metrics({&bridge.stats, fs.io_errors(), fs.inodes_in_memory(), fs.inodes_demoted(), monitor.state(), monitor.counts(), &monitor.check_seconds(),
                             &st.meta->batch_stats(), o.mountpoint});
    });
    if (!started.ok()) {
      take_down();
      return KeyMonitor::finish(monitor, fail(started.status(), kExitUsage));
    }
    metrics = std::move(*started);
  }
  if (o.follow) {
    // The writer's commits, on the feed's thread. Anyone with a login to the database can
    // NOTIFY: payloads that do not open are logged at most once a minute, with how many there were.
    auto last_warning = std::chrono::steady_clock::time_point();
    uint64_t unopened = 0;
    Status listening = st.meta->listen([&apply_feed, last_warning, unopened](std::string_view payload) mutable {
      Status applied = apply_feed(payload);
      if (applied.ok() || applied.code() == EACCES) return;
      ++unopened;
      auto now = std::chrono::steady_clock::now();
      if (now - last_warning >= std::chrono::minutes(1)) {
        spdlog::warn("{} change-feed payload(s) did not open; the last: {}", unopened, applied.message());
        last_warning = now;
        unopened = 0;
      }
    });
    if (!listening.ok()) {
      take_down();
      return KeyMonitor::finish(monitor, fail(listening, kExitError));
    }
  }
  ready.report(0, "");
  notifier.ready(key_status());
  if (!o.foreground) detach_stdio();

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, threads);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  shutdown.finish();  // a stop signal from now on cannot reach the session; the flush below runs
  invalidations.close();  // the loop ended with the connection (an unmount): none waits now
  notifier.stopping();
  st.meta->stop_listening();  // before the session goes: the feed invalidates through it
  metrics.reset();
  control.reset();  // no view is attached from now on
  views.clear();
  monitor.stop();  // first: its status reads the rekeyer's progress
  rekeyer.reset();
  fuse_session_unmount(se);
  uring.reset();  // its workers end with the connection
  flusher.stop();  // the last flush is shutdown's, and compaction below replaces st.meta
  s = fs.shutdown();
  if (s.ok()) spdlog::info("unmounted {}; everything flushed", o.mountpoint);
  else spdlog::error("unmounted {}, but flushing failed: {}", o.mountpoint, s.message());
  if (s.ok() && !o.follow && compaction_pending(st)) {  // after a data-key rotation: no old wrapped key may linger
    Status c = compact_metadata(st);
    if (c.ok()) spdlog::info("metadata compacted: the old data keys' wrapped copies are gone from it");
    else spdlog::error("compacting the metadata failed (the next unmount tries again): {}", c.message());
  }
  session.reset();
  // libfuse reports the signal that ended the loop; SIGTERM and SIGINT are a clean stop.
  bool clean = rc == 0 || rc == SIGTERM || rc == SIGINT;
  return KeyMonitor::finish(monitor, clean && s.ok() ? kExitOk : kExitError);  // everything is flushed
}

}  // namespace

int run_mount(const MountOptions& in, const std::string& log_level) {
  MountOptions o = in;
  // Whatever umask it was started with (0 in some containers): its logs, status and audit files
  // are written by no one else. Bits are only added: a stricter umask stays.
  ::umask(::umask(0) | 022);
  std::error_code ec;
  // The mount table names mountpoints canonically: "mnt/", "./mnt" or a link to it must compare
  // equal, or a second store would be stacked on a busy mountpoint.
  std::string canonical = stdfs::canonical(o.mountpoint, ec).string();
  if (!ec) o.mountpoint = canonical;
  Status s = check_mountpoint(o.mountpoint);
  if (!s.ok()) {
    std::cerr << "cmkfs: " << s.message() << "\n";
    return kExitMount;
  }
  if (stdfs::is_directory(o.store, ec)) o.store = stdfs::canonical(o.store, ec).string();
  if (!o.log_file.empty()) o.log_file = stdfs::absolute(o.log_file).string();  // the daemon runs in /

  if (o.foreground) {
    Readiness none(-1);
    return serve(o, log_level, none);
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::cerr << "cmkfs: pipe: " << std::strerror(errno) << "\n";
    return kExitError;
  }
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = ::fork();
  if (pid < 0) {
    std::cerr << "cmkfs: fork: " << std::strerror(errno) << "\n";
    return kExitError;
  }
  if (pid > 0) {
    ::close(fds[1]);
    return wait_for_daemon(fds[0], pid);
  }
  ::close(fds[0]);
  ::setsid();
  if (::chdir("/") != 0) _exit(kExitError);
  Readiness ready(fds[1]);
  std::exit(serve(o, log_level, ready));  // not _exit: LeakSanitizer checks the daemon too
}

Status attach_view(const std::string& mountpoint, const std::string& view_dir, const std::string& registry_root,
                   std::ostream& out) {
  std::error_code ec;
  std::string mp = stdfs::canonical(mountpoint, ec).string();
  if (ec || mounted_store(mp).empty()) return Status(EINVAL, mountpoint + " is not a cmkfs mount");
  std::string dir = stdfs::canonical(view_dir, ec).string();
  if (ec) return Status(ENOENT, "the view directory " + view_dir + " does not exist");
  auto reply = control_request(mp, {{"op", "view"}, {"dir", dir}, {"registry_root", registry_root}});
  if (!reply.ok()) return reply.status();
  if (reply->contains("error")) return Status(EINVAL, reply->value("error", std::string("the daemon refused")));
  out << "registry view of " << mp << " on " << dir << "\n";
  return Status::Ok();
}

void use_stderr_log(const std::string& level, const std::string& format) {
  std::shared_ptr<spdlog::logger> logger;
  if (stderr_is_journal()) {
    logger = std::make_shared<spdlog::logger>("cmkfs", std::make_shared<spdlog::sinks::systemd_sink_mt>("cmkfs"));
  } else {
    logger = std::make_shared<spdlog::logger>("cmkfs", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    logger->set_formatter(log_formatter(format));
  }
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

}  // namespace cmkfs::fs
