// Customer-managed keys through a real mount and a real cmkfs-vault over HTTPS: init, show,
// manual and automatic rotation, revocation (policy, disable, delete) and restore, the vault
// going away (offline grace), and refusals at init.
#include <atomic>
#include <thread>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"
#include "tests/support/lifecycle.h"
#include "tests/support/lmdb_poke.h"
#include "tests/support/metrics_scrape.h"
#include "tests/support/test_util.h"
#include "tests/support/vault_fixture.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

class CmkTest : public Lifecycle<VaultTest> {
 protected:
  // A vault-key store, mounted with fast checks, holding one file; `held` is open on it.
  void mount_with_file(const std::string& key, const std::string& extra = "") {
    init_vault(key);
    Lifecycle<VaultTest>::mount_with_file(extra);
  }
};

TEST_F(CmkTest, InitWithAVaultKeyAndShowTheSeedShape) {
  init_vault(key_url);
  json j = show();
  EXPECT_EQ(j["status"], "enabled");
  EXPECT_EQ(j["keyVaultProperties"]["identity"], client_id);
  EXPECT_EQ(j["keyVaultProperties"]["keyIdentifier"], key_url);
  EXPECT_EQ(j["keyVaultProperties"]["keyRotationEnabled"], true);
  std::string versioned = j["keyVaultProperties"]["versionedKeyIdentifier"];
  EXPECT_EQ(versioned.rfind(key_url + "/", 0), 0u) << versioned;
  EXPECT_TRUE(j["keyVaultProperties"]["lastKeyRotationTimestamp"].is_null());
  mount();
  write_file(at("x"), "through the vault key");
  remount();
  EXPECT_EQ(read_file(at("x")), "through the vault key");
  EXPECT_EQ(show()["liveKeyState"]["state"], "available");
}

TEST_F(CmkTest, VersionedKeyIdMeansManualRotation) {
  std::string versioned = vault_json("key show --name cmk")["key"]["kid"];
  init_vault(versioned);
  EXPECT_EQ(show()["keyVaultProperties"]["keyRotationEnabled"], false);
  EXPECT_EQ(show()["keyVaultProperties"]["versionedKeyIdentifier"], versioned);
}

TEST_F(CmkTest, InitRefusesAnEcKeyAKeyWithoutWrapAndAnUnreachableVault) {
  vault_json("key create --name eckey --kty EC");
  auto r = run(cmkfs_binary() + " init " + store + vault_flags(url + "/keys/eckey"));
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_NE(r.output.find("only RSA and RSA-HSM"), std::string::npos) << r.output;
  vault_json("key create --name signonly --ops sign verify");
  r = run(cmkfs_binary() + " init " + store + vault_flags(url + "/keys/signonly"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("does not allow wrapKey"), std::string::npos) << r.output;
  r = run(cmkfs_binary() + " init " + store + vault_flags(url + "/keys/missing"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("404"), std::string::npos) << r.output;
  stop_vault();
  r = run(cmkfs_binary() + " init " + store + vault_flags(key_url));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("unreachable"), std::string::npos) << r.output;
  EXPECT_FALSE(stdfs::exists(store)) << "a failed init leaves behind the directory it made";
  r = run(cmkfs_binary() + " init " + dir + "/new/parents/store" + vault_flags(key_url));
  EXPECT_NE(r.rc, 0);
  EXPECT_FALSE(stdfs::exists(dir + "/new")) << "a failed init leaves behind the parents it made";
  stdfs::create_directories(store);  // one that was there stays, empty
  r = run(cmkfs_binary() + " init " + store + vault_flags(key_url));
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(stdfs::exists(store) && stdfs::is_empty(store));
}

// The article's Resource Manager template, in two files: the vault's (identity, key, access)
// applied with cmkfs-vault apply, the store's given to init --from-file; then it serves.
TEST_F(CmkTest, InitFromTemplatesForTheVaultAndTheStore) {
  write_file(dir + "/vault.json", R"({"identities": [{"name": "acr"}], "keys": [{"name": "acr-cmk"}],
    "accessPolicies": [{"identity": "acr", "permissions": ["get", "wrapKey", "unwrapKey"]}]})");
  json applied = vault_json("apply " + dir + "/vault.json");
  std::string acr = applied["identities"]["acr"]["clientId"];
  write_file(dir + "/store.json", json{{"store", store}, {"chunkSize", "16KiB"},
                                       {"keyVaultProperties", {{"keyIdentifier", url + "/keys/acr-cmk"}, {"identity", acr},
                                                               {"identityEndpoint", url + "/metadata/identity/oauth2/token"},
                                                               {"vaultCa", vault_dir + "/ca.pem"}}}}.dump());
  auto r = run(cmkfs_binary() + " init --from-file " + dir + "/store.json");
  ASSERT_EQ(r.rc, 0) << r.output;
  json shown = show();
  EXPECT_EQ(shown["keyVaultProperties"]["keyIdentifier"], url + "/keys/acr-cmk");
  EXPECT_EQ(shown["keyVaultProperties"]["identity"], acr);
  EXPECT_EQ(shown["chunkSize"], 16384);
  mount();
  write_file(at("f"), "from a template");
  remount();
  EXPECT_EQ(read_file(at("f")), "from a template");
}

