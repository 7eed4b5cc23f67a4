// The key monitor driven by hand: a scripted key provider in place of a vault and a clock the
// test moves. Revocation, the offline grace, restore and automatic rotation, in milliseconds.
#include "fs/daemon/key_monitor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "tests/support/store_fixture.h"
#include "tests/support/test_util.h"

namespace cmkfs::testing {
namespace {

using namespace std::chrono_literals;
using fs::KeyState;

class FakeClock : public fs::Clock {
 public:
  std::chrono::steady_clock::time_point steady() override {
    std::lock_guard<std::mutex> g(mu_);
    return steady_;
  }
  std::chrono::system_clock::time_point wall() override {
    std::lock_guard<std::mutex> g(mu_);
    return wall_;
  }
  void advance(std::chrono::milliseconds d) {
    std::lock_guard<std::mutex> g(mu_);
    steady_ += d;
    wall_ += d;
  }
  void jump_wall(std::chrono::milliseconds d) {
    std::lock_guard<std::mutex> g(mu_);
    wall_ += d;
  }

 private:
  std::mutex mu_;
  std::chrono::steady_clock::time_point steady_{};
  std::chrono::system_clock::time_point wall_ = std::chrono::system_clock::now();
};

// A vault as the monitor sees it: wraps with a key of its own, answers as the test says.
class ScriptedVault {
 public:
  // kHang: every call waits until the answer changes (a PKCS#11 module that hangs).
  enum class Answer { kServe, kRefuse, kUnreachable, kAnotherKey, kHang };
  std::atomic<Answer> answer{Answer::kServe};
  std::atomic<int> hanging{0};  // calls waiting now
  std::atomic<bool> hang_polls{false};  // only the rotation poll's calls hang
  // A call waits here while `hung` says so, counted in `hanging`.
  void hang_while(const std::function<bool()>& hung) {
    if (!hung()) return;
    ++hanging;
    while (hung()) std::this_thread::sleep_for(1ms);
    --hanging;
  }
  std::string latest = "https://vault.test/keys/k/v1";
  int unwraps = 0, wraps = 0;
  crypto::SecretBytes kek = std::move(*crypto::random_key());
};

class ScriptedProvider : public keyclient::KeyProvider {
 public:
  explicit ScriptedProvider(ScriptedVault& v) : v_(v) {}
  Result<keyclient::WrappedKey> wrap(const crypto::SecretBytes& dek) override {
    ++v_.wraps;
    if (Status s = refusal(); !s.ok()) return s;
    keyclient::WrappedKey w{keyclient::ProviderKind::kVault, v_.latest, "test", {}, {}};
    w.blob.resize(crypto::kNonceSize + dek.size() + crypto::kTagSize);
    crypto::MutableBytes b(w.blob);
    CMKFS_RETURN_IF_ERROR(crypto::random_bytes(b.first(crypto::kNonceSize)));
    CMKFS_RETURN_IF_ERROR(crypto::gcm_seal(v_.kek.bytes(), b.first(crypto::kNonceSize), crypto::as_bytes(w.key_id),
                                           dek.bytes(), b.subspan(crypto::kNonceSize, dek.size()), b.last(crypto::kTagSize)));
    return w;
  }
  Result<crypto::SecretBytes> unwrap(const keyclient::WrappedKey& w) override {
    ++v_.unwraps;
    if (Status s = refusal(); !s.ok()) return s;
    crypto::SecretBytes dek(crypto::kKeySize);
    crypto::Bytes b(w.blob);
    if (b.size() != crypto::kNonceSize + crypto::kKeySize + crypto::kTagSize) return Status(EKEYREJECTED, "bad blob");
    Status s = crypto::gcm_open(v_.kek.bytes(), b.first(crypto::kNonceSize), crypto::as_bytes(w.key_id),
                                b.subspan(crypto::kNonceSize, crypto::kKeySize), b.last(crypto::kTagSize),
                                {dek.data(), dek.size()});
    if (!s.ok()) return Status(EKEYREJECTED, "unwrap refused");
    if (v_.answer == ScriptedVault::Answer::kAnotherKey) return std::move(*crypto::random_key());  // a forger's
    return dek;
  }
  Result<std::string> current_key_id() override {
    v_.hang_while([this] { return v_.hang_polls.load(); });
    if (Status s = refusal(); !s.ok()) return s;
    return v_.latest;
  }
  bool revocable() const override { return true; }
  Status validate() override { return Status::Ok(); }

