#include "keyclient/web/https.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <charconv>
#include <filesystem>
#include <thread>

#include "keyclient/web/connection_limit.h"
#include "keyclient/web/tls.h"

namespace cmkfs::web {

Result<BoundServer> bind_https(const std::string& dir, const std::string& host, int port, const std::string& ca_name,
                               size_t max_body, const std::string& name, const std::set<uid_t>& trusted) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(ec.value(), "cannot create " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);  // the server's key
  CMKFS_RETURN_IF_ERROR(ensure_tls_files(dir, host, ca_name));
  BoundServer b;
  b.server = std::make_unique<httplib::SSLServer>((dir + "/server.pem").c_str(), (dir + "/server.key").c_str());
  if (!b.server->is_valid()) return Status::IOError(EIO, "cannot load the TLS certificate in " + dir);
  auto listening = std::make_shared<int>(-1);
  b.server->set_socket_options([listening](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    *listening = sock;
  });
  b.limit = std::make_shared<ConnectionLimit>(trusted, name);
  limit_connections(*b.server, b.limit);
  b.server->set_payload_max_length(max_body);
  b.server->set_pre_routing_handler([max_body](const httplib::Request& q, httplib::Response& r) {
    auto refused = unbounded_body(q, max_body);
    if (!refused) return httplib::Server::HandlerResponse::Unhandled;
    r.status = refused->first;
    r.set_content(refused->second + "\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  // httplib (0.11) ends a stop only once every idle keep-alive connection has timed out, so its
  // 5 s default made each SIGTERM take 5 s. A client of this server (a key check, a wrap, a page)
  // gains nothing from an idle connection kept longer than a second.
  b.server->set_keep_alive_timeout(1);
  b.port = port == 0 ? b.server->bind_to_any_port(host.c_str()) : (b.server->bind_to_port(host.c_str(), port) ? port : -1);
  if (b.port <= 0) {
    return Status(EADDRINUSE, "cannot listen on " + host + ":" + std::to_string(port) + " (in use, or not an address here)");
  }
  // httplib listens with a backlog of 5: while its accepting thread waits for a core, a sixth
  // client's SYN is dropped and its connect stalls a second or more. Listening again on the same
  // socket only changes the backlog.
  ::listen(*listening, SOMAXCONN);
  return b;
}

std::optional<std::pair<int, std::string>> unbounded_body(const httplib::Request& q, size_t max_body) {
  if (q.has_header("Transfer-Encoding")) return std::make_pair(411, "A chunked body is not accepted: send its Content-Length.");
  if (q.has_header("Content-Encoding")) return std::make_pair(415, "Content-Encoding is not accepted: send the body as it is.");
  bool with_body = q.method == "POST" || q.method == "PUT" || q.method == "PATCH";
  if (!q.has_header("Content-Length")) {
    if (with_body) return std::make_pair(411, "A body without a Content-Length is not accepted.");
    return std::nullopt;
  }
  const std::string& length = q.get_header_value("Content-Length");
  unsigned long long n = 0;
  auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), n);
  if (ec != std::errc() || end != length.data() + length.size()) return std::make_pair(400, "The Content-Length is not a number.");
  if (n > max_body) return std::make_pair(413, "The request body is larger than " + std::to_string(max_body >> 10) + " KiB.");
  return std::nullopt;
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
