// A customer-managed key in an HSM over PKCS#11 (SoftHSM2), through a real mount: init, round
// trip, automatic and manual rotation, revocation (unwrap usage taken away, the key deleted, the
// token pulled and its PIN changed) and restore without a remount, an HSM outage within and past
// the offline grace, and what init refuses. The module cmkfs loads is a shim in front of SoftHSM
// (tests/support/pkcs11_shim.cc) that can fail on demand.
#include <algorithm>

#include "keyclient/keyclient.h"
#include "tests/support/lifecycle.h"

namespace cmkfs::testing {
namespace {

constexpr const char* kSoftHsm = "/usr/lib/softhsm/libsofthsm2.so";
constexpr const char* kPin = "hsm-user-pin-7d3c91";

class Pkcs11Test : public Lifecycle<MountTest> {
 protected:
  void SetUp() override {
    Lifecycle<MountTest>::SetUp();
    hsm = dir + "/hsm";
    stdfs::create_directories(hsm + "/tokens");
    write_file(hsm + "/softhsm2.conf", "directories.tokendir = " + hsm + "/tokens\nobjectstore.backend = file\n"
                                       "log.level = ERROR\n");
    ::setenv("SOFTHSM2_CONF", (hsm + "/softhsm2.conf").c_str(), 1);
    ::setenv("CMKFS_PKCS11_SHIM_TARGET", kSoftHsm, 1);
    ::setenv("CMKFS_PKCS11_SHIM_STATE", (hsm + "/fault").c_str(), 1);
    ::setenv("CMKFS_PKCS11_SHIM_LOGINS", (hsm + "/logins").c_str(), 1);
    auto r = run("softhsm2-util --init-token --free --label T --so-pin so-pin-1 --pin " + std::string(kPin));
    ASSERT_EQ(r.rc, 0) << r.output;
    pin_file = hsm + "/pin";
    write_file(pin_file, std::string(kPin) + "\n");
    ::chmod(pin_file.c_str(), 0600);
  }

  // What the HSM's administrator does (tests/support/pkcs11_admin.cc), on SoftHSM itself.
  void admin(const std::string& args, const std::string& pin = kPin) {
    auto r = run(std::string(PKCS11_ADMIN) + " " + kSoftHsm + " T " + pin + " " + args);
    ASSERT_EQ(r.rc, 0) << args << ": " << r.output;
  }
  void fault(const std::string& what) { write_file(hsm + "/fault", what); }

  std::string uri(const std::string& object = "cmk", const std::string& id = "") const {
    return "'pkcs11:token=T;object=" + object + (id.empty() ? "" : ";id=%" + id) +
           "?module-path=" + PKCS11_SHIM + "&pin-source=file:" + pin_file + "'";
  }
  CommandResult try_init(const std::string& key_uri) {
    return run(cmkfs_binary() + " init " + store + " --key-encryption-key " + key_uri);
  }
  void init_hsm(const std::string& key_uri) {
    auto r = try_init(key_uri);
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  std::string version() { return show()["keyVaultProperties"]["versionedKeyIdentifier"]; }
  size_t logins() {
    std::string l = read_file(hsm + "/logins");
    return std::count(l.begin(), l.end(), '\n');
  }

  void TearDown() override {
    if (!hsm.empty()) fault("");  // a hung call must answer before the unmount can end
    Lifecycle<MountTest>::TearDown();
  }

  std::string hsm, pin_file;
};

TEST_F(Pkcs11Test, AnAesKeyWrapsTheDataKeyAndNothingSecretIsStoredOrLogged) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  auto j = show();
  EXPECT_EQ(j["status"], "enabled");
  EXPECT_EQ(j["keySource"], "PKCS#11");
  EXPECT_EQ(j["keyVaultProperties"]["keyRotationEnabled"], true);
  EXPECT_NE(version().find(";id=%01?"), std::string::npos) << version();
  EXPECT_EQ(j["keyVaultProperties"]["identity"], nullptr);
  size_t before = logins();
  mount_with_file();
  EXPECT_EQ(read_file(at("f")), content);
  ::usleep(2000000);  // four key checks
  EXPECT_EQ(logins() - before, 1u) << "one login for the mount, its session reused by every check";
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
  umount();
  // The PIN is nowhere: not in the store, the host binding, the log or the audit log.
  std::vector<std::string> files = store_files();
  for (auto& e : stdfs::recursive_directory_iterator(host)) {
    if (e.is_regular_file()) files.push_back(e.path().string());
  }
  files.push_back(log);
  files.push_back(dir + "/audit.jsonl");
  for (const auto& f : files) {
    std::string data = read_file(f);
    EXPECT_EQ(data.find(kPin), std::string::npos) << f;
    EXPECT_EQ(data.find(std::string(64, 'c')), std::string::npos) << f;
  }
  EXPECT_NE(audit().find("\"event\":\"unwrap\""), std::string::npos);
}

TEST_F(Pkcs11Test, AnRsaKeyPairWrapsWithOaep) {
  admin("keygen-rsa cmk 01 2048");
  init_hsm(uri());
  mount_with_file();
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
}

TEST_F(Pkcs11Test, RevokedByTakingAwayUnwrapRestoredByGivingItBack) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file();
  admin("usage cmk 01 off");
  expect_revoked();
  EXPECT_NE(read_file(log).find("CKR_KEY_FUNCTION_NOT_PERMITTED"), std::string::npos) << read_file(log);
  admin("usage cmk 01 on");
  expect_serving();
  EXPECT_NE(audit().find("\"event\":\"revoke\""), std::string::npos);
  EXPECT_NE(audit().find("\"event\":\"restore\""), std::string::npos);
}

TEST_F(Pkcs11Test, RevokedByDeletingTheKeyRestoredFromTheTokensBackup) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file();
  auto r = run("cp -a " + hsm + "/tokens " + hsm + "/backup");
  ASSERT_EQ(r.rc, 0) << r.output;
  admin("delete cmk 01");
  expect_revoked();
  r = run("cp -a " + hsm + "/backup/. " + hsm + "/tokens/");
  ASSERT_EQ(r.rc, 0) << r.output;
  expect_serving();
}

