#include "fs/fuse/shutdown.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

namespace cmkfs::fs {
namespace {

int g_event_fd = -1;  // written by the signal handler (async-signal-safe), read by the watcher
// The eventfd adds what is written: stops count in the low bits, hangups above, and the loop's
// end has a bit of its own (two stops read at once are two stops, not the loop's end).
constexpr uint64_t kStop = 1, kHangup = uint64_t{1} << 20, kWake = uint64_t{1} << 40;

void on_stop_signal(int) {
  uint64_t one = kStop;
  (void)!::write(g_event_fd, &one, sizeof one);
}
void on_hangup_signal(int) {
  uint64_t v = kHangup;
  (void)!::write(g_event_fd, &v, sizeof v);
}
void on_wake_signal(int) {}  // only interrupts the loop thread's wait

}  // namespace

ShutdownOnSignal::ShutdownOnSignal(fuse_session* se, std::string mountpoint, const std::atomic<uint64_t>* writes,
                                   CacheInvalidator* invalidations, std::function<void()> on_hangup)
    : se_(se), on_hangup_(std::move(on_hangup)), mountpoint_(std::move(mountpoint)), writes_(writes),
      invalidations_(invalidations), loop_thread_(pthread_self()) {
  g_event_fd = ::eventfd(0, EFD_CLOEXEC);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;  // no SA_RESTART: the loop thread's wait must see EINTR
  for (int sig : {SIGTERM, SIGINT}) sigaction(sig, &sa, nullptr);
  sa.sa_handler = on_hangup_signal;
  sigaction(SIGHUP, &sa, nullptr);
  sa.sa_handler = on_wake_signal;
  sigaction(SIGUSR2, &sa, nullptr);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, nullptr);
  // The watcher must not take the signals itself: only the loop thread leaves them unblocked.
  sigset_t block, old;
  sigemptyset(&block);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR2}) sigaddset(&block, sig);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  watcher_ = std::thread([this] { watch(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void ShutdownOnSignal::finish() {
  if (!watcher_.joinable()) return;
  uint64_t v = kWake;  // the loop ended (umount or a stop): let the watcher go
  (void)!::write(g_event_fd, &v, sizeof v);
  watcher_.join();
}

ShutdownOnSignal::~ShutdownOnSignal() {
  finish();
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR2}) sigaction(sig, &sa, nullptr);
  ::close(g_event_fd);
  g_event_fd = -1;
}

void ShutdownOnSignal::watch() {
  uint64_t stops = 0;
  for (;;) {
    uint64_t v = 0;
    while (::read(g_event_fd, &v, sizeof v) < 0 && errno == EINTR) {
    }
    if ((v % kWake) >= kHangup && on_hangup_) on_hangup_();
    stops = v % kHangup;
    if (stops != 0 || v >= kWake) break;
  }
  if (stops == 0) return;  // the loop's end alone
  spdlog::info("signal received: writing cached data back, then unmounting {}", mountpoint_);
  // syncfs may return while WRITE requests it caused are still queued for the daemon (kernels
  // whose FUSE writeback ends a page's writeback once its request is built); under a loaded test
  // run a stop twice lost the tail of a file left open. So the loop keeps serving until a syncfs
  // and the 100 ms after it see no WRITE at all (at most ~10 s).
  int fd = ::open(mountpoint_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    for (int round = 0; round < 100; ++round) {
      uint64_t before = writes_->load();
      if (::syncfs(fd) != 0) spdlog::warn("syncfs before unmount: {}", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (writes_->load() == before) break;
    }
    ::close(fd);
  }
  invalidations_->close();  // while the loop still answers the requests they may wait for
  fuse_session_exit(se_);
  pthread_kill(loop_thread_, SIGUSR2);  // interrupts the loop's wait so it sees the exit
}

}  // namespace cmkfs::fs
