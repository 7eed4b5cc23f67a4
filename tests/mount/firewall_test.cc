// The vault's firewall (the article's "Key Vault firewall") through a real mount: a network rule
// refused is a key the mount cannot reach (EACCES, restored when a rule admits the host again),
// and the article's advanced scenario: a store moved to a key in a second vault that denies every
// network but lets the vault's own system identity through, after which the first vault can go.
#include "tests/support/lifecycle.h"
#include "tests/support/vault_fixture.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

class FirewallTest : public Lifecycle<VaultTest> {
 protected:
  void TearDown() override {
    Lifecycle<VaultTest>::TearDown();
    second.stop();
  }
  // Lines of a vault's audit log refused by its firewall.
  static int firewall_refusals(const std::string& vault_dir) {
    std::istringstream in(read_file(vault_dir + "/audit.log"));
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line.find("\"error\":\"ForbiddenByFirewall\"") != std::string::npos;
    return n;
  }
  VaultServer second;
};

TEST_F(FirewallTest, ADeniedNetworkRevokesAndARuleRestores) {
  init_vault(key_url);
  mount_with_file();
  // Deny all but 10.0.0.0/8: this host (127.0.0.1) is outside, and a user-assigned identity is no
  // trusted service.
  json acls = vault_json("update --default-action Deny --bypass trusted");
  EXPECT_EQ(acls["defaultAction"], "Deny");
  vault_json("network-rule add --ip-address 10.0.0.0/8");
  expect_revoked();
  EXPECT_GE(firewall_refusals(vault_dir), 1);
  EXPECT_NE(read_file(log).find("firewall refuses this host"), std::string::npos) << read_file(log);
  // Offline commands say so too, with the key's exit code.
  auto r = run(cmkfs_binary() + " init " + dir + "/other" + vault_flags(key_url));
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_NE(r.output.find("firewall refuses this host"), std::string::npos) << r.output;

  acls = vault_json("network-rule add --ip-address 127.0.0.1");
  EXPECT_EQ(acls["ipRules"].size(), 2u);
  expect_serving();
  vault_json("network-rule remove --ip-address 127.0.0.1/32");
  expect_revoked();
  vault_json("update --default-action Allow");
  expect_serving();
}

// The article's advanced scenario, step by step.
TEST_F(FirewallTest, TheAdvancedScenarioMovesTheStoreBehindASecondVaultsFirewall) {
  // A store under a user-assigned identity in vault A.
  init_vault(key_url);
  mount_with_file();
  // Vault B: a key, its system identity granted, every network denied but trusted services.
  second.dir = dir + "/vault-b";
  second.log = dir + "/vault-b.log";
  second.start();
  std::string b_key = second.url + "/keys/cmk";
  second.cli("key create --name cmk");
  std::string system_oid = second.cli("identity list")[0]["principalId"];
  second.cli("set-policy --object-id " + system_oid + " --key-permissions get wrapKey unwrapKey");
  second.cli("update --default-action Deny --bypass trusted");

  // Without the bypass, B's own system identity is refused like anyone else: nothing changes.
  second.cli("update --bypass none");
  std::string to_b = cmkfs_binary() + " encryption rotate-key " + store + " --key-encryption-key " + b_key +
                     " --identity '[system]' --identity-endpoint " + second.token_endpoint() + " --vault-ca " +
                     second.dir + "/ca.pem";
  auto r = run(to_b);
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_NE(r.output.find("firewall refuses this host"), std::string::npos) << r.output;
  EXPECT_EQ(show()["keyVaultProperties"]["keyIdentifier"], key_url);

  // With it, "Encryption > Change key" to B's key with the system identity, while mounted.
  second.cli("update --bypass trusted");
  r = run(to_b);
  ASSERT_EQ(r.rc, 0) << r.output;
  json shown = show();
  EXPECT_EQ(shown["keyVaultProperties"]["keyIdentifier"], b_key);
  EXPECT_EQ(shown["keyVaultProperties"]["identity"], "[system]") << shown.dump();
  expect_serving();

  // Vault A can go: the mount keeps serving from B, checks included, and so does a new mount.
  stop_vault();
  ::usleep(1500000);  // three check intervals against B alone
  expect_serving();
  write_file(at("after"), "written behind B's firewall");
  EXPECT_EQ(firewall_refusals(second.dir), 1);  // the refused attempt above, and no other
  release();
  remount();
  EXPECT_EQ(read_file(at("f")), content);
  EXPECT_EQ(read_file(at("after")), "written behind B's firewall");
}

}  // namespace
}  // namespace cmkfs::testing