TEST_F(Pkcs11Test, APulledTokenRevokesAndPuttingItBackRestores) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file();
  fault("removed");
  expect_revoked();
  EXPECT_NE(read_file(log).find("token T is not present"), std::string::npos) << read_file(log);
  fault("");  // its sessions were closed with it: the daemon logs in again
  expect_serving();
}

// SoftHSM checks a PIN against what it read when the daemon loaded it, so a changed PIN is seen
// at the next mount here (a real HSM checks it at the next login: after a pulled token).
TEST_F(Pkcs11Test, AChangedPinRefusesTheMountAndThePinBackServesIt) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  admin("set-pin another-pin-5521");
  auto r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;  // kExitKey: the key is missing, wrong, or refused
  EXPECT_NE(r.output.find("refused the PIN"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(kPin), std::string::npos) << r.output;
  admin(std::string("set-pin ") + kPin, "another-pin-5521");
  mount_with_file();
  EXPECT_EQ(read_file(at("f")), content);
}

TEST_F(Pkcs11Test, AnHsmOutageServesWithinTheGraceThenFailsClosedThenRecovers) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file("--offline-grace 8s");
  fault("outage");
  EXPECT_TRUE(eventually(4, [&] { return show()["liveKeyState"]["state"] == "vault-unreachable"; })) << read_file(log);
  EXPECT_EQ(read_file(at("f")), content);
  expect_failed_closed(12);
  fault("");
  expect_serving();
}

// A module that stops answering (a hung driver) holds the key check, not the grace: the mount
// fails closed when the grace ends while the call still hangs, and serves once it answers.
TEST_F(Pkcs11Test, AModuleThatHangsFailsClosedWhenTheGraceEndsAndServesWhenItAnswers) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  // A grace long enough to see the state and read within it: under a sanitizer, on a loaded
  // machine, 6 s had passed by the read.
  mount_with_file("--offline-grace 12s --vault-timeout 1s");
  fault("hang");
  EXPECT_TRUE(eventually(5, [&] { return show()["liveKeyState"]["state"] == "vault-unreachable"; })) << read_file(log);
  EXPECT_EQ(read_file(at("f")), content);
  expect_failed_closed(20);
  EXPECT_NE(read_file(log).find("has not returned"), std::string::npos) << read_file(log);
  fault("");
  expect_serving();
}

// An unmount waits for a hung key check only as long as the watchdog does, then flushes and ends
// without it: before, the daemon waited for the module forever and the unmount with it.
TEST_F(Pkcs11Test, AnUnmountDoesNotWaitForAHungModule) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file("--offline-grace 120s --vault-timeout 1s");
  write_file(at("late"), "written while the module hangs");
  fault("hang");
  EXPECT_TRUE(eventually(10, [&] { return show()["liveKeyState"]["state"] == "vault-unreachable"; })) << read_file(log);
  release();
  auto r = run("timeout 30 " + cmkfs_binary() + " umount " + mnt);
  mounted = r.rc != 0;
  EXPECT_EQ(r.rc, 0) << r.output << read_file(log);
  EXPECT_NE(read_file(log).find("not waiting for it"), std::string::npos) << read_file(log);
  fault("");
  if (mounted) umount();
  mount();
  EXPECT_EQ(read_file(at("late")), "written while the module hangs");
}

