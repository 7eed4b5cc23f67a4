// One thread accepting connections on a listening socket and handing each, in turn, to a
// handler; stopped by its destructor through a pipe (a blocked accept cannot be woken otherwise).
// What the control socket and /metrics share.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <thread>

namespace cmkfs::fs {

class AcceptLoop {
 public:
  // Takes `listen_fd` (listening already) and closes it at the end. `accept_flags` go to accept4.
  AcceptLoop(int listen_fd, int accept_flags, std::function<void(int fd)> handle)
      : listen_fd_(listen_fd), accept_flags_(accept_flags), handle_(std::move(handle)) {
    if (::pipe2(stop_fd_, O_CLOEXEC) == 0) thread_ = std::thread([this] { run(); });
  }
  ~AcceptLoop() {
    if (thread_.joinable()) {
      (void)!::write(stop_fd_[1], "x", 1);
      thread_.join();
    }
    for (int fd : {listen_fd_, stop_fd_[0], stop_fd_[1]}) {
      if (fd >= 0) ::close(fd);
    }
  }
  AcceptLoop(const AcceptLoop&) = delete;
  AcceptLoop& operator=(const AcceptLoop&) = delete;
  bool running() const { return thread_.joinable(); }

 private:
  void run() {
    for (;;) {
      pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents != 0) return;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | accept_flags_);
      if (fd < 0) continue;
      handle_(fd);
      ::close(fd);
    }
  }
  int listen_fd_;
  int accept_flags_;
  std::function<void(int)> handle_;
  int stop_fd_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace cmkfs::fs
