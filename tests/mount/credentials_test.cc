// Every Azure credential against cmkfs-vault, through a real mount: client secret, client
// certificate, workload identity (a federated token file that rotates) and App Service, each
// with init, round trip, revocation and restore without a remount; the credential itself
// refused (secret deleted, token replaced) revokes too. Managed identity over IMDS is cmk_test's.
// Tokens live 31 s, so the daemon asks for one at almost every check.
#include "tests/support/lifecycle.h"
#include "tests/support/vault_fixture.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

class CredentialTest : public Lifecycle<VaultTest> {
 protected:
  void SetUp() override {
    Lifecycle<VaultTest>::SetUp();
    stop_vault();
    start_vault("--token-lifetime 31");
    auto a = vault_json("app create --name registry-app");
    app_id = a["clientId"];
    app_principal = a["principalId"];
    tenant = a["tenantId"];
    grant(app_principal);
  }
  void grant(const std::string& principal) {
    vault_json("set-policy --object-id " + principal + " --key-permissions get wrapKey unwrapKey");
  }
  // The lifecycle every provider passes, after init and a round trip: revoke (the policy
  // removed) and restore, automatic rotation to a new version, and the vault down within and
  // past the offline grace. REQUIRES: mounted with lifecycle_flags.
  void lifecycle(const std::string& principal) {
    vault_json("delete-policy --object-id " + principal);
    expect_revoked();
    grant(principal);
    expect_serving();
    std::string v2 = vault_json("key rotate --name cmk")["key"]["kid"];
    EXPECT_TRUE(eventually(6, [&] { return show()["keyVaultProperties"]["versionedKeyIdentifier"] == v2; }))
        << read_file(log);
    EXPECT_EQ(read_file(at("f")), content);
    stop_vault();
    EXPECT_TRUE(eventually(4, [&] { return show()["liveKeyState"]["state"] == "vault-unreachable"; })) << read_file(log);
    EXPECT_EQ(read_file(at("f")), content);  // within the grace
    expect_failed_closed(12);
    start_vault("--token-lifetime 31");
    expect_serving();
  }
  static constexpr const char* lifecycle_flags = "--rotation-poll-interval 1s --offline-grace 6s";
  std::string entra_flags(const std::string& credential, const std::string& file) const {
    return " --key-encryption-key " + key_url + " --vault-ca " + vault_dir + "/ca.pem --credential " + credential +
           " --identity " + app_id + " --tenant-id " + tenant + " --authority-host " + url + " --credential-file " + file;
  }
  CommandResult try_init(const std::string& flags) { return run(cmkfs_binary() + " init " + store + flags); }
  void init_with(const std::string& flags) {
    auto r = try_init(flags);
    ASSERT_EQ(r.rc, 0) << r.output << read_file(dir + "/vault.log");
  }
  void private_file(const std::string& path, const std::string& data) {
    write_file(path, data);
    ::chmod(path.c_str(), 0600);
  }
  // An RS256 JWT signed with `key` by openssl itself, not by cmkfs's code.
  std::string openssl_jwt(const json& claims, const std::string& key) {
    std::string h = dir + "/jwt.h", c = dir + "/jwt.c";
    write_file(h, json{{"alg", "RS256"}, {"typ", "JWT"}, {"kid", "issuer-1"}}.dump());
    write_file(c, claims.dump());
    auto r = run("set -e; cd " + dir + "; b() { basenc --base64url -w0 | tr -d '='; }; in=$(b < jwt.h).$(b < jwt.c); "
                 "printf %s \"$in\" > jwt.in; echo \"$in.$(openssl dgst -sha256 -sign " + key + " jwt.in | b)\"");
    EXPECT_EQ(r.rc, 0) << r.output;
    return r.output.substr(0, r.output.find('\n'));
  }
  json federated_claims(const std::string& subject) {
    int64_t now = ::time(nullptr);
    return json{{"iss", "https://oidc.cluster.test"}, {"sub", subject}, {"aud", "api://AzureADTokenExchange"},
                {"iat", now}, {"nbf", now}, {"exp", now + 3600}};
  }

  std::string app_id, app_principal, tenant;
};

TEST_F(CredentialTest, ClientSecretFromAFile) {
  std::string secret = vault_json("app secret create --client-id " + app_id)["secret"];
  std::string file = dir + "/secret";
  write_file(file, secret + "\n");
  ::chmod(file.c_str(), 0644);
  auto r = try_init(entra_flags("client-secret", file));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("chmod 600"), std::string::npos) << r.output;
  ::chmod(file.c_str(), 0600);
  init_with(entra_flags("client-secret", file));
  auto j = show();
  EXPECT_EQ(j["keyVaultProperties"]["credential"], "client-secret");
  EXPECT_EQ(j["keyVaultProperties"]["identity"], app_id);
  EXPECT_EQ(j["keyVaultProperties"]["tenantId"], tenant);
  mount_with_file(lifecycle_flags);
  lifecycle(app_principal);
  // The secret deleted in the directory: the credential is refused, the mount revoked.
  vault_json("app secret delete --client-id " + app_id);
  expect_revoked();
  EXPECT_NE(read_file(log).find("invalid_client"), std::string::npos) << read_file(log);
  private_file(file, vault_json("app secret create --client-id " + app_id)["secret"]);
  expect_serving();
  for (const auto& f : store_files()) EXPECT_EQ(read_file(f).find(secret), std::string::npos) << f;
  EXPECT_EQ(read_file(log).find(secret), std::string::npos);
}