// A command, or a mount's start, whose module stops answering gives up after four request
// timeouts and says why: before, `cmkfs fsck` and `cmkfs mount` waited for the module forever.
TEST_F(Pkcs11Test, ACommandOrAMountWhoseModuleHangsGivesUpSayingWhy) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  fault("hang");
  for (const std::string& command : {" fsck " + store, " mount " + store + " " + mnt + " --log-file " + log}) {
    auto started = std::chrono::steady_clock::now();
    auto r = run("timeout 60 " + cmkfs_binary() + command + " --vault-timeout 1s");
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (r.rc == 0) mounted = true;
    EXPECT_EQ(r.rc, fs::kExitKey) << command << ": " << r.output;
    EXPECT_NE(r.output.find("the key provider has not answered in 4 s"), std::string::npos) << r.output;
    EXPECT_GE(seconds, 3.5) << command;
    EXPECT_LT(seconds, 30) << command;
  }
  EXPECT_NE(read_file(log).find("has not answered"), std::string::npos) << read_file(log);
  fault("");
  auto r = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(r.rc, 0) << r.output;
  mount();
}

TEST_F(Pkcs11Test, WithoutAnIdTheHighestIdIsFollowed) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file("--rotation-poll-interval 1s");
  admin("keygen-aes cmk 02");
  EXPECT_TRUE(eventually(6, [&] { return version().find(";id=%02?") != std::string::npos; })) << read_file(log);
  EXPECT_FALSE(show()["keyVaultProperties"]["lastKeyRotationTimestamp"].is_null());
  admin("usage cmk 01 off");  // the old version can go
  ::usleep(1200000);
  EXPECT_EQ(read_file(at("f")), content);
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
  EXPECT_NE(audit().find("\"event\":\"rotate\""), std::string::npos);
}

// Many tokens let anyone create public objects without the PIN. A public, extractable key of a
// value the attacker knows, with a higher CKA_ID, would take the data key at the next rotation.
TEST_F(Pkcs11Test, APlantedExtractableKeyIsNeverTheNextVersion) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file("--rotation-poll-interval 1s");
  admin("plant-aes cmk 09");
  ::usleep(2500000);  // two rotation polls
  EXPECT_NE(version().find(";id=%01?"), std::string::npos) << version();
  EXPECT_EQ(read_file(at("f")), content);
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
}

// Each refused login counts towards locking the token for everyone: a PIN the token refused is
// not tried again until the PIN file changes.
TEST_F(Pkcs11Test, ARefusedPinIsNotRetriedUntilThePinFileChanges) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file();
  fault("removed");
  expect_revoked();
  write_file(pin_file, "a-wrong-pin\n");
  size_t before = logins();
  fault("");  // the token is back; its sessions and login went with it
  EXPECT_TRUE(eventually(3, [&] { return logins() > before; }));
  ::usleep(2000000);  // four more checks
  EXPECT_EQ(logins(), before + 1) << "one login with the wrong PIN, then none until the file changes";
  EXPECT_EQ(open_errno(at("f")), EACCES);
  write_file(pin_file, std::string(kPin) + "\n");
  expect_serving();
}

// A store makes the daemon build a new provider whenever its settings change, and anything in the
// store can change: the refusal must outlive the provider, or each new one tries the PIN again.
TEST_F(Pkcs11Test, ARefusedPinIsNotRetriedByTheNextProviderOfTheSameKey) {
  admin("keygen-aes cmk 01");
  write_file(pin_file, "a-wrong-pin\n");
  keyclient::KekConfig config;
  config.provider = keyclient::ProviderKind::kPkcs11;
  config.key_identifier = uri().substr(1, uri().size() - 2);  // without the shell's quotes
  size_t before = logins();
  for (int i = 0; i < 4; ++i) {
    auto provider = keyclient::make_provider(config, Id128{});
    ASSERT_TRUE(provider.ok()) << provider.status().message();
    auto latest = (*provider)->current_key_id();
    EXPECT_EQ(latest.status().code(), EACCES);
    EXPECT_NE(latest.status().message().find("refused the PIN"), std::string::npos) << latest.status().message();
  }
  EXPECT_EQ(logins(), before + 1) << "one login with the wrong PIN, then none until the file changes";
  write_file(pin_file, std::string(kPin) + "\n");
  auto provider = keyclient::make_provider(config, Id128{});
  ASSERT_TRUE(provider.ok());
  EXPECT_TRUE((*provider)->current_key_id().ok());
}

