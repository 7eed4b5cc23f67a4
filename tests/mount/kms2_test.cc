// A customer-managed key behind a Kubernetes KMS v2 plugin (tests/support/kms2_plugin.py, written
// from the proto, on Debian's grpcio), through a real mount: init, round trip, rotation by the
// plugin's Status, revocation by a refused Decrypt and restore, an unhealthy plugin, a plugin
// restart and one that stops answering (within and past the offline grace), and what init refuses.
#include <signal.h>
#include <sys/wait.h>

#include "tests/support/lifecycle.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

class Kms2Test : public Lifecycle<MountTest> {
 protected:
  void SetUp() override {
    Lifecycle<MountTest>::SetUp();
    // A unix socket path must stay short: not under the test's (long) directory name.
    kms = std::string(kRoot) + "/kms-" + std::to_string(::getpid()) + "-" + std::to_string(::time(nullptr) % 100000);
    stdfs::remove_all(kms);
    stdfs::create_directories(kms);
    ::chmod(kms.c_str(), 0700);
    socket = kms + "/plugin.sock";
    auto r = run("/usr/bin/python3 -m grpc_tools.protoc -I " KMS2_PROTO_DIR " --python_out=" + kms +
                 " --grpc_python_out=" + kms + " " KMS2_PROTO_DIR "/api.proto");
    ASSERT_EQ(r.rc, 0) << r.output;
    set(json::object());
    start_plugin();
  }
  void TearDown() override {
    stop_plugin();
    Lifecycle<MountTest>::TearDown();
    if (!HasFailure()) stdfs::remove_all(kms);
  }

