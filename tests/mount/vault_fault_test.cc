// The vault misbehaving, through a real TLS proxy between cmkfs and cmkfs-vault
// (tests/support/vault_proxy.py): latency, stalls longer than the request timeout, resets in the
// middle of a reply, truncated and garbage replies, throttling, 5xx. The mount serves inside the
// grace, fails closed after it and recovers when the vault does; no file request waits on the
// vault; every transition is in the audit log.
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include <chrono>

#include "tests/support/lifecycle.h"
#include "tests/support/vault_fixture.h"

namespace cmkfs::testing {
namespace {

class VaultFaultTest : public VaultTest {
 protected:
  void SetUp() override {
    VaultTest::SetUp();
    control = dir + "/proxy.mode";
    set_mode("pass");
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    proxy_pid = ::fork();
    if (proxy_pid == 0) {
      ::dup2(out[1], 1);
      ::close_range(3, ~0U, 0);
      ::execlp("python3", "python3", PROXY_SCRIPT, std::to_string(port).c_str(), vault_dir.c_str(), control.c_str(),
               nullptr);
      _exit(127);
    }
    ::close(out[1]);
    // Its port, up to the newline. The pipe stays open until the proxy is stopped: a proxy that
    // writes to a closed pipe dies of it.
    proxy_out = out[0];
    std::string line;
    char c = 0;
    ssize_t n = 0;
    while (line.size() < 16 && ((n = ::read(proxy_out, &c, 1)) == 1 || (n < 0 && errno == EINTR))) {
      if (n == 1 && c == '\n') break;
      if (n == 1) line += c;
    }
    ASSERT_GT(std::atoi(line.c_str()), 0) << "the proxy printed no port: '" << line << "'";
    proxy_url = "https://127.0.0.1:" + line;
    // The vault names itself by the proxy's address, as one behind a proxy would.
    stop_vault();
    start_vault("--public-url " + proxy_url);
    key_url = proxy_url + "/keys/cmk";
  }
  void TearDown() override {
    VaultTest::TearDown();
    if (proxy_pid > 0) {
      ::kill(proxy_pid, SIGKILL);
      ::waitpid(proxy_pid, nullptr, 0);
    }
    if (proxy_out >= 0) ::close(proxy_out);
  }
  void set_mode(const std::string& m) { write_file(control, m); }
  std::string flags() const {
    return " --key-encryption-key " + key_url + " --identity " + client_id + " --identity-endpoint " + proxy_url +
           "/metadata/identity/oauth2/token --vault-ca " + vault_dir + "/ca.pem";
  }
  void mount_through_proxy(const std::string& grace) {
    auto r = run(cmkfs_binary() + " init " + store + flags());
    ASSERT_EQ(r.rc, 0) << r.output;
    mount("--key-check-interval 300ms --vault-timeout 1s --offline-grace " + grace + " --audit-log " + dir +
          "/audit.jsonl");
    write_file(at("f"), "served from the cached key");
  }
  std::string state() {
    auto r = run(cmkfs_binary() + " encryption show " + store + " 2>/dev/null");
    auto j = nlohmann::json::parse(r.output, nullptr, false);
    return j.is_object() && j.contains("liveKeyState") ? j["liveKeyState"]["state"].get<std::string>() : "";
  }
  // The slowest of `n` reads of the file, in ms: the key checks wait on the vault, requests never.
  long slowest_read(int n) {
    long slowest = 0;
    for (int i = 0; i < n; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      (void)read_file(at("f"));
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
      slowest = std::max<long>(slowest, ms);
      ::usleep(50000);
    }
    return slowest;
  }

