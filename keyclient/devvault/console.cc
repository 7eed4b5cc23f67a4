#include "keyclient/devvault/console.h"

#include <fstream>
#include <sstream>

#include "crypto/base/html.h"
#include "crypto/crypto.h"
#include "crypto/password.h"

namespace cmkfs::devvault {
namespace {

using httplib::Request;
using httplib::Response;
using html::esc;

constexpr const char* kSessionCookie = "cmkfs_console";
constexpr const char* kSigninCookie = "cmkfs_signin";  // the sign-in form's own CSRF token

std::string cookie(const Request& q, const std::string& name) {
  std::string all = q.get_header_value("Cookie");
  std::istringstream in(all);
  std::string part;
  while (std::getline(in, part, ';')) {
    size_t start = part.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    part = part.substr(start);
    if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
  }
  return "";
}

void set_cookie(Response& r, const std::string& name, const std::string& value, int64_t max_age) {
  r.set_header("Set-Cookie", name + "=" + value + "; Path=/console; Secure; HttpOnly; SameSite=Strict; Max-Age=" +
                                 std::to_string(max_age));
}

void secure_headers(Response& r) {
  r.set_header("Content-Security-Policy", html::kContentSecurityPolicy);
  r.set_header("X-Content-Type-Options", "nosniff");
  r.set_header("X-Frame-Options", "DENY");
  r.set_header("Referrer-Policy", "no-referrer");
  r.set_header("Cache-Control", "no-store");
}

void redirect(Response& r, const std::string& to) {
  secure_headers(r);
  r.status = 303;
  r.set_header("Location", to);
}

bool same(const std::string& a, const std::string& b) {
  return !a.empty() && crypto::equal_constant_time(crypto::as_bytes(a), crypto::as_bytes(b));
}

const char* kNav[][2] = {{"identities", "Identities"}, {"keys", "Keys"}, {"policies", "Access policies"},
                         {"networking", "Networking"}, {"audit", "Audit log"}};

std::string layout(const std::string& title, const std::string& nav, const ConsoleSession* s, const Request& q,
                   const std::string& body) {
  std::string out = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + esc(title) +
                    " - cmkfs-vault</title><link rel=\"stylesheet\" href=\"/console/style.css\"></head><body><header>"
                    "<strong>cmkfs-vault</strong>";
  if (s != nullptr) {
    for (const auto& [id, label] : kNav) {
      out += std::string("<a href=\"/console/") + id + "\"" + (nav == id ? " class=\"on\"" : "") + ">" + label + "</a>";
    }
    out += "<span class=\"who\">" + esc(s->who) + " " +
           html::button_form("/console/signout", "Sign out", s->csrf) + "</span>";
  }
  out += "</header><main><h1>" + esc(title) + "</h1>";
  if (q.has_param("msg")) {
    out += std::string("<p class=\"flash") + (q.get_param_value("err") == "1" ? " error" : "") + "\" id=\"flash\">" +
           esc(q.get_param_value("msg").substr(0, 500)) + "</p>";
  }
  return out + body + "</main></body></html>";
}

Principal console_principal(const ConsoleSession& s) { return Principal{s.who, "console", kAdmin.principal_id}; }

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

}  // namespace

std::string console_password_path(const std::string& dir) { return dir + "/console.password"; }

void console_page(httplib::Server& s, Context& c, const std::string& pattern, const std::string& nav,
                  const std::string& title, ConsolePage page) {
  s.Get(pattern, [&c, nav, title, page](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    const ConsoleSession* session = c.console.find(cookie(q, kSessionCookie), unix_now());
    if (session == nullptr) {
      bool had = !cookie(q, kSessionCookie).empty();
      return redirect(r, std::string("/console/signin") + (had ? "?msg=Your+session+expired%3A+sign+in+again&err=1" : ""));
    }
    std::string body = page(c, *session, q);
    secure_headers(r);
    r.set_content(layout(title, nav, session, q, body), "text/html; charset=utf-8");
  });
}

void console_action(httplib::Server& s, Context& c, const std::string& pattern, ConsoleAction action) {
  s.Post(pattern, [&c, action](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    const ConsoleSession* session = c.console.find(cookie(q, kSessionCookie), unix_now());
    json where{{"via", "console"}, {"clientAddress", q.remote_addr}};
    if (session == nullptr) {
      c.log(nullptr, "console " + q.path, "", "", 401, where);
      return redirect(r, "/console/signin?msg=Your+session+expired%3A+sign+in+again&err=1");
    }
    Principal who = console_principal(*session);
    where["admin"] = session->who;
    if (!same(q.get_param_value("csrf"), session->csrf)) {
      where["error"] = "CsrfTokenMissing";
      c.log(&who, "console " + q.path, "", "", 403, where);
      secure_headers(r);
      r.status = 403;
      r.set_content(layout("Refused", "", session, q,
                           "<p class=\"flash error\" id=\"flash\">This form came without its CSRF token: refused, "
                           "nothing was changed.</p><p><a href=\"/console/keys\">Back</a></p>"),
                    "text/html; charset=utf-8");
      return;
    }
    ConsoleOutcome o = action(c, *session, q);
    c.log(&who, "console:" + o.op, o.key, o.version, o.status, where);
    std::string next = o.next.empty() ? "/console/keys" : o.next;
    if (!o.message.empty()) {
      next += std::string(next.find('?') == std::string::npos ? "?" : "&") + "msg=" +
              httplib::detail::encode_query_param(o.message) + (o.status >= 400 ? "&err=1" : "");
    }
    redirect(r, next);
  });
}

void add_console_routes(httplib::Server& s, Context& c) {
  s.Get("/console/style.css", [](const Request&, Response& r) {
    r.set_header("Cache-Control", "max-age=3600");
    r.set_content(html::kStyle, "text/css");
  });
  s.Get("/console", [](const Request&, Response& r) { redirect(r, "/console/keys"); });
  s.Get("/console/signin", [&c](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    if (c.console.find(cookie(q, kSessionCookie), unix_now()) != nullptr) return redirect(r, "/console/keys");
    std::string token = random_hex(32);
    set_cookie(r, kSigninCookie, token, 600);
    bool no_password = read_small_file(console_password_path(c.dir)).empty();
    std::string body =
        std::string(no_password ? "<p class=\"flash error\">No admin password is set: run <code>cmkfs-vault admin "
                                  "set-password</code> on the vault's host, or sign in with an admin token.</p>"
                                : "") +
        "<form method=\"post\" action=\"/console/signin\">" + html::csrf_field(token) +
        "<label>Password or admin token <input type=\"password\" name=\"password\" id=\"password\" "
        "autocomplete=\"current-password\" autofocus></label> <button type=\"submit\">Sign in</button></form>";
    secure_headers(r);
    r.set_content(layout("Sign in", "", nullptr, q, body), "text/html; charset=utf-8");
  });
  s.Post("/console/signin", [&c](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(c.mu);
    int64_t now = unix_now();
    json where{{"via", "console"}, {"clientAddress", q.remote_addr}};
    auto refuse = [&](const std::string& why, int status, const std::string& error) {
      where["error"] = error;
      c.log(nullptr, "console:signin", "", "", status, where);
      redirect(r, "/console/signin?err=1&msg=" + httplib::detail::encode_query_param(why));
    };
    if (!same(q.get_param_value("csrf"), cookie(q, kSigninCookie))) {
      return refuse("The sign-in form came without its CSRF token: open the sign-in page again.", 403,
                    "CsrfTokenMissing");
    }
    if (c.console.throttled(q.remote_addr, now)) {
      return refuse("Too many failed sign-ins: wait a minute.", 429, "TooManyRequests");
    }
    std::string password = q.get_param_value("password");
    std::string hash = read_small_file(console_password_path(c.dir));
    auto token = verify_token(c.secret, password, c.resource);
    bool ok = (!hash.empty() && crypto::verify_password(password, hash)) ||
              (token && token->principal_id == kAdmin.principal_id);
    if (!ok) {
      c.console.failed(q.remote_addr, now);
      return refuse("Wrong password.", 401, "SignInFailed");
    }
    c.console.succeeded(q.remote_addr);
    std::string id = c.console.open(kAdmin.name, now);
    Principal who = console_principal(*c.console.find(id, now));
    c.log(&who, "console:signin", "", "", 200, where);
    set_cookie(r, kSessionCookie, id, c.console.max_seconds);
    redirect(r, "/console/keys");
  });
  console_action(s, c, "/console/signout", [](Context& c, const ConsoleSession&, const Request& q) {
    c.console.close(cookie(q, kSessionCookie));
    return ConsoleOutcome{"/console/signin", "Signed out.", 200, "signout", "", ""};
  });
  add_console_pages(s, c);
}

}  // namespace cmkfs::devvault
