// The vault's web console at /console on its HTTPS listener: sign-in (the admin password set by
// `cmkfs-vault admin set-password`, or an admin token), session cookies (Secure, HttpOnly,
// SameSite=Strict) that expire, a CSRF token on every form, no scripts (a CSP forbids them), and
// every action in the audit log with the signed-in admin. console.cc is the frame; the pages
// (identities, keys, access policies, networking, the audit log) are in console_pages.cc.
// Internal to cmkfs-vault.
#pragma once

#include <functional>
#include <string>

#include "keyclient/devvault/console_sessions.h"
#include "keyclient/devvault/context.h"

namespace cmkfs::devvault {

// A page's content (HTML), for a signed-in session; runs under the vault's lock.
using ConsolePage = std::function<std::string(Context&, const ConsoleSession&, const httplib::Request&)>;
// What a form's action did: where to go next, what to tell the admin, what to audit.
struct ConsoleOutcome {
  ConsoleOutcome(std::string next, std::string message, int status, std::string op, std::string key = "",
                 std::string version = "")
      : next(std::move(next)), message(std::move(message)), status(status), op(std::move(op)), key(std::move(key)),
        version(std::move(version)) {}
  std::string next;     // a path under /console
  std::string message;  // shown on the next page
  int status = 200;     // for the audit line (>= 400: shown as an error)
  std::string op, key, version;
};
using ConsoleAction = std::function<ConsoleOutcome(Context&, const ConsoleSession&, const httplib::Request&)>;

// GET `pattern` (a regex under /console) as a page titled `title`, `nav` marking the menu entry.
void console_page(httplib::Server& s, Context& c, const std::string& pattern, const std::string& nav,
                  const std::string& title, ConsolePage page);
// POST `pattern`: refused without a live session or without its CSRF token; otherwise runs the
// action, audits it and redirects (303) to outcome.next with its message.
void console_action(httplib::Server& s, Context& c, const std::string& pattern, ConsoleAction action);

void add_console_routes(httplib::Server& s, Context& c);
void add_console_pages(httplib::Server& s, Context& c);  // console_pages.cc

// DIR/console.password: the admin's password hash (crypto/password.h), mode 0600.
std::string console_password_path(const std::string& dir);

}  // namespace cmkfs::devvault