  std::string control, proxy_url;
  pid_t proxy_pid = -1;
  int proxy_out = -1;
};

TEST_F(VaultFaultTest, LatencyBelowTheTimeoutIsServed) {
  mount_through_proxy("1h");
  set_mode("latency 0.3");
  ::usleep(1500000);
  EXPECT_EQ(state(), "available");
  EXPECT_EQ(read_file(at("f")), "served from the cached key");
}

TEST_F(VaultFaultTest, AStalledVaultIsServedThroughThenFailsClosedThenRecovers) {
  mount_through_proxy("5s");
  set_mode("stall 30");
  EXPECT_TRUE(eventually(8, [&] { return state() == "vault-unreachable"; })) << read_file(log);
  EXPECT_LT(slowest_read(10), 2000);  // file requests do not wait for the stalled checks (30 s)
  EXPECT_EQ(read_file(at("f")), "served from the cached key");
  EXPECT_TRUE(eventually(15, [&] { return state() == "vault-unreachable-failed-closed"; })) << read_file(log);
  EXPECT_NE(::access(at("f").c_str(), R_OK), 0);
  set_mode("pass");
  EXPECT_TRUE(eventually(15, [&] { return state() == "available"; })) << read_file(log);
  EXPECT_EQ(read_file(at("f")), "served from the cached key");
  std::string audit = read_file(dir + "/audit.jsonl");
  for (const char* event : {"\"event\":\"unreachable\"", "\"event\":\"fail-closed\"", "\"event\":\"restore\""}) {
    EXPECT_NE(audit.find(event), std::string::npos) << event;
  }
}

TEST_F(VaultFaultTest, ResetsTruncationGarbageThrottlingAndServerErrorsAreOutagesNotRevocations) {
  mount_through_proxy("1h");
  for (const char* m : {"reset", "truncate", "garbage", "429", "500"}) {
    set_mode(m);
    EXPECT_TRUE(eventually(10, [&] { return state() == "vault-unreachable"; })) << m << "\n" << read_file(log);
    EXPECT_EQ(read_file(at("f")), "served from the cached key") << m;
    set_mode("pass");
    EXPECT_TRUE(eventually(10, [&] { return state() == "available"; })) << m << "\n" << read_file(log);
  }
  EXPECT_EQ(read_file(dir + "/audit.jsonl").find("\"event\":\"revoke\""), std::string::npos);
}

// A revocation the vault answers while the mount is stopping. Its invalidation of the kernel's
// caches waits for every cached page of a file, and so for a page whose READ came in after the
// session loop had ended: nobody answers that READ, so the invalidation waited forever, and the
// stop, which joins the key monitor before it unmounts, with it.
TEST_F(VaultFaultTest, ARevocationAnsweredDuringAStopDoesNotHangIt) {
  auto r = run(cmkfs_binary() + " init " + store + flags());
  ASSERT_EQ(r.rc, 0) << r.output;
  mount("--key-check-interval 300ms --vault-timeout 30s --offline-grace 1h --no-io-uring");
  const size_t size = 1 << 20;
  write_file(at("f"), std::string(size, 'x'));
  {  // its pages leave the page cache, so the reader's read-ahead sends READs
    int fd = ::open(at("f").c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::fsync(fd), 0);
    ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    ASSERT_NE(p, MAP_FAILED);
    unsigned char resident = 1;
    ASSERT_EQ(::mincore(p, 4096, &resident), 0);
    ::munmap(p, size);
    ::close(fd);
    ASSERT_EQ(resident & 1, 0) << "the file's first page is still cached";
  }
  pid_t daemon = daemon_pid(store);
  ASSERT_GT(daemon, 0);
  struct stat mounted_dev;
  ASSERT_EQ(::stat(mnt.c_str(), &mounted_dev), 0);
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  pid_t reader = ::fork();
  if (reader == 0) {  // opens the file now; when told, reads ahead: the pages stay locked for the READs
    ::close(go[1]);
    int fd = ::open(at("f").c_str(), O_RDONLY);
    char c;
    if (fd < 0 || ::read(go[0], &c, 1) != 1) _exit(2);
    _exit(::posix_fadvise(fd, 0, size, POSIX_FADV_WILLNEED) == 0 ? 0 : 1);
  }
  ::close(go[0]);
  ASSERT_GT(reader, 0);
  ::usleep(300000);  // it has opened the file
  set_mode("latency 5");
  ::usleep(600000);  // a key check now waits in the proxy; the vault will answer it "disabled"
  vault_json("key disable --name cmk");
  ASSERT_EQ(::kill(daemon, SIGTERM), 0);
  mounted = false;
  EXPECT_TRUE(wait_for_text(log, "signal received", 5)) << read_file(log);
  ::usleep(1000000);  // the session loop has ended
  EXPECT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  bool gone = wait_gone(daemon, 20);
  EXPECT_TRUE(gone) << "the stop hung\n" << read_file(log);
  EXPECT_NE(read_file(log).find("key access lost"), std::string::npos) << read_file(log);
  if (!gone) {  // a daemon thread waits in the kernel for a page: only aborting the connection frees it
    write_file("/sys/fs/fuse/connections/" + std::to_string(minor(mounted_dev.st_dev)) + "/abort", "1");
    ::kill(daemon, SIGKILL);
  }
  ::kill(reader, SIGKILL);
  ::waitpid(reader, nullptr, 0);
}

}  // namespace
}  // namespace cmkfs::testing
