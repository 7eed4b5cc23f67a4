// A real cmkfs-vault for a test: started on a free port in the test's directory, with one
// identity, an RSA key and an access policy (get, wrapKey, unwrapKey), stopped in TearDown. A
// test may start more (VaultServer).
#pragma once

#include <nlohmann/json.hpp>

#include "tests/support/mount_fixture.h"

namespace cmkfs::testing {

inline std::string vault_binary() { return CMKFS_VAULT_BINARY; }

// One cmkfs-vault process serving DIR on a loopback port (a free one at first; a restart keeps it).
struct VaultServer {
  std::string dir, log, url;
  int port = 0;
  pid_t pid = -1;

  void start(const std::string& extra = "") {
    ::unlink((dir + "/server.json").c_str());
    pid_t child = ::fork();
    if (child == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close_range(3, ~0U, 0);  // no inherited descriptor may keep a test's mount busy
      std::string listen = port == 0 ? "127.0.0.1:0" : "127.0.0.1:" + std::to_string(port);
      std::string cmd = vault_binary() + " --dir " + dir + " serve --listen " + listen + " " + extra;
      ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), nullptr);
      _exit(127);
    }
    pid = child;
    // Up to 30 s for a sanitizer build on a loaded machine; a vault that died is not waited for.
    for (int i = 0; i < 3000 && !stdfs::exists(dir + "/server.json") && ::waitpid(child, nullptr, WNOHANG) == 0; ++i) {
      ::usleep(10000);
    }
    if (!stdfs::exists(dir + "/server.json") && ::waitpid(child, nullptr, WNOHANG) != 0) pid = -1;  // reaped: not ours to stop
    ASSERT_TRUE(stdfs::exists(dir + "/server.json")) << read_file(log);
    auto info = nlohmann::json::parse(read_file(dir + "/server.json"));
    url = info["url"];
    port = std::stoi(url.substr(url.rfind(':') + 1));
  }
  void stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    int status;
    ::waitpid(pid, &status, 0);
    pid = -1;
  }
  // Runs `cmkfs-vault --dir DIR ARGS`, expecting success; its JSON answer.
  nlohmann::json cli(const std::string& args) const {
    auto r = run(vault_binary() + " --dir " + dir + " " + args + " 2>&1");
    EXPECT_EQ(r.rc, 0) << args << ": " << r.output;
    auto j = nlohmann::json::parse(r.output, nullptr, false);
    return j.is_discarded() ? nlohmann::json::object() : j;
  }
  std::string token_endpoint() const { return url + "/metadata/identity/oauth2/token"; }
};

class VaultTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    vault_dir = dir + "/vault";
    start_vault();
    auto id = vault_json("identity create --name registry");
    client_id = id["clientId"];
    principal_id = id["principalId"];
    vault_json("set-policy --object-id " + principal_id + " --key-permissions get wrapKey unwrapKey");
    vault_json("key create --name cmk");
    key_url = url + "/keys/cmk";
  }

  void TearDown() override {
    MountTest::TearDown();  // unmount first: the daemon may be talking to the vault
    stop_vault();
  }

  void start_vault(const std::string& extra = "") {
    primary.dir = vault_dir;
    primary.log = dir + "/vault.log";
    primary.port = port;
    primary.start(extra);
    url = primary.url;
    port = primary.port;
  }
  void stop_vault() { primary.stop(); }
  nlohmann::json vault_json(const std::string& args) { return primary.cli(args); }

  std::string vault_flags(const std::string& key) const {
    return " --key-encryption-key " + key + " --identity " + client_id + " --identity-endpoint " + url +
           "/metadata/identity/oauth2/token --vault-ca " + vault_dir + "/ca.pem";
  }
  void init_vault(const std::string& key, const std::string& extra = "") {
    auto r = run(cmkfs_binary() + " init " + store + vault_flags(key) + " " + extra);
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  // Lines of the vault's audit log with this operation (wrapKey, unwrapKey, token, ...).
  int vault_calls(const std::string& op) {
    std::istringstream in(read_file(vault_dir + "/audit.log"));
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line.find("\"operation\":\"" + op + "\"") != std::string::npos;
    return n;
  }

  VaultServer primary;
  std::string vault_dir, url, key_url, client_id, principal_id;
  int port = 0;
};

}  // namespace cmkfs::testing
