#include "fs/console/console.h"

#include <unistd.h>

#include <ostream>

#include "fs/console/pages.h"
#include "fs/store/store.h"
#include "keyclient/web/https.h"
#include "keyclient/web/password_file.h"

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
  auto bound = web::bind_https(tls_dir, host, port, "cmkfs console local CA", 64 << 10, "cmkfs console", {0, ::geteuid()});
  if (!bound.ok()) {
    err << "cmkfs: " << bound.status().message() << "\n";
    return kExitError;
  }
  httplib::SSLServer& server = *bound->server;
  // A page that fails answers 500 with nothing of the error (httplib would put it in a header).
  server.set_exception_handler([](const httplib::Request&, httplib::Response& r, std::exception_ptr) {
    r.status = 500;
    r.set_content("the page could not be shown\n", "text/plain");
  });
  AuditLog audit(o.audit_log.empty() ? "/var/log/cmkfs/console.audit.jsonl" : o.audit_log, "console");
  std::mutex mu;
  web::Console::Options wo;
  wo.product = "cmkfs";
  wo.nav = {{"stores", "Stores"}};
  wo.home = "/console/stores";
  wo.verify = [](const std::string& secret) -> std::optional<int64_t> {
    if (!web::check_password_file(password_path(), secret)) return std::nullopt;
    return web::Console::kNeverExpires;
  };
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

  std::string url = "https://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                    std::to_string(bound->port) + "/console";
  bool ok = web::serve_until_signalled(server, [&] {
    out << "cmkfs console at " << url << " (CA " << tls_dir << "/ca.pem)" << std::endl;
    if (!loopback(host)) err << "cmkfs: warning: the console listens beyond this host (" << host << ")\n";
  });
  return ok ? kExitOk : kExitError;
}

}  // namespace cmkfs::fs
