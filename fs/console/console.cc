#include "fs/console/console.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <ostream>
#include <thread>

#include "fs/console/pages.h"
#include "fs/store/store.h"
#include "keyclient/web/password_file.h"
#include "keyclient/web/tls.h"

namespace cmkfs::fs {
namespace {

std::string password_path() { return host_config_dir() + "/console.password"; }

bool loopback(const std::string& host) { return host == "127.0.0.1" || host == "::1" || host == "localhost"; }

}  // namespace

Status set_console_password(const std::string& from_file) { return web::set_password_file(password_path(), from_file); }

int run_console(const ConsoleOptions& o, std::ostream& out, std::ostream& err) {
  size_t colon = o.listen.rfind(':');
  std::string host = colon == std::string::npos ? "" : o.listen.substr(0, colon);
  int port = colon == std::string::npos ? -1 : std::atoi(o.listen.c_str() + colon + 1);
  if (host.empty() || port < 0 || port > 65535) {
    err << "cmkfs: --listen wants HOST:PORT (127.0.0.1:9443), not " << o.listen << "\n";
    return kExitUsage;
  }
  std::string tls_dir = host_config_dir() + "/console";
  std::error_code ec;
  std::filesystem::create_directories(tls_dir, ec);
  ::chmod(tls_dir.c_str(), 0700);  // its server key
  if (Status s = web::ensure_tls_files(tls_dir, host, "cmkfs console local CA"); !s.ok()) {
    err << "cmkfs: " << s.message() << "\n";
    return kExitError;
  }
  httplib::SSLServer server((tls_dir + "/server.pem").c_str(), (tls_dir + "/server.key").c_str());
  server.set_payload_max_length(64 << 10);
  // A page that fails answers 500 with nothing of the error (httplib would put it in a header).
  server.set_exception_handler([](const httplib::Request&, httplib::Response& r, std::exception_ptr) {
    r.status = 500;
    r.set_content("the page could not be shown\n", "text/plain");
  });
  int bound = port == 0 ? server.bind_to_any_port(host.c_str()) : (server.bind_to_port(host.c_str(), port) ? port : -1);
  if (!server.is_valid() || bound <= 0) {
    err << "cmkfs: cannot listen on " << o.listen << " (in use, or not an address here)\n";
    return kExitError;
  }
  AuditLog audit(o.audit_log.empty() ? "/var/log/cmkfs/console.audit.jsonl" : o.audit_log, "console");
  std::mutex mu;
  web::Console::Options wo;
  wo.product = "cmkfs";
  wo.nav = {{"stores", "Stores"}};
  wo.home = "/console/stores";
  wo.verify = [](const std::string& secret) { return web::check_password_file(password_path(), secret); };
  wo.has_password = [] { return web::has_password_file(password_path()); };
  wo.no_password_hint = "No admin password is set: run <code>cmkfs console --set-password</code> as root.";
  wo.audit = [&audit](const std::string& who, const web::Outcome& what, const nlohmann::json& extra) {
    nlohmann::json fields = extra;
    fields["admin"] = who;
    if (!what.message.empty()) fields["message"] = what.message.substr(0, 300);
    audit.record("console:" + what.op, what.target, what.status < 400 ? "ok" : "refused", fields);
  };
  wo.idle_seconds = o.idle_seconds;
  web::Console console(server, mu, std::move(wo));
  add_console_pages(console, o);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::string url = "https://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                    std::to_string(bound) + "/console";
  out << "cmkfs console at " << url << " (CA " << tls_dir << "/ca.pem)" << std::endl;
  if (!loopback(host)) err << "cmkfs: warning: the console listens beyond this host (" << host << ")\n";
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&set, &sig);
    server.stop();
  });
  bool ok = server.listen_after_bind();
  pthread_kill(stopper.native_handle(), SIGTERM);
  stopper.join();
  return ok ? kExitOk : kExitError;
}

}  // namespace cmkfs::fs