 private:
  Status refusal() const {
    v_.hang_while([this] { return v_.answer == ScriptedVault::Answer::kHang; });
    if (v_.answer == ScriptedVault::Answer::kRefuse) return Status(EACCES, "HTTP 403 Forbidden");
    if (v_.answer == ScriptedVault::Answer::kUnreachable) return Status(EAGAIN, "connection refused");
    return Status::Ok();
  }
  ScriptedVault& v_;
};

class KeyMonitorTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    // Move the store under the scripted vault's key, as `encryption enable` would.
    keyclient::KekConfig kek;
    kek.provider = keyclient::ProviderKind::kVault;
    kek.key_identifier = "https://vault.test/keys/k";  // no version: automatic rotation
    kek.identity = "registry";
    kek.identity_endpoint = "http://169.254.169.254/metadata/identity/oauth2/token";
    ScriptedProvider p(vault);
    auto w = fs::rewrap(*store, dek, kek, p);
    ASSERT_TRUE(w.ok()) << w.status().message();
    kek.versioned_key_identifier = w->key_id;
    ASSERT_TRUE(fs::bind_store(*store, kek, dek).ok());
    vault.wraps = 0;
    options.check_interval = 30s;
    options.rotation_poll_interval = 1h;
    options.offline_grace = 15min;
    audit = std::make_unique<fs::AuditLog>(dir + "/monitor-audit.jsonl", "test");
  }
  void TearDown() override {
    monitor.reset();
    StoreTest::TearDown();
  }
  fs::KeyMonitor& make_monitor() {
    monitor = std::make_unique<fs::KeyMonitor>(*store, keyring, std::make_unique<ScriptedProvider>(vault), options,
                                               *audit, [this] { ++invalidations; }, "/mnt/test", clock);
    return *monitor;
  }
  bool serving() { return keyring.access().ok(); }
  // A check on a thread of its own, once it waits in the provider (the answer or polls hang).
  std::thread check_until_it_hangs(fs::KeyMonitor& m) {
    std::thread check([&m] { m.check_once(); });
    while (vault.hanging == 0) std::this_thread::sleep_for(1ms);
    return check;
  }
  // A check that hangs until the grace is over: the watchdog fails the mount closed meanwhile.
  std::thread fail_closed_while_a_check_hangs(fs::KeyMonitor& m) {
    vault.answer = ScriptedVault::Answer::kHang;
    std::thread check = check_until_it_hangs(m);
    clock.advance(16min);
    m.watch_once();
    EXPECT_EQ(m.state(), KeyState::kFailedClosed);
    return check;
  }

  ScriptedVault vault;
  FakeClock clock;
  fs::MonitorOptions options;
  std::unique_ptr<fs::AuditLog> audit;
  int invalidations = 0;
  std::unique_ptr<fs::KeyMonitor> monitor;
};

TEST_F(KeyMonitorTest, ARefusalRevokesAndEmptiesTheCachesThenAccessBackRestores) {
  auto& m = make_monitor();
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kAvailable);
  EXPECT_TRUE(serving());
  vault.answer = ScriptedVault::Answer::kRefuse;
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kRevoked);
  EXPECT_FALSE(serving());
  EXPECT_EQ(invalidations, 1);
  m.check_once();  // still refused: nothing more to do
  EXPECT_EQ(invalidations, 1);
  vault.answer = ScriptedVault::Answer::kServe;
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kAvailable);
  EXPECT_TRUE(serving());
  std::string log = read_text(dir + "/monitor-audit.jsonl");
  EXPECT_NE(log.find("\"event\":\"revoke\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"event\":\"restore\""), std::string::npos) << log;
}

