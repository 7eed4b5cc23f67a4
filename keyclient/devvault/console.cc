#include "keyclient/devvault/console.h"

#include "keyclient/web/password_file.h"

namespace cmkfs::devvault {

std::string console_password_path(const std::string& dir) { return dir + "/console.password"; }

void add_console_routes(httplib::Server& s, Context& c) {
  web::Console::Options o;
  o.product = "cmkfs-vault";
  o.nav = {{"identities", "Identities"}, {"keys", "Keys"}, {"policies", "Access policies"},
           {"networking", "Networking"}, {"audit", "Audit log"}};
  o.home = "/console/keys";
  // The password file is read at each sign-in: set-password takes effect without a restart.
  // The CLI's admin token signs in too, for no longer than it lasts (300 s).
  o.verify = [&c](const std::string& secret) -> std::optional<int64_t> {
    if (web::check_password_file(console_password_path(c.dir), secret)) return web::Console::kNeverExpires;
    int64_t expires = 0;
    auto token = verify_token(c.secret, secret, c.resource, &expires);
    if (token && token->principal_id == kAdmin.principal_id) return expires;
    return std::nullopt;
  };
  o.has_password = [&c] { return web::has_password_file(console_password_path(c.dir)); };
  o.no_password_hint = "No admin password is set: run <code>cmkfs-vault admin set-password</code> on the vault's "
                       "host.";
  o.audit = [&c](const std::string& who, const web::Outcome& what, const json& extra) {
    Principal admin{who, "console", kAdmin.principal_id};
    json fields = extra;
    if (!who.empty()) fields["admin"] = who;
    c.log(who.empty() ? nullptr : &admin, "console:" + what.op, what.target, what.version, what.status, fields);
  };
  o.idle_seconds = c.console_idle_seconds;
  c.console = std::make_unique<web::Console>(s, c.mu, std::move(o));
  add_console_pages(*c.console, c);
}

}  // namespace cmkfs::devvault