TEST_F(CredentialTest, ClientCertificateSignsItsAssertion) {
  auto r = run("cd " + dir + " && openssl req -x509 -newkey rsa:2048 -nodes -keyout app.key -out app.crt -subj /CN=app "
               "-days 2 && cat app.crt app.key > app.pem && chmod 600 app.pem && "
               "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -subj /CN=other -days 2 && "
               "cat other.crt other.key > other.pem && chmod 600 other.pem");
  ASSERT_EQ(r.rc, 0) << r.output;
  vault_json("app certificate add --client-id " + app_id + " --cert " + dir + "/app.crt");
  r = try_init(entra_flags("client-certificate", dir + "/other.pem"));  // not the app's certificate
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("AADSTS700027"), std::string::npos) << r.output;
  init_with(entra_flags("client-certificate", dir + "/app.pem"));
  EXPECT_EQ(show()["keyVaultProperties"]["credential"], "client-certificate");
  mount_with_file(lifecycle_flags);
  lifecycle(app_principal);
}

TEST_F(CredentialTest, WorkloadIdentityFromTheEnvironmentRereadsItsTokenFile) {
  auto r = run("cd " + dir + " && openssl genrsa -out issuer.key 2048 && openssl rsa -in issuer.key -pubout -out issuer.pub");
  ASSERT_EQ(r.rc, 0) << r.output;
  std::string subject = "system:serviceaccount:registry:cmkfs";
  vault_json("federated-credential create --client-id " + app_id + " --issuer https://oidc.cluster.test --subject " +
             subject + " --issuer-key " + dir + "/issuer.pub");
  std::string token_file = dir + "/azure-identity-token";
  write_file(token_file, openssl_jwt(federated_claims(subject), dir + "/issuer.key"));
  // What the AKS webhook injects.
  ::setenv("AZURE_CLIENT_ID", app_id.c_str(), 1);
  ::setenv("AZURE_TENANT_ID", tenant.c_str(), 1);
  ::setenv("AZURE_AUTHORITY_HOST", url.c_str(), 1);
  ::setenv("AZURE_FEDERATED_TOKEN_FILE", token_file.c_str(), 1);
  init_with(" --key-encryption-key " + key_url + " --vault-ca " + vault_dir + "/ca.pem --credential workload-identity");
  for (const char* v : {"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST", "AZURE_FEDERATED_TOKEN_FILE"}) {
    ::unsetenv(v);  // pinned at init: the mount needs none of them
  }
  auto j = show();
  EXPECT_EQ(j["keyVaultProperties"]["credential"], "workload-identity");
  EXPECT_EQ(j["keyVaultProperties"]["identity"], app_id);
  mount_with_file(lifecycle_flags);
  lifecycle(app_principal);
  // The kubelet rotates the projected token: a token for another service account is refused...
  write_file(token_file, openssl_jwt(federated_claims("system:serviceaccount:other:app"), dir + "/issuer.key"));
  expect_revoked();
  EXPECT_NE(read_file(log).find("AADSTS70021"), std::string::npos) << read_file(log);
  // ...and the next good one is read again.
  write_file(token_file, openssl_jwt(federated_claims(subject), dir + "/issuer.key"));
  expect_serving();
}

TEST_F(CredentialTest, AppServiceIdentityEndpointWithItsHeader) {
  std::string header = read_file(vault_dir + "/identity-header");
  ::setenv("IDENTITY_ENDPOINT", (url + "/msi/token").c_str(), 1);
  ::setenv("IDENTITY_HEADER", "not-the-header", 1);
  std::string flags = " --key-encryption-key " + key_url + " --vault-ca " + vault_dir +
                      "/ca.pem --credential app-service --identity " + client_id;
  auto r = try_init(flags);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("X-IDENTITY-HEADER"), std::string::npos) << r.output;
  ::setenv("IDENTITY_HEADER", header.c_str(), 1);
  init_with(flags);
  EXPECT_EQ(show()["keyVaultProperties"]["credential"], "app-service");
  mount_with_file(lifecycle_flags);
  lifecycle(principal_id);
  ::unsetenv("IDENTITY_ENDPOINT");
  ::unsetenv("IDENTITY_HEADER");
}

TEST_F(CredentialTest, EntraCredentialsRefuseWhatWouldLeakOrCannotWork) {
  std::string file = dir + "/secret";
  private_file(file, "s");
  auto refused = [&](const std::string& flags, const std::string& says) {
    auto r = try_init(flags);
    EXPECT_NE(r.rc, 0) << flags;
    EXPECT_NE(r.output.find(says), std::string::npos) << flags << ": " << r.output;
  };
  refused(" --key-encryption-key " + key_url + " --credential client-secret --identity " + app_id + " --tenant-id " +
              tenant + " --authority-host http://login.test --credential-file " + file,
          "must be https");
  refused(" --key-encryption-key " + key_url + " --credential client-secret --identity " + app_id +
              " --credential-file " + file,
          "needs a tenant");
  refused(" --key-encryption-key " + key_url + " --credential telepathy --identity " + app_id, "--credential telepathy");
  refused(entra_flags("client-secret", file), "invalid_client");  // a wrong secret
}

}  // namespace
}  // namespace cmkfs::testing
