#include "keyclient/web/console.h"

#include <sstream>

#include "crypto/crypto.h"
#include "keyclient/web/html.h"

namespace cmkfs::web {
namespace {

using httplib::Request;
using httplib::Response;
using html::esc;
using nlohmann::json;

constexpr const char* kSessionCookie = "cmkfs_console";
constexpr const char* kSigninCookie = "cmkfs_signin";  // the sign-in form's own CSRF token
constexpr const char* kExpired = "/console/signin?msg=Your+session+expired%3A+sign+in+again&err=1";

int64_t now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string cookie(const Request& q, const std::string& name) {
  std::istringstream in(q.get_header_value("Cookie"));
  std::string part;
  while (std::getline(in, part, ';')) {
    size_t start = part.find_first_not_of(' ');
    if (start != std::string::npos && part.compare(start, name.size() + 1, name + "=") == 0) {
      return part.substr(start + name.size() + 1);
    }
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
  return !a.empty() && a.size() == b.size() && crypto::equal_constant_time(crypto::as_bytes(a), crypto::as_bytes(b));
}

}  // namespace

Console::Console(httplib::Server& s, std::mutex& mu, Options o) : server_(s), mu_(mu), o_(std::move(o)) {
  sessions_.idle_seconds = o_.idle_seconds;
  sessions_.max_seconds = o_.max_seconds;
  server_.Get("/console/style.css", [](const Request&, Response& r) {
    r.set_header("Cache-Control", "max-age=3600");
    r.set_content(html::kStyle, "text/css");
  });
  server_.Get("/console", [this](const Request&, Response& r) { redirect(r, o_.home); });
  signin_routes();
}

std::string Console::layout(const std::string& title, const std::string& nav, const Session* s, const Request& q,
                            const std::string& body) const {
  std::string out = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + esc(title) + " - " +
                    esc(o_.product) + "</title><link rel=\"stylesheet\" href=\"/console/style.css\"></head><body>"
                    "<header><strong>" + esc(o_.product) + "</strong>";
  if (s != nullptr) {
    for (const auto& [path, label] : o_.nav) {
      out += "<a href=\"/console/" + esc(path) + "\"" + (nav == path ? " class=\"on\"" : "") + ">" + esc(label) + "</a>";
    }
    out += "<span class=\"who\">" + esc(s->who) + " " + html::button_form("/console/signout", "Sign out", s->csrf) +
           "</span>";
  }
  out += "</header><main><h1>" + esc(title) + "</h1>";
  if (q.has_param("msg")) {
    out += std::string("<p class=\"flash") + (q.get_param_value("err") == "1" ? " error" : "") + "\" id=\"flash\">" +
           esc(q.get_param_value("msg").substr(0, 500)) + "</p>";
  }
  return out + body + "</main></body></html>";
}

void Console::page(const std::string& pattern, const std::string& nav, const std::string& title, Page page) {
  server_.Get(pattern, [this, nav, title, page](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(mu_);
    const Session* session = sessions_.find(cookie(q, kSessionCookie), now());
    if (session == nullptr) return redirect(r, cookie(q, kSessionCookie).empty() ? "/console/signin" : kExpired);
    std::string body = page(*session, q);
    secure_headers(r);
    r.set_content(layout(title, nav, session, q, body), "text/html; charset=utf-8");
  });
}

void Console::action(const std::string& pattern, Action action) {
  server_.Post(pattern, [this, action](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(mu_);
    json where{{"via", "console"}, {"clientAddress", q.remote_addr}};
    const Session* session = sessions_.find(cookie(q, kSessionCookie), now());
    if (session == nullptr) {
      where["error"] = "SessionExpired";
      o_.audit("", Outcome("", "", 401, "console " + q.path), where);
      return redirect(r, kExpired);
    }
    std::string who = session->who;
    if (!same(q.get_param_value("csrf"), session->csrf)) {
      where["error"] = "CsrfTokenMissing";
      o_.audit(who, Outcome("", "", 403, "console " + q.path), where);
      secure_headers(r);
      r.status = 403;
      r.set_content(layout("Refused", "", session, q,
                           "<p class=\"flash error\" id=\"flash\">This form came without its CSRF token: refused, "
                           "nothing was changed.</p><p><a href=\"" + esc(o_.home) + "\">Back</a></p>"),
                    "text/html; charset=utf-8");
      return;
    }
    Outcome o = action(*session, q);  // may end the session (sign-out)
    o_.audit(who, o, where);
    std::string next = o.next.empty() ? o_.home : o.next;
    if (!o.message.empty()) {
      next += std::string(next.find('?') == std::string::npos ? "?" : "&") + "msg=" +
              httplib::detail::encode_query_param(o.message) + (o.status >= 400 ? "&err=1" : "");
    }
    redirect(r, next);
  });
}

void Console::signin_routes() {
  server_.Get("/console/signin", [this](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(mu_);
    if (sessions_.find(cookie(q, kSessionCookie), now()) != nullptr) return redirect(r, o_.home);
    std::string token = random_token();
    set_cookie(r, kSigninCookie, token, 600);
    std::string body = (o_.has_password() ? "" : "<p class=\"flash error\">" + o_.no_password_hint + "</p>") +
                       "<form method=\"post\" action=\"/console/signin\">" + html::csrf_field(token) +
                       "<label>Password <input type=\"password\" name=\"password\" id=\"password\" "
                       "autocomplete=\"current-password\" autofocus></label> <button type=\"submit\">Sign in</button>"
                       "</form>";
    secure_headers(r);
    r.set_content(layout("Sign in", "", nullptr, q, body), "text/html; charset=utf-8");
  });
  server_.Post("/console/signin", [this](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(mu_);
    json where{{"via", "console"}, {"clientAddress", q.remote_addr}};
    auto refuse = [&](const std::string& why, int status, const std::string& error) {
      where["error"] = error;
      o_.audit("", Outcome("", "", status, "signin"), where);
      redirect(r, "/console/signin?err=1&msg=" + httplib::detail::encode_query_param(why));
    };
    if (!same(q.get_param_value("csrf"), cookie(q, kSigninCookie))) {
      return refuse("The sign-in form came without its CSRF token: open the sign-in page again.", 403,
                    "CsrfTokenMissing");
    }
    if (sessions_.throttled(q.remote_addr, now())) return refuse("Too many failed sign-ins: wait a minute.", 429, "TooManyRequests");
    if (!o_.verify(q.get_param_value("password"))) {
      sessions_.failed(q.remote_addr, now());
      return refuse("Wrong password.", 401, "SignInFailed");
    }
    sessions_.succeeded(q.remote_addr);
    std::string id = sessions_.open("admin", now());
    o_.audit("admin", Outcome("", "", 200, "signin"), where);
    set_cookie(r, kSessionCookie, id, sessions_.max_seconds);
    redirect(r, o_.home);
  });
  action("/console/signout", [this](const Session&, const Request& q) {
    sessions_.close(cookie(q, kSessionCookie));
    return Outcome("/console/signin", "Signed out.", 200, "signout");
  });
}

}  // namespace cmkfs::web
