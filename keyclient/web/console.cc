#include "keyclient/web/console.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "crypto/crypto.h"
#include "keyclient/web/html.h"

namespace cmkfs::web {
namespace {

using httplib::Request;
using httplib::Response;
using html::esc;
using nlohmann::json;

constexpr const char* kExpired = "/console/signin?e=expired";
// What the sign-in page may say, by code: a link can choose among these, never write its own.
const std::map<std::string, std::pair<const char*, bool>> kSigninNotes = {
    {"expired", {"Your session expired: sign in again.", true}},
    {"wrong", {"Wrong password.", true}},
    {"csrf", {"The sign-in form came without its CSRF token: open the sign-in page again.", true}},
    {"throttled", {"Too many failed sign-ins: wait a minute.", true}},
    {"busy", {"Too many sign-ins at once: try again.", true}},
    {"signedout", {"Signed out.", false}}};
// Password checks (scrypt: 32 MiB, ~0.1 s each) running at once, at most.
constexpr int kMaxVerifying = 2;

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

// __Host- cookies: Secure, for this host only, Path=/ (a browser refuses them otherwise).
void set_cookie(Response& r, const std::string& name, const std::string& value, int64_t max_age) {
  r.set_header("Set-Cookie", name + "=" + value + "; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=" +
                                 std::to_string(max_age));
}

// A field of a form's body (application/x-www-form-urlencoded) only: not of the URL, which
// httplib merges into the same parameters, and which leaks into history and logs.
std::string form_value(const Request& q, const std::string& name) {
  if (q.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) != 0) return "";
  httplib::Params params;
  httplib::detail::parse_query_text(q.body, params);
  auto it = params.find(name);
  return it == params.end() ? "" : it->second;
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

Console::Console(httplib::Server& s, std::mutex& mu, Options o)
    : server_(s),
      mu_(mu),
      o_(std::move(o)),
      session_cookie_("__Host-" + o_.product + "-session"),
      signin_cookie_("__Host-" + o_.product + "-signin") {
  sessions_.idle_seconds = o_.idle_seconds;
  sessions_.max_seconds = o_.max_seconds;
  server_.Get("/console/style.css", [](const Request&, Response& r) {
    r.set_header("Cache-Control", "max-age=3600");
    r.set_content(html::kStyle, "text/css");
  });
  server_.Get("/console", [this](const Request&, Response& r) { redirect(r, o_.home); });
  signin_routes();
}

std::string Console::layout(const std::string& title, const std::string& nav, Session* s, const Request& q,
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
  std::string note;
  bool error = false;
  if (s != nullptr && !s->flash.empty()) {
    note = s->flash;
    error = s->flash_error;
    s->flash.clear();
  } else if (auto it = kSigninNotes.find(q.get_param_value("e")); s == nullptr && it != kSigninNotes.end()) {
    note = it->second.first;
    error = it->second.second;
  }
  if (!note.empty()) {
    out += std::string("<p class=\"flash") + (error ? " error" : "") + "\" id=\"flash\">" + esc(note.substr(0, 500)) + "</p>";
  }
  return out + body + "</main></body></html>";
}

void Console::page(const std::string& pattern, const std::string& nav, const std::string& title, Page page) {
  server_.Get(pattern, [this, nav, title, page](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(mu_);
    Session* session = sessions_.find(cookie(q, session_cookie_), now());
    if (session == nullptr) return redirect(r, cookie(q, session_cookie_).empty() ? "/console/signin" : kExpired);
    std::string body = page(*session, q);
    secure_headers(r);
    r.set_content(layout(title, nav, session, q, body), "text/html; charset=utf-8");
  });
}

void Console::action(const std::string& pattern, Action action) {
  server_.Post(pattern, [this, action](const Request& q, Response& r) {
    const Client client = client_of(q.remote_addr, q.remote_port, q.local_addr, q.local_port);
    std::lock_guard<std::mutex> g(mu_);
    json where{{"via", "console"}, {"clientAddress", q.remote_addr}, {"client", client.name}};
    Session* session = sessions_.find(cookie(q, session_cookie_), now());
    if (session == nullptr) {
      where["error"] = "SessionExpired";
      o_.audit("", Outcome("", "", 401, "console " + q.path), where);
      return redirect(r, kExpired);
    }
    std::string who = session->who;
    if (!same(form_value(q, "csrf"), session->csrf)) {
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
    std::string id = cookie(q, session_cookie_);
    Outcome o = action(*session, q);  // may end the session (sign-out)
    o_.audit(who, o, where);
    if (Session* still = sessions_.find(id, now()); still != nullptr) {
      still->flash = o.message;
      still->flash_error = o.status >= 400;
    }
    redirect(r, o.next.empty() ? o_.home : o.next);
  });
}

void Console::signin_routes() {
  server_.Get("/console/signin", [this](const Request& q, Response& r) {
    std::lock_guard<std::mutex> g(mu_);
    if (sessions_.find(cookie(q, session_cookie_), now()) != nullptr) return redirect(r, o_.home);
    std::string token = random_token();
    set_cookie(r, signin_cookie_, token, 600);
    std::string body = (o_.has_password() ? "" : "<p class=\"flash error\">" + o_.no_password_hint + "</p>") +
                       "<form method=\"post\" action=\"/console/signin\">" + html::csrf_field(token) +
                       "<label>Password <input type=\"password\" name=\"password\" id=\"password\" "
                       "autocomplete=\"current-password\" autofocus></label> <button type=\"submit\">Sign in</button>"
                       "</form>";
    secure_headers(r);
    r.set_content(layout("Sign in", "", nullptr, q, body), "text/html; charset=utf-8");
  });
  server_.Post("/console/signin", [this](const Request& q, Response& r) {
    const Client client = client_of(q.remote_addr, q.remote_port, q.local_addr, q.local_port);
    json where{{"via", "console"}, {"clientAddress", q.remote_addr}, {"client", client.name}};
    auto refuse = [&](const char* code, int status, const std::string& error) {
      where["error"] = error;
      std::lock_guard<std::mutex> g(mu_);
      o_.audit("", Outcome("", "", status, "signin"), where);
      redirect(r, std::string("/console/signin?e=") + code);
    };
    if (!same(form_value(q, "csrf"), cookie(q, signin_cookie_))) return refuse("csrf", 403, "CsrfTokenMissing");
    bool throttled;
    {
      std::lock_guard<std::mutex> g(mu_);
      throttled = sessions_.throttled(client, now());
    }
    if (throttled) return refuse("throttled", 429, "TooManyRequests");  // refuse() takes the lock
    // The password check runs outside the lock (the vault's keys wait on it), and only a few at
    // once: sign-ins cannot stall the key API or exhaust memory.
    if (verifying_.fetch_add(1) >= kMaxVerifying) {
      verifying_.fetch_sub(1);
      return refuse("busy", 429, "TooManyRequests");
    }
    std::optional<int64_t> until = o_.verify(form_value(q, "password"));
    verifying_.fetch_sub(1);
    std::lock_guard<std::mutex> g(mu_);
    int64_t t = now();
    if (!until || *until <= t) {  // a token that expired meanwhile signs nobody in
      sessions_.failed(client, now());
      where["error"] = "SignInFailed";
      o_.audit("", Outcome("", "", 401, "signin"), where);
      return redirect(r, "/console/signin?e=wrong");
    }
    sessions_.succeeded(client);
    std::string id = sessions_.open("admin", t, *until);
    o_.audit("admin", Outcome("", "", 200, "signin"), where);
    set_cookie(r, session_cookie_, id, std::max<int64_t>(0, std::min(sessions_.max_seconds, *until - t)));
    redirect(r, o_.home);
  });
  action("/console/signout", [this](const Session&, const Request& q) {
    sessions_.close(cookie(q, session_cookie_));
    return Outcome("/console/signin?e=signedout", "", 200, "signout");
  });
}

std::vector<json> json_lines_tail(const std::string& path, size_t max_bytes) {
  std::vector<json> out;
  std::ifstream in(path, std::ios::ate);
  if (!in) return out;
  std::streamoff size = in.tellg(), from = std::max<std::streamoff>(0, size - static_cast<std::streamoff>(max_bytes));
  in.seekg(from);
  std::string line;
  if (from > 0) std::getline(in, line);  // a partial line
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

std::string text_of(const json& o, const char* key) {
  if (!o.is_object() || !o.contains(key) || o[key].is_null()) return "";
  return o[key].is_string() ? o[key].get<std::string>() : o[key].dump();
}

}  // namespace cmkfs::web
