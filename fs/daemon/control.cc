#include "fs/daemon/control.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"

namespace cmkfs::fs {
namespace {

constexpr size_t kMaxMessage = 64 << 10;
constexpr int kIoTimeoutMs = 5000;

Status sys_error(const std::string& what) { return Status::IOError(errno, what + ": " + std::strerror(errno)); }

// A directory only the caller may enter: created if missing, refused if anything else.
Status private_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir " + dir);
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return sys_error("stat " + dir);
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    return Status::AccessDenied(dir + " must be a directory only uid " + std::to_string(::geteuid()) + " can use");
  }
  return Status::Ok();
}

Status io_wait(int fd, short events) {
  pollfd p{fd, events, 0};
  int rc = ::poll(&p, 1, kIoTimeoutMs);
  if (rc == 0) return Status(ETIMEDOUT, "the control socket timed out");
  if (rc < 0) return sys_error("poll");
  return Status::Ok();
}

Result<std::string> read_line(int fd) {
  std::string msg;
  char buf[4096];
  while (msg.find('\n') == std::string::npos) {
    if (Status s = io_wait(fd, POLLIN); !s.ok()) return s;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read");
    if (n == 0) break;
    msg.append(buf, static_cast<size_t>(n));
    if (msg.size() > kMaxMessage) return Status::InvalidArgument("control message too long");
  }
  return msg.substr(0, msg.find('\n'));
}

Status write_all(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    if (Status w = io_wait(fd, POLLOUT); !w.ok()) return w;
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("write");
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<sockaddr_un> address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Status::InvalidArgument("control socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

Result<std::string> control_socket_path(const std::string& mountpoint) {
  std::string dir;
  if (::geteuid() == 0) {
    dir = "/run/cmkfs";
  } else if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && xdg[0] == '/') {
    dir = std::string(xdg) + "/cmkfs";
  } else {  // in /tmp, where anyone may have made it first: it must be ours alone too
    dir = "/tmp/cmkfs-" + std::to_string(::geteuid());
    if (Status s = private_dir(dir); !s.ok()) return s;
  }
  // The parent may be shared with the world-readable key status files (fs/store/audit.h).
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return sys_error("mkdir " + dir);
  dir += "/control";
  if (Status s = private_dir(dir); !s.ok()) return s;
  crypto::Sha256 sha;
  sha.update(crypto::Bytes(reinterpret_cast<const uint8_t*>(mountpoint.data()), mountpoint.size()));
  return dir + "/" + to_hex(sha.finish()).substr(0, 32) + ".sock";
}

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, Handler handler) {
  std::unique_ptr<ControlServer> srv(new ControlServer());
  srv->path_ = path;
  srv->handler_ = std::move(handler);
  auto addr = address_of(path);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error("socket");
  ::unlink(path.c_str());  // a socket left by a daemon that was killed
  // Its directory is root's alone; the mode is set after bind, not through the process-wide umask
  // (the monitor and the flusher may be creating files meanwhile).
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof *addr);
  if (rc == 0) rc = ::chmod(path.c_str(), 0600);
  if (rc != 0 || ::listen(fd, 16) != 0) {
    Status s = sys_error("listen on " + path);
    ::close(fd);
    return s;
  }
  ControlServer* self = srv.get();
  srv->loop_ = std::make_unique<AcceptLoop>(fd, SOCK_NONBLOCK, [self](int c) { self->answer(c); });
  if (!srv->loop_->running()) return sys_error("pipe");
  return srv;
}

ControlServer::~ControlServer() {
  loop_.reset();  // no request is being answered from here on
  ::unlink(path_.c_str());
}

void ControlServer::answer(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != ::geteuid() && cred.uid != 0)) {
    spdlog::warn("control socket: refused a request from uid {}", cred.uid);
    (void)write_all(fd, R"({"error":"permission denied"})" "\n");
    return;
  }
  auto line = read_line(fd);
  if (!line.ok()) return;
  nlohmann::json request = nlohmann::json::parse(*line, nullptr, /*allow_exceptions=*/false);
  nlohmann::json reply = request.is_object() ? handler_(request) : nlohmann::json{{"error", "malformed request"}};
  (void)write_all(fd, reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

Result<nlohmann::json> control_request(const std::string& mountpoint, const nlohmann::json& request) {
  auto path = control_socket_path(mountpoint);
  if (!path.ok()) return path.status();
  auto addr = address_of(*path);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error("socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&*addr), sizeof *addr) != 0) {
    Status s(errno, "the daemon of " + mountpoint + " does not answer on its control socket " + *path + ": " +
                        std::strerror(errno));
    ::close(fd);
    return s;
  }
  Status s = write_all(fd, request.dump() + "\n");
  auto line = s.ok() ? read_line(fd) : Result<std::string>(s);
  ::close(fd);
  if (!line.ok()) return line.status();
  nlohmann::json reply = nlohmann::json::parse(*line, nullptr, false);
  if (!reply.is_object()) return Status(EIO, "malformed reply from the daemon of " + mountpoint);
  return reply;
}

}  // namespace cmkfs::fs