TEST_F(CmkTest, IdentityWithoutUnwrapPermissionIsRefusedAtInit) {
  vault_json("set-policy --object-id " + principal_id + " --key-permissions get wrapKey");
  auto r = run(cmkfs_binary() + " init " + store + vault_flags(key_url));
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_NE(r.output.find("unwrapKey permission"), std::string::npos) << r.output;
}

// Also what Prometheus sees of it: the alert rules in the README fire on these series.
TEST_F(CmkTest, RevokedByDeletePolicyRestoredBySetPolicy) {
  std::string addr = free_loopback_address();
  mount_with_file(key_url, "--metrics-listen " + addr);
  auto scrape = [&] { return run("curl -fsS http://" + addr + "/metrics").output; };
  std::string labels = "{mountpoint=\"" + mnt + "\"";
  std::string page = scrape();
  EXPECT_EQ(metric(page, "cmkfs_key_state" + labels + ",state=\"available\"}"), 1) << page;
  EXPECT_GT(metric(page, "cmkfs_key_last_success_timestamp_seconds" + labels + "}"), 1.7e9);

  vault_json("delete-policy --object-id " + principal_id);
  expect_revoked();
  page = scrape();
  EXPECT_EQ(metric(page, "cmkfs_key_state" + labels + ",state=\"revoked\"}"), 1) << page;
  EXPECT_EQ(metric(page, "cmkfs_key_state" + labels + ",state=\"available\"}"), 0);
  EXPECT_GE(metric(page, "cmkfs_key_checks_total" + labels + ",result=\"refused\"}"), 1);
  EXPECT_EQ(metric(page, "cmkfs_key_checks_total" + labels + ",result=\"unreachable\"}"), 0);
  // Every check is timed, the refusal too.
  EXPECT_GE(metric(page, "cmkfs_key_check_duration_seconds_count" + labels + "}"), 1);

  vault_json("set-policy --object-id " + principal_id + " --key-permissions get wrapKey unwrapKey");
  expect_serving();
  EXPECT_EQ(metric(scrape(), "cmkfs_key_state" + labels + ",state=\"available\"}"), 1);
  std::string audit = read_file(dir + "/audit.jsonl");
  EXPECT_NE(audit.find("\"event\":\"revoke\""), std::string::npos);
  EXPECT_NE(audit.find("\"event\":\"restore\""), std::string::npos);
}

TEST_F(CmkTest, RevokedByDisablingTheKeyRestoredByEnabling) {
  mount_with_file(key_url);
  vault_json("key disable --name cmk");
  expect_revoked();
  vault_json("key enable --name cmk");
  expect_serving();
}

TEST_F(CmkTest, RevokedByDeletingTheKeyRestoredByRecovering) {
  mount_with_file(key_url);
  vault_json("key delete --name cmk");
  expect_revoked();
  auto purge = run(vault_binary() + " --dir " + vault_dir + " key purge --name cmk");
  EXPECT_NE(purge.rc, 0);  // purge protection
  EXPECT_NE(purge.output.find("purge protection"), std::string::npos) << purge.output;
  vault_json("key recover --name cmk");
  expect_serving();
}

