// The vault's web console at /console on its HTTPS listener (the frame: keyclient/web/console.h):
// sign-in with the admin password set by `cmkfs-vault admin set-password` or with an admin token,
// and pages following the article's portal steps (console_pages.cc). Internal to cmkfs-vault.
#pragma once

#include <string>

#include "keyclient/devvault/context.h"
#include "keyclient/web/console.h"

namespace cmkfs::devvault {

// Registers the console on `s`; `c` outlives the server.
void add_console_routes(httplib::Server& s, Context& c);
void add_console_pages(web::Console& console, Context& c);  // console_pages.cc

// DIR/console.password: the admin's password hash (crypto/password.h), mode 0600.
std::string console_password_path(const std::string& dir);

}  // namespace cmkfs::devvault