// An automatic rotation follows the newest version only if it is as strong as init demands.
TEST_F(Pkcs11Test, AWeakNewVersionIsNotFollowed) {
  admin("keygen-rsa cmk 01 2048");
  init_hsm(uri());
  mount_with_file("--rotation-poll-interval 1s");
  admin("keygen-rsa cmk 02 1024");
  ASSERT_TRUE(wait_for_text(log, "fewer than 2048 bits", 6)) << read_file(log);
  EXPECT_NE(version().find(";id=%01?"), std::string::npos) << version();
  EXPECT_EQ(read_file(at("f")), content);
  // Wrapping goes on with the newest strong version: a data-key rotation still works.
  auto r = run(cmkfs_binary() + " encryption rotate-data-key " + mnt);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(eventually(30, [&] { return data_key_rotated_to(2); })) << read_file(log);
  EXPECT_NE(version().find(";id=%01?"), std::string::npos) << version();
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
}

// A module that answers CKA_EXTRACTABLE without saying what it is must not make an extractable
// key pass for an unextractable one (the read used to start from CK_FALSE).
TEST_F(Pkcs11Test, AnUnansweredExtractableIsNotTakenForNo) {
  admin("keygen-aes cmk 01");
  init_hsm(uri());
  mount_with_file("--rotation-poll-interval 1s");
  admin("keygen-aes cmk 02 32 extractable");
  fault("mute-extractable");
  ::usleep(2500000);  // two rotation polls
  fault("");
  EXPECT_NE(version().find(";id=%01?"), std::string::npos) << version();
  expect_serving();
  EXPECT_EQ(read_file(at("f")), content);
}

TEST_F(Pkcs11Test, AnIdPinsTheVersionUntilRotateKeyMovesIt) {
  admin("keygen-aes cmk 01");
  init_hsm(uri("cmk", "01"));
  EXPECT_EQ(show()["keyVaultProperties"]["keyRotationEnabled"], false);
  mount_with_file("--rotation-poll-interval 1s");
  admin("keygen-aes cmk 02");
  ::usleep(1500000);
  EXPECT_NE(version().find(";id=%01?"), std::string::npos);  // pinned: not followed
  auto r = run(cmkfs_binary() + " encryption rotate-key " + store + " --key-encryption-key " + uri("cmk", "02"));
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(version().find(";id=%02?"), std::string::npos);
  ASSERT_TRUE(wait_for_text(log, "key settings changed", 15)) << read_file(log);  // the mount follows
  admin("delete cmk 01");
  ::usleep(1200000);
  EXPECT_EQ(read_file(at("f")), content);
  EXPECT_EQ(show()["liveKeyState"]["state"], "available");
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
}

TEST_F(Pkcs11Test, InitRefusesWhatItCannotTrustWithAClearError) {
  admin("keygen-aes cmk 01");
  admin("keygen-rsa small 01 1024");
  auto refused = [&](const std::string& key_uri, const std::string& says) {
    auto r = try_init(key_uri);
    EXPECT_NE(r.rc, 0) << key_uri;
    EXPECT_NE(r.output.find(says), std::string::npos) << key_uri << ": " << r.output;
    EXPECT_FALSE(stdfs::exists(store)) << key_uri;
  };
  refused("'pkcs11:token=T;object=cmk?module-path=" + std::string(PKCS11_SHIM) + "&pin-value=1234'", "pin-source=file:");
  refused("'pkcs11:token=T;object=cmk?module-path=libsofthsm2.so&pin-source=file:" + pin_file + "'", "absolute path");
  refused("'pkcs11:token=T;object=cmk;slot-id=3?module-path=" + std::string(PKCS11_SHIM) + "&pin-source=file:" +
              pin_file + "'",
          "slot-id");
  refused(uri("absent"), "unextractable AES or RSA key labelled 'absent'");
  refused(uri("small"), "fewer than 2048 bits");
  ::chmod(pin_file.c_str(), 0644);
  refused(uri(), "chmod 600");
  ::chmod(pin_file.c_str(), 0600);
  ::chmod(hsm.c_str(), 0777);  // anybody could put another PIN file there, to lock the token
  refused(uri(), "which may be written by group or others");
  ::chmod(hsm.c_str(), 0755);
  write_file(pin_file, "not-the-pin\n");
  refused(uri(), "refused the PIN");
  write_file(pin_file, kPin);
  // A module anybody may replace is never loaded.
  stdfs::create_directories(dir + "/open");
  stdfs::copy_file(PKCS11_SHIM, dir + "/open/shim.so");
  ::chmod((dir + "/open").c_str(), 0777);
  refused("'pkcs11:token=T;object=cmk?module-path=" + dir + "/open/shim.so&pin-source=file:" + pin_file + "'",
          "may be written by group or others");
  init_hsm(uri());
}

}  // namespace
}  // namespace cmkfs::testing
