// The frame of a web console under /console on an HTTPS listener (cmkfs-vault's, cmkfs's):
// sign-in by password (or whatever `verify` accepts), session cookies (__Host-, Secure, HttpOnly,
// SameSite=Strict) that expire, sign-in throttling, a CSRF token in the body of every form (the
// sign-in form's in a cookie of its own), messages kept in the session (a link cannot put words
// on a page), no scripts (a CSP forbids them), no caching, no framing, and an audit callback for
// every sign-in and every action. The pages are the caller's.
//
// Thread-safety: every handler runs under `mu`, which the caller's pages share with their data.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <optional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "keyclient/web/sessions.h"

namespace cmkfs::web {

// What a form's action did: where to go next, what to tell the user, what to audit.
struct Outcome {
  Outcome(std::string next, std::string message, int status, std::string op, std::string target = "",
          std::string version = "")
      : next(std::move(next)), message(std::move(message)), status(status), op(std::move(op)),
        target(std::move(target)), version(std::move(version)) {}
  std::string next;     // a path under /console
  std::string message;  // shown on the next page
  int status = 200;     // for the audit line (>= 400: shown as an error)
  std::string op, target, version;
};

class Console {
 public:
  static constexpr int64_t kNeverExpires = INT64_MAX;
  struct Options {
    std::string product;                                   // in the header and titles
    std::vector<std::pair<std::string, std::string>> nav;  // {path under /console/, label}
    std::string home;                                      // where /console and a sign-in lead
    // Whether `secret` signs the admin in: nullopt if not, else the unix second it stops being
    // good (kNeverExpires for a password; a token's expiry), which the session cannot outlive.
    // And whether any password is set (else a hint shows).
    std::function<std::optional<int64_t>(const std::string& secret)> verify;
    std::function<bool()> has_password;
    std::string no_password_hint;  // HTML
    // An audit line: `who` "" before sign-in; `extra` has via, clientAddress, and error if any.
    std::function<void(const std::string& who, const Outcome& what, const nlohmann::json& extra)> audit;
    int64_t idle_seconds = 15 * 60;
    int64_t max_seconds = 8 * 3600;
  };
  using Page = std::function<std::string(const Session&, const httplib::Request&)>;
  using Action = std::function<Outcome(const Session&, const httplib::Request&)>;

  // Registers /console, /console/style.css, /console/signin and /console/signout on `s`.
  Console(httplib::Server& s, std::mutex& mu, Options o);

  // GET `pattern` (a regex under /console/): `page` renders the content, `nav` marks the menu.
  void page(const std::string& pattern, const std::string& nav, const std::string& title, Page page);
  // POST `pattern`: refused without a live session or without its CSRF token; otherwise runs
  // the action, audits it and redirects (303) to outcome.next with its message.
  void action(const std::string& pattern, Action action);

 private:
  // The page; `s`'s flash is shown once (then cleared).
  std::string layout(const std::string& title, const std::string& nav, Session* s, const httplib::Request& q,
                     const std::string& body) const;
  void signin_routes();

  httplib::Server& server_;
  std::mutex& mu_;
  Options o_;
  const std::string session_cookie_, signin_cookie_;  // named per product: two consoles on one host
  Sessions sessions_;
  std::atomic<int> verifying_{0};
};

// The objects of a JSON-lines log, oldest first, from at most its last `max_bytes`: a log grows
// without bound and a page shows its end. Lines that are not JSON objects are skipped.
std::vector<nlohmann::json> json_lines_tail(const std::string& path, size_t max_bytes = 4 << 20);
// o[key] as text: a string as it is, any other value as JSON, "" when missing or null. For
// fields read from logs and status files, which are input too (nlohmann's value() throws).
std::string text_of(const nlohmann::json& o, const char* key);

}  // namespace cmkfs::web