// A registry's files for one image, as docker-registry lays them out; returns the manifest.
std::string write_registry_image(const std::string& root) {
  auto blob = [&](const std::string& bytes) {
    crypto::Sha256 sha;
    sha.update(crypto::Bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    std::string hex = to_hex(sha.finish());
    std::string d = root + "/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex;
    stdfs::create_directories(d);
    write_file(d + "/data", bytes);
    return hex;
  };
  std::string config = R"({"os":"linux","architecture":"amd64"})", layer = "layer";
  std::string manifest = R"({"schemaVersion":2,"config":{"digest":"sha256:)" + blob(config) + R"(","size":)" +
                         std::to_string(config.size()) + R"(},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:)" +
                         blob(layer) + R"(","size":5}]})";
  std::string tag = root + "/docker/registry/v2/repositories/app/_manifests/tags/v1/current";
  stdfs::create_directories(tag);
  write_file(tag + "/link", "sha256:" + blob(manifest));
  return manifest;
}

TEST_F(CmkTest, TheRegistryViewIsRevokedAndRestoredWithTheMount) {
  mount_with_file(key_url);
  std::string manifest = write_registry_image(mnt);
  std::string view = dir + "/view";
  stdfs::create_directories(view);
  auto r = run(cmkfs_binary() + " view " + mnt + " " + view);
  ASSERT_EQ(r.rc, 0) << r.output << read_file(log);
  std::string file = view + "/app:v1/manifest.json";
  EXPECT_EQ(read_file(file), manifest);
  int held_view = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held_view, 0);
  vault_json("delete-policy --object-id " + principal_id);
  expect_revoked();
  EXPECT_TRUE(eventually(3, [&] { return open_errno(file) == EACCES; }));
  EXPECT_EQ(read_errno(held_view), EACCES);
  EXPECT_EQ(open_errno(view + "/app:v1"), EACCES);
  vault_json("set-policy --object-id " + principal_id + " --key-permissions get wrapKey unwrapKey");
  expect_serving();
  EXPECT_TRUE(eventually(3, [&] { return open_errno(file) == 0; }));
  EXPECT_EQ(read_file(file), manifest);
  EXPECT_EQ(read_errno(held_view), 0);
  ::close(held_view);
  r = run(cmkfs_binary() + " umount " + view);
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_EQ(read_file(at("f")), content);  // the mount serves on without its view
}

TEST_F(CmkTest, WritesAfterRestoreLandAndSurviveRemount) {
  mount_with_file(key_url);
  vault_json("delete-policy --object-id " + principal_id);
  expect_revoked();
  vault_json("set-policy --object-id " + principal_id + " --key-permissions get wrapKey unwrapKey");
  expect_serving();
  write_file(at("after"), "written after restore");
  ::close(held);
  held = -1;
  remount();
  EXPECT_EQ(read_file(at("after")), "written after restore");
  EXPECT_EQ(read_file(at("f")), content);
}

TEST_F(CmkTest, VaultDownServesWithinTheGraceThenFailsClosedThenRecovers) {
  mount_with_file(key_url, "--offline-grace 10s");  // room for a loaded machine between the checks below
  stop_vault();
  // A check fails after its retries (about a second); the grace runs from the last success, so
  // there are seconds left to serve from the cached key.
  EXPECT_TRUE(eventually(4, [&] { return show()["liveKeyState"]["state"] == "vault-unreachable"; }));
  EXPECT_EQ(read_file(at("f")), content);
  expect_failed_closed(14);
  start_vault();  // same directory, same port: state was kept
  expect_serving();
  std::string l = read_file(log);
  EXPECT_NE(l.find("unreachable"), std::string::npos);
  EXPECT_NE(l.find("restored"), std::string::npos);
}