  void set(const json& control) { write_file(kms + "/control.json", control.dump()); }
  void start_plugin(const std::string& sock = "") {
    stop_plugin();  // one at a time: none is left running when the test ends
    std::string path = sock.empty() ? socket : sock;
    plugin = ::fork();
    if (plugin == 0) {
      std::string out = dir + "/plugin.log";
      int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl("/usr/bin/python3", "python3", KMS2_PLUGIN, "--socket", path.c_str(), "--control",
              (kms + "/control.json").c_str(), "--stubs", kms.c_str(), nullptr);
      _exit(127);
    }
    ASSERT_TRUE(eventually(20, [&] { return stdfs::exists(path); })) << read_file(dir + "/plugin.log");
  }
  void stop_plugin() {
    if (plugin <= 0) return;
    ::kill(plugin, SIGKILL);
    ::waitpid(plugin, nullptr, 0);
    plugin = -1;
    stdfs::remove(socket);
  }
  std::string endpoint() const { return "kms2://" + socket; }
  CommandResult try_init(const std::string& key) {
    return run(cmkfs_binary() + " init " + store + " --key-encryption-key " + key);
  }
  void init_kms() {
    auto r = try_init(endpoint());
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  std::string version() { return show()["keyVaultProperties"]["versionedKeyIdentifier"]; }

  std::string kms, socket;
  pid_t plugin = -1;
};

TEST_F(Kms2Test, ThePluginWrapsTheDataKeyAndItsAnswersAreKeptWithIt) {
  init_kms();
  auto j = show();
  EXPECT_EQ(j["status"], "enabled");
  EXPECT_EQ(j["keySource"], "KMSv2");
  EXPECT_EQ(j["keyVaultProperties"]["keyIdentifier"], endpoint());
  EXPECT_EQ(j["keyVaultProperties"]["versionedKeyIdentifier"], "kek-1");
  EXPECT_EQ(j["keyVaultProperties"]["keyRotationEnabled"], true);
  mount_with_file();  // the plugin's Decrypt insists on the annotations its Encrypt gave
  EXPECT_EQ(read_file(at("f")), content);
  ::usleep(1500000);  // routine key checks, audited as a count when the mount ends
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
  umount();
  for (const auto& f : store_files()) EXPECT_EQ(read_file(f).find(std::string(64, 'c')), std::string::npos) << f;
  // Routine checks are a count in the audit log, not a line each.
  EXPECT_EQ(audit().find("\"reason\":\"key check\""), std::string::npos) << audit();
  EXPECT_NE(audit().find("\"event\":\"checks\""), std::string::npos) << audit();
}

TEST_F(Kms2Test, AKeyIdChangeInStatusIsARotation) {
  init_kms();
  mount_with_file("--rotation-poll-interval 1s");
  set({{"key_id", "kek-2"}});
  EXPECT_TRUE(eventually(6, [&] { return version() == "kek-2"; })) << read_file(log);
  EXPECT_FALSE(show()["keyVaultProperties"]["lastKeyRotationTimestamp"].is_null());
  set({{"key_id", "kek-2"}, {"revoked", {"kek-1"}}});  // the old key can go
  ::usleep(1200000);
  EXPECT_EQ(read_file(at("f")), content);
  EXPECT_EQ(show()["liveKeyState"]["state"], "available");
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
  EXPECT_NE(audit().find("\"event\":\"rotate\""), std::string::npos);
}

TEST_F(Kms2Test, ARefusedDecryptRevokesAndRestoringServesWithoutARemount) {
  init_kms();
  mount_with_file();
  set({{"revoked", {"kek-1"}}});
  expect_revoked();
  EXPECT_NE(read_file(log).find("key kek-1 is disabled"), std::string::npos) << read_file(log);
  set(json::object());
  expect_serving();
}

TEST_F(Kms2Test, AnUnhealthyPluginServesWithinTheGraceThenFailsClosed) {
  init_kms();
  mount_with_file("--offline-grace 5s");
  set({{"healthz", "cannot reach the cloud KMS"}});
  EXPECT_TRUE(eventually(4, [&] { return show()["liveKeyState"]["state"] == "vault-unreachable"; })) << read_file(log);
  EXPECT_EQ(read_file(at("f")), content);
  expect_failed_closed(8);
  EXPECT_NE(read_file(log).find("cannot reach the cloud KMS"), std::string::npos);
  set(json::object());
  expect_serving();
}

TEST_F(Kms2Test, APluginRestartIsRiddenOut) {
  init_kms();
  mount_with_file("--offline-grace 30s");
  stop_plugin();
  EXPECT_TRUE(eventually(4, [&] { return show()["liveKeyState"]["state"] == "vault-unreachable"; })) << read_file(log);
  EXPECT_EQ(read_file(at("f")), content);  // within the grace
  start_plugin();
  // gRPC reconnects with a backoff of its own (a second, then longer): room for two tries.
  EXPECT_TRUE(eventually(15, [&] { return show()["liveKeyState"]["state"] == "available"; })) << read_file(log);
  EXPECT_EQ(read_file(at("f")), content);
}

TEST_F(Kms2Test, APluginThatStopsAnsweringFailsClosedPastTheGrace) {
  init_kms();
  mount_with_file("--offline-grace 4s --vault-timeout 500ms");
  set({{"hang", true}});
  EXPECT_TRUE(eventually(4, [&] { return show()["liveKeyState"]["state"] == "vault-unreachable"; })) << read_file(log);
  EXPECT_EQ(read_file(at("f")), content);
  expect_failed_closed(10);
  stop_plugin();  // its workers are stuck: a new one
  set(json::object());
  start_plugin();
  expect_serving();
}

TEST_F(Kms2Test, InitRefusesAPluginItCannotTrust) {
  auto refused = [&](const std::string& key, const std::string& says) {
    auto r = try_init(key);
    EXPECT_NE(r.rc, 0) << key;
    EXPECT_NE(r.output.find(says), std::string::npos) << key << ": " << r.output;
    EXPECT_FALSE(stdfs::exists(store)) << key;
  };
  set({{"bad_annotation", true}});
  refused(endpoint(), "not a domain name");
  set({{"long_key_id", true}});
  refused(endpoint(), "1 to 1024 allowed");
  set(json::object());
  refused("kms2:///@abstract", "abstract sockets");
  refused("kms2://relative.sock", "absolute path");
  refused(endpoint() + " --identity someone", "apply to vault keys only");
  refused("kms2://" + kms + "/nobody.sock", "no KMS plugin listens");
  // A socket in a directory anybody may write could be anybody's plugin.
  std::string open_dir = kms + "/open";
  stdfs::create_directories(open_dir);
  ::chmod(open_dir.c_str(), 0777);
  start_plugin(open_dir + "/p.sock");
  refused("kms2://" + open_dir + "/p.sock", "may be written by group or others");
  // And one in a directory of the host's under one anybody may write: that directory could be
  // renamed away and another put in its place.
  stdfs::create_directories(open_dir + "/own");
  ::chmod((open_dir + "/own").c_str(), 0755);
  start_plugin(open_dir + "/own/p.sock");
  refused("kms2://" + open_dir + "/own/p.sock", "is in " + open_dir + ", which may be written by group or others");
  stop_plugin();
  start_plugin();
  init_kms();
}

}  // namespace
}  // namespace cmkfs::testing