TEST_F(KeyMonitorTest, AnUnreachableVaultIsToleratedForTheGraceThenFailsClosed) {
  auto& m = make_monitor();
  vault.answer = ScriptedVault::Answer::kUnreachable;
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kUnreachable);
  EXPECT_TRUE(serving());
  clock.advance(14min);
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kUnreachable);
  EXPECT_TRUE(serving());
  clock.advance(1min);
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kFailedClosed);
  EXPECT_FALSE(serving());
  EXPECT_EQ(invalidations, 1);
  vault.answer = ScriptedVault::Answer::kServe;
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kAvailable);
  EXPECT_TRUE(serving());
}

// A provider call that never returns (a PKCS#11 module that hangs) holds the check, not the
// grace: the watchdog counts the vault unreachable, fails closed once the grace is over while the
// call still hangs, and the mount serves again when it answers.
TEST_F(KeyMonitorTest, ACheckThatHangsStillFailsClosedWhenTheGraceEnds) {
  auto& m = make_monitor();
  m.check_once();
  vault.answer = ScriptedVault::Answer::kHang;
  std::thread check = check_until_it_hangs(m);
  clock.advance(39s);
  m.watch_once();
  EXPECT_EQ(m.state(), KeyState::kAvailable);  // not yet past four request timeouts
  clock.advance(21s);
  m.watch_once();
  EXPECT_EQ(m.state(), KeyState::kUnreachable);
  EXPECT_TRUE(serving());
  clock.advance(14min);
  m.watch_once();
  EXPECT_EQ(m.state(), KeyState::kFailedClosed);
  EXPECT_FALSE(serving());
  EXPECT_EQ(invalidations, 1);
  EXPECT_EQ(vault.hanging, 1);  // still in the provider
  vault.answer = ScriptedVault::Answer::kServe;  // it answers at last
  check.join();
  EXPECT_EQ(m.state(), KeyState::kAvailable);
  EXPECT_TRUE(serving());
  std::string log = read_text(dir + "/monitor-audit.jsonl");
  EXPECT_NE(log.find("\"event\":\"fail-closed\""), std::string::npos) << log;
  std::string status = read_text(fs::status_path(store->super.store_id, store->paths.root));
  EXPECT_NE(status.find("\"state\":\"available\""), std::string::npos) << status;
}

// A hung check that answers "unreachable" after the grace leaves the mount failed closed.
TEST_F(KeyMonitorTest, AHungCheckThatEndsUnreachableStaysFailedClosed) {
  auto& m = make_monitor();
  std::thread check = fail_closed_while_a_check_hangs(m);
  vault.answer = ScriptedVault::Answer::kUnreachable;
  check.join();
  EXPECT_EQ(m.state(), KeyState::kFailedClosed);
  EXPECT_FALSE(serving());
  EXPECT_EQ(invalidations, 1);
}

// A hung call after a good unwrap (the rotation poll's) is watched too; the grace runs from that
// unwrap, and the next check that unwraps restores.
TEST_F(KeyMonitorTest, AHungRotationPollStillFailsClosedWhenTheGraceEnds) {
  auto& m = make_monitor();
  clock.advance(1h);  // the next check polls for a new key version
  vault.hang_polls = true;
  std::thread check = check_until_it_hangs(m);
  clock.advance(1min);
  m.watch_once();
  EXPECT_EQ(m.state(), KeyState::kUnreachable);
  EXPECT_TRUE(serving());
  clock.advance(14min);
  m.watch_once();
  EXPECT_EQ(m.state(), KeyState::kFailedClosed);
  EXPECT_FALSE(serving());
  vault.hang_polls = false;
  check.join();
  EXPECT_EQ(m.state(), KeyState::kFailedClosed);
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kAvailable);
  EXPECT_TRUE(serving());
}

// A hung check that ends in a refusal after the watchdog failed closed revokes: never a restore.
TEST_F(KeyMonitorTest, AHungCheckThatEndsRefusedIsRevoked) {
  auto& m = make_monitor();
  std::thread check = fail_closed_while_a_check_hangs(m);
  vault.answer = ScriptedVault::Answer::kRefuse;
  check.join();
  EXPECT_EQ(m.state(), KeyState::kRevoked);
  EXPECT_FALSE(serving());
}

