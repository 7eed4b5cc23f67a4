#include "keyclient/web/https.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "keyclient/web/tls.h"

namespace cmkfs::web {

Result<BoundServer> bind_https(const std::string& dir, const std::string& host, int port, const std::string& ca_name,
                               size_t max_body) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(ec.value(), "cannot create " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);  // the server's key
  CMKFS_RETURN_IF_ERROR(ensure_tls_files(dir, host, ca_name));
  BoundServer b;
  b.server = std::make_unique<httplib::SSLServer>((dir + "/server.pem").c_str(), (dir + "/server.key").c_str());
  if (!b.server->is_valid()) return Status::IOError(EIO, "cannot load the TLS certificate in " + dir);
  b.server->set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  b.server->set_payload_max_length(max_body);
  // httplib (0.11) ends a stop only once every idle keep-alive connection has timed out, so its
  // 5 s default made each SIGTERM take 5 s. A client of this server (a key check, a wrap, a page)
  // gains nothing from an idle connection kept longer than a second.
  b.server->set_keep_alive_timeout(1);
  b.port = port == 0 ? b.server->bind_to_any_port(host.c_str()) : (b.server->bind_to_port(host.c_str(), port) ? port : -1);
  if (b.port <= 0) {
    return Status(EADDRINUSE, "cannot listen on " + host + ":" + std::to_string(port) + " (in use, or not an address here)");
  }
  return b;
}

bool serve_until_signalled(httplib::Server& server, const std::function<void()>& ready) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ready();
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&set, &sig);
    server.stop();
  });
  bool ok = server.listen_after_bind();
  pthread_kill(stopper.native_handle(), SIGTERM);  // wakes the waiter if the server ended on its own
  stopper.join();
  return ok;
}

}  // namespace cmkfs::web