TEST_F(CmkTest, ManualRotationWithRotateKeyWhileMountedKeepsDataReadable) {
  std::string v1 = vault_json("key show --name cmk")["key"]["kid"];
  mount_with_file(v1);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::thread reader([&] {
    while (!stop) {
      if (read_file(at("f")) != content) ++failures;
    }
  });
  std::string v2 = vault_json("key rotate --name cmk")["key"]["kid"];
  ASSERT_NE(v1, v2);
  EXPECT_EQ(show()["keyVaultProperties"]["versionedKeyIdentifier"], v1);  // manual: not followed
  auto r = run(cmkfs_binary() + " encryption rotate-key " + store + " --key-encryption-key " + v2);
  ASSERT_EQ(r.rc, 0) << r.output;
  json j = show();
  EXPECT_EQ(j["keyVaultProperties"]["versionedKeyIdentifier"], v2);
  EXPECT_EQ(j["keyVaultProperties"]["keyRotationEnabled"], false);
  EXPECT_FALSE(j["keyVaultProperties"]["lastKeyRotationTimestamp"].is_null());
  // The mount follows at its next check (logged once taken up).
  ASSERT_TRUE(wait_for_text(log, "key settings changed", 15)) << read_file(log);
  // Revoking only the old version must not matter any more.
  vault_json("key disable --name cmk --version " + v1.substr(v1.rfind('/') + 1));
  ::usleep(1200000);
  stop = true;
  reader.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(read_file(at("f")), content);
  EXPECT_EQ(show()["liveKeyState"]["state"], "available");
  ::close(held);
  held = -1;
  remount();
  EXPECT_EQ(read_file(at("f")), content);
}

TEST_F(CmkTest, AutomaticRotationFollowsTheLatestVersion) {
  mount_with_file(key_url, "--rotation-poll-interval 1s");
  std::string v1 = show()["keyVaultProperties"]["versionedKeyIdentifier"];
  std::string v2 = vault_json("key rotate --name cmk")["key"]["kid"];
  EXPECT_TRUE(eventually(6, [&] { return show()["keyVaultProperties"]["versionedKeyIdentifier"] == v2; }))
      << read_file(log);
  EXPECT_FALSE(show()["keyVaultProperties"]["lastKeyRotationTimestamp"].is_null());
  EXPECT_EQ(read_file(at("f")), content);
  // The old version can go: the data key is wrapped by the new one.
  vault_json("key disable --name cmk --version " + v1.substr(v1.rfind('/') + 1));
  ::usleep(1200000);
  EXPECT_EQ(read_file(at("f")), content);
  ::close(held);
  held = -1;
  remount();
  EXPECT_EQ(read_file(at("f")), content);
  EXPECT_NE(read_file(dir + "/audit.jsonl").find("\"event\":\"rotate\""), std::string::npos);
}

TEST_F(CmkTest, EnableMovesALocalKeyStoreToTheVaultForGood) {
  init();
  mount();
  write_file(at("old"), "written under the local key");
  auto r = run(cmkfs_binary() + " encryption enable " + store + vault_flags(key_url));
  EXPECT_EQ(r.rc, 13) << r.output;  // it re-encrypts: not while mounted
  EXPECT_NE(r.output.find("unmount the store first"), std::string::npos) << r.output;
  umount();
  std::string local_wrapped = read_file(store + "/meta/data.mdb");
  r = run(cmkfs_binary() + " encryption enable " + store + vault_flags(key_url));
  ASSERT_EQ(r.rc, 0) << r.output;
  json j = show();
  EXPECT_EQ(j["status"], "enabled");
  EXPECT_EQ(j["dataKeyGeneration"], 2);  // a new data key, which the local key never wrapped
  EXPECT_FALSE(stdfs::exists(key)) << "the local key file is deleted once nothing needs it";
  r = run(cmkfs_binary() + " encryption enable " + store + vault_flags(key_url));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("already uses a vault key"), std::string::npos);
  mount();
  EXPECT_EQ(read_file(at("old")), "written under the local key");
  umount();
  EXPECT_EQ(run(cmkfs_binary() + " fsck " + store).rc, 0);
}

TEST_F(CmkTest, DataKeyRotationUnderLoadKeepsEveryByteAndLeavesNoOldWrappedKey) {
  init_vault(key_url);
  std::string old_blob = nlohmann::json::parse(read_lmdb(store + "/meta", "keys", be64(1)))["blob"];
  ASSERT_NE(read_file(store + "/meta/data.mdb").find(old_blob), std::string::npos);  // the scan finds what is there
  mount("--key-check-interval 300ms");
  // Files under generation 1, and a writer that keeps going through the rotation.
  for (int i = 0; i < 40; ++i) write_file(at("before" + std::to_string(i)), std::string(70000 + i, 'a' + i % 26));
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      std::string name = at("during" + std::to_string(i));
      write_file(name, std::string(30000 + i, 'A' + i % 26));
      written = i + 1;
      ::usleep(5000);  // a steady stream, as a registry push is
    }
  });
  auto r = run(cmkfs_binary() + " encryption rotate-data-key " + mnt);
  ASSERT_EQ(r.rc, 0) << r.output;
  bool done = eventually(30, [&] { return data_key_rotated_to(2); });
  stop = true;
  writer.join();
  ASSERT_TRUE(done) << read_file(log);
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(read_file(at("before" + std::to_string(i))), std::string(70000 + i, 'a' + i % 26)) << i;
  }
  for (int i = 0; i < written; ++i) {
    ASSERT_EQ(read_file(at("during" + std::to_string(i))), std::string(30000 + i, 'A' + i % 26)) << i;
  }
  umount();  // compacts the metadata
  EXPECT_EQ(read_file(store + "/meta/data.mdb").find(old_blob), std::string::npos);
  auto fsck = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(fsck.rc, 0) << fsck.output;
  mount();
  EXPECT_EQ(read_file(at("before7")), std::string(70007, 'a' + 7));
}