TEST_F(KeyMonitorTest, TheGraceRunsOnTheMonotonicClockNotTheWallClock) {
  auto& m = make_monitor();
  vault.answer = ScriptedVault::Answer::kUnreachable;
  m.check_once();
  clock.jump_wall(24h);  // someone sets the date: the grace is not used up
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kUnreachable);
  EXPECT_TRUE(serving());
}

TEST_F(KeyMonitorTest, AutomaticRotationRewrapsUnderTheLatestVersionOncePerPoll) {
  auto& m = make_monitor();
  vault.latest = "https://vault.test/keys/k/v2";
  m.check_once();
  EXPECT_EQ(vault.wraps, 0);  // the poll interval has not passed
  clock.advance(1h);
  m.check_once();
  EXPECT_EQ(vault.wraps, 1);
  EXPECT_EQ(store->kek.versioned_key_identifier, "https://vault.test/keys/k/v2");
  EXPECT_NE(store->kek.last_rotation, 0);
  clock.advance(1h);
  m.check_once();
  EXPECT_EQ(vault.wraps, 1);  // already under the latest
  // What is on disk now opens with the new version's wrapped key, and the superblock verifies.
  monitor.reset();
  ScriptedProvider p(vault);
  open(&p);
  EXPECT_EQ(store->kek.versioned_key_identifier, "https://vault.test/keys/k/v2");
}

TEST_F(KeyMonitorTest, AnUnwrapGivingAnotherKeyFailsClosedAsTampering) {
  auto& m = make_monitor();
  vault.answer = ScriptedVault::Answer::kAnotherKey;
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kTampered);
  EXPECT_FALSE(serving());
  EXPECT_EQ(invalidations, 1);
  std::string log = read_text(dir + "/monitor-audit.jsonl");
  EXPECT_NE(log.find("\"event\":\"tamper\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"result\":\"tampered\""), std::string::npos) << log;
}

TEST_F(KeyMonitorTest, ARestoreInstallsOnlyTheBoundKey) {
  auto& m = make_monitor();
  vault.answer = ScriptedVault::Answer::kRefuse;
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kRevoked);
  vault.answer = ScriptedVault::Answer::kAnotherKey;  // "restored", with the forger's key
  m.check_once();
  EXPECT_FALSE(serving());
  EXPECT_EQ(m.state(), KeyState::kTampered);
  vault.answer = ScriptedVault::Answer::kServe;
  m.check_once();
  EXPECT_EQ(m.state(), KeyState::kAvailable);
  EXPECT_TRUE(serving());
  EXPECT_TRUE(keyring.holds(store->super.dek_generation, dek));
}

TEST_F(KeyMonitorTest, ASuperblockChangedUnderTheMountIsNotTakenWithoutItsMac) {
  auto& m = make_monitor();
  m.check_once();
  {
    auto txn = store->meta->begin(true);
    ASSERT_TRUE(txn.ok());
    auto sb = txn->superblock();
    ASSERT_TRUE(sb.ok());
    auto kek = keyclient::KekConfig::from_json(sb->kek);
    kek->identity_endpoint = "http://127.0.0.1:1/attacker";
    sb->kek = kek->to_json();  // the MAC is left as it was
    ASSERT_TRUE(txn->put_superblock(*sb).ok());
    ASSERT_TRUE(txn->commit().ok());
  }
  m.check_once();
  m.check_once();
  EXPECT_EQ(store->kek.identity_endpoint, "http://169.254.169.254/metadata/identity/oauth2/token");
  EXPECT_EQ(m.state(), KeyState::kAvailable);  // the settings in use still unwrap the key in use
  EXPECT_TRUE(serving());
  std::string log = read_text(dir + "/monitor-audit.jsonl");
  size_t first = log.find("\"event\":\"tamper\"");
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("\"event\":\"tamper\"", first + 1), std::string::npos) << "reported once: " << log;
}

}  // namespace
}  // namespace cmkfs::testing
