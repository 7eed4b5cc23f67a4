// The console frame over a real HTTPS server: an action that waits on the network does not hold
// the pages up.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "keyclient/web/console.h"
#include "keyclient/web/https.h"

namespace cmkfs::testing {
namespace {

// "NAME=VALUE" of a reply's Set-Cookie.
std::string cookie_set_by(const httplib::Result& r) {
  std::string v = r ? r->get_header_value("Set-Cookie") : "";
  return v.substr(0, v.find(';'));
}

class ConsoleServer : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/cmkfs-web-console-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir = dir_template;
    auto b = web::bind_https(dir, "127.0.0.1", 0, "test CA", 1 << 16, "test", {0, ::geteuid()});
    ASSERT_TRUE(b.ok()) << b.status().message();
    bound = std::move(*b);
    web::Console::Options o;
    o.product = "test";
    o.home = "/console/home";
    o.verify = [](const std::string& secret) -> std::optional<int64_t> {
      if (secret != "right") return std::nullopt;
      return web::Console::kNeverExpires;
    };
    o.has_password = [] { return true; };
    o.audit = [](const std::string&, const web::Outcome&, const nlohmann::json&) {};
    console = std::make_unique<web::Console>(*bound.server, mu, std::move(o));
    console->page("/console/home", "", "Home", [](const web::Session& s, const httplib::Request&) {
      return "<p id=\"csrf\">" + s.csrf + "</p>";
    });
    serving = std::thread([this] { bound.server->listen_after_bind(); });
  }
  void TearDown() override {
    if (bound.server) bound.server->stop();
    if (serving.joinable()) serving.join();
    std::filesystem::remove_all(dir);
  }
  std::unique_ptr<httplib::SSLClient> client() {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", bound.port);
    c->enable_server_certificate_verification(false);
    c->set_read_timeout(3, 0);
    return c;
  }
  // Signs in; the session's cookie, and the CSRF token its forms carry.
  std::pair<std::string, std::string> sign_in() {
    auto c = client();
    auto form = c->Get("/console/signin");
    std::string signin = cookie_set_by(form);
    std::string token = signin.substr(signin.find('=') + 1);
    auto in = c->Post("/console/signin", {{"Cookie", signin}}, "csrf=" + token + "&password=right",
                      "application/x-www-form-urlencoded");
    std::string session = cookie_set_by(in);
    auto home = c->Get("/console/home", {{"Cookie", session}});
    std::string body = home ? home->body : "";
    size_t at = body.find("<p id=\"csrf\">");
    if (at == std::string::npos) return {session, ""};
    at += 13;
    return {session, body.substr(at, body.find('<', at) - at)};
  }

  std::string dir;
  web::BoundServer bound;
  std::mutex mu;
  std::unique_ptr<web::Console> console;
  std::thread serving;
};

TEST_F(ConsoleServer, PagesAreServedWhileAnActionOnItsOwnTurnWaits) {
  std::mutex m;
  std::condition_variable cv;
  bool entered = false, released = false;
  console->action("/console/slow", [&](const web::Session&, const httplib::Request&) {
    std::unique_lock<std::mutex> lock(m);
    entered = true;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(20), [&] { return released; });
    return web::Outcome("/console/home", "done", 200, "slow");
  }, web::Console::Turn::kOwnTurn);
  auto [session, csrf] = sign_in();
  ASSERT_FALSE(csrf.empty()) << "no session: " << session;
  auto acting = std::async(std::launch::async, [&, session = session, csrf = csrf] {
    auto reply = client()->Post("/console/slow", {{"Cookie", session}}, "csrf=" + csrf,
                                "application/x-www-form-urlencoded");
    return reply ? reply->status : -1;
  });
  {
    std::unique_lock<std::mutex> lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return entered; }));
  }
  auto t0 = std::chrono::steady_clock::now();
  auto page = client()->Get("/console/home", {{"Cookie", session}});
  auto waited = std::chrono::steady_clock::now() - t0;
  {
    std::lock_guard<std::mutex> g(m);
    released = true;
  }
  cv.notify_all();
  ASSERT_TRUE(page) << "the page did not answer while the action waited";
  EXPECT_EQ(page->status, 200);
  EXPECT_LT(waited, std::chrono::seconds(2));
  EXPECT_EQ(acting.get(), 303);
  // The action's message reached the session after it: shown once on the next page.
  auto after = client()->Get("/console/home", {{"Cookie", session}});
  ASSERT_TRUE(after);
  EXPECT_NE(after->body.find("done"), std::string::npos);
}

}  // namespace
}  // namespace cmkfs::testing