TEST_F(CmkTest, AStoreMovedToAnotherHostIsBoundThereExplicitly) {
  init_vault(key_url);
  mount();
  write_file(at("x"), "moved with its store");
  umount();
  std::string fingerprint = show()["hostBinding"]["dataKeyFingerprint"];
  ASSERT_EQ(fingerprint.size(), 32u);
  // The new host: no binding yet, and its own copy of the vault's CA.
  ::setenv("CMKFS_CONFIG_DIR", (dir + "/host2").c_str(), 1);
  auto r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_NE(r.output.find("not bound to this host"), std::string::npos) << r.output;
  stdfs::copy_file(vault_dir + "/ca.pem", dir + "/ca2.pem");
  std::string flags = " --key-encryption-key " + key_url + " --identity " + client_id + " --identity-endpoint " + url +
                      "/metadata/identity/oauth2/token --vault-ca ";
  // A CA where anybody could put their own would let them be the vault.
  stdfs::create_directories(dir + "/open");
  ::chmod((dir + "/open").c_str(), 0777);
  stdfs::copy_file(vault_dir + "/ca.pem", dir + "/open/ca.pem");
  r = run(cmkfs_binary() + " trust " + store + flags + dir + "/open/ca.pem --fingerprint " + fingerprint);
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("which may be written by group or others"), std::string::npos) << r.output;
  flags += dir + "/ca2.pem";
  r = run(cmkfs_binary() + " trust " + store + flags + " --fingerprint " + std::string(32, '0'));
  EXPECT_EQ(r.rc, 11) << r.output;  // not the store the old host had
  EXPECT_EQ(try_mount().rc, 11);
  r = run(cmkfs_binary() + " trust " + store + flags + " --fingerprint " + fingerprint);
  ASSERT_EQ(r.rc, 0) << r.output;
  json j = show();
  EXPECT_EQ(j["keyVaultProperties"]["keyIdentifier"], key_url);
  EXPECT_EQ(j["hostBinding"]["dataKeyFingerprint"], fingerprint);
  EXPECT_EQ(j["hostBinding"]["matchesStore"], true);
  mount();
  EXPECT_EQ(read_file(at("x")), "moved with its store");
}

TEST_F(CmkTest, NoVaultCallOnTheDataPath) {
  init_vault(key_url);
  mount("--key-check-interval 1h");
  int before = vault_calls("unwrapKey") + vault_calls("wrapKey") + vault_calls("get") + vault_calls("token");
  for (int i = 0; i < 300; ++i) write_file(at("f" + std::to_string(i)), std::string(5000 + i, 'x'));
  for (int i = 0; i < 300; ++i) ASSERT_EQ(read_file(at("f" + std::to_string(i))).size(), size_t(5000 + i));
  ASSERT_EQ(run("ls -lR " + mnt + " > /dev/null").rc, 0);
  int after = vault_calls("unwrapKey") + vault_calls("wrapKey") + vault_calls("get") + vault_calls("token");
  EXPECT_EQ(after, before);
}

TEST_F(CmkTest, VaultRestartKeepsKeysIdentitiesAndPolicies) {
  init_vault(key_url);
  stop_vault();
  start_vault();
  mount();  // the same identity unwraps with the same key after the restart
  write_file(at("x"), "ok");
  EXPECT_EQ(read_file(at("x")), "ok");
}

}  // namespace
}  // namespace cmkfs::testing
