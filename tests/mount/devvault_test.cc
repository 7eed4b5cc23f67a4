// cmkfs-vault's REST API, spoken raw over HTTPS: the Azure Key Vault shapes cmkfs relies on.
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "crypto/asymmetric.h"
#include "keyclient/base64url.h"
#include "keyclient/http.h"
#include "tests/support/vault_fixture.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

class DevVaultTest : public VaultTest {
 protected:
  void SetUp() override {
    VaultTest::SetUp();
    http = keyclient::make_curl_transport({.ca_file = vault_dir + "/ca.pem", .timeout_seconds = 10});
    token = vault_json("token --client-id " + client_id)["access_token"];
  }
  keyclient::HttpResponse call(const std::string& method, const std::string& path, const json& body = nullptr,
                               const std::string& tok = "use-default") {
    keyclient::HttpRequest r{method, url + path, {}, body.is_null() ? "" : body.dump()};
    std::string t = tok == "use-default" ? token : tok;
    if (!t.empty()) r.headers.push_back({"Authorization", "Bearer " + t});
    r.headers.push_back({"Content-Type", "application/json"});
    auto resp = http->send(r);
    EXPECT_TRUE(resp.ok()) << resp.status().message();
    return resp.ok() ? *resp : keyclient::HttpResponse{};
  }
  static json body(const keyclient::HttpResponse& r) { return json::parse(r.body, nullptr, false); }

  std::unique_ptr<keyclient::HttpTransport> http;
  std::string token;
};

TEST_F(DevVaultTest, MissingTokenGetsAChallenge) {
  auto r = call("GET", "/keys/cmk?api-version=7.4", nullptr, "");
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.headers["www-authenticate"].find("Bearer authorization=\"https://login.windows.net/"), std::string::npos);
  EXPECT_NE(r.headers["www-authenticate"].find("resource=\"https://127.0.0.1\""), std::string::npos);
  EXPECT_EQ(body(r)["error"]["code"], "Unauthorized");
  EXPECT_EQ(call("GET", "/keys/cmk?api-version=7.4", nullptr, "cmkv1.forged.token").status, 401);
}

TEST_F(DevVaultTest, ApiVersionIsRequiredAndMayBePercentEncoded) {
  EXPECT_EQ(call("GET", "/keys/cmk").status, 400);
  EXPECT_EQ(call("GET", "/keys/cmk?api%2Dversion=7.4").status, 200);
}

TEST_F(DevVaultTest, KeyBundleHasTheKeyVaultShape) {
  json b = body(call("GET", "/keys/cmk/?api-version=7.5"));
  EXPECT_EQ(b["key"]["kty"], "RSA");
  EXPECT_EQ(b["key"]["e"], "AQAB");
  EXPECT_EQ(keyclient::base64url_decode(b["key"]["n"].get<std::string>())->size(), 256u);
  EXPECT_EQ(b["attributes"]["enabled"], true);
  EXPECT_EQ(b["attributes"]["recoveryLevel"], "Recoverable");
  EXPECT_EQ(b["attributes"]["recoverableDays"], 90);
  std::string kid = b["key"]["kid"];
  EXPECT_EQ(kid.rfind(url + "/keys/cmk/", 0), 0u);
}

TEST_F(DevVaultTest, ListVersionsIsPagedWithAnAbsoluteNextLink) {
  for (int i = 0; i < 4; ++i) vault_json("key rotate --name cmk");
  std::set<std::string> kids;
  std::string next = url + "/keys/cmk/versions?api-version=7.4&maxresults=2";
  int pages = 0;
  vault_json("set-policy --object-id " + principal_id + " --key-permissions get list wrapKey unwrapKey");
  while (!next.empty() && pages < 10) {
    auto r = call("GET", next.substr(url.size()));
    ASSERT_EQ(r.status, 200) << r.body;
    json b = body(r);
    EXPECT_LE(b["value"].size(), 2u);
    for (auto& v : b["value"]) kids.insert(v["kid"]);
    next = b["nextLink"].is_null() ? "" : b["nextLink"].get<std::string>();
    ++pages;
  }
  EXPECT_EQ(kids.size(), 5u);
  EXPECT_EQ(pages, 3);
}

TEST_F(DevVaultTest, WrapWithEitherOaepAndUnwrapWithTheSameVersion) {
  auto pub = body(call("GET", "/keys/cmk?api-version=7.4"));
  std::string kid = pub["key"]["kid"];
  std::vector<uint8_t> secret(32, 0x5a);
  for (const char* alg : {"RSA-OAEP-256", "RSA-OAEP"}) {
    auto w = call("POST", kid.substr(url.size()) + "/wrapkey?api-version=7.4",
                  {{"alg", alg}, {"value", keyclient::base64url_encode(secret)}});
    ASSERT_EQ(w.status, 200) << w.body;
    EXPECT_EQ(body(w)["kid"], kid);
    auto u = call("POST", kid.substr(url.size()) + "/unwrapkey?api-version=7.4",
                  {{"alg", alg}, {"value", body(w)["value"]}});
    ASSERT_EQ(u.status, 200) << u.body;
    EXPECT_EQ(*keyclient::base64url_decode(body(u)["value"].get<std::string>()), secret);
  }
  auto bad = call("POST", kid.substr(url.size()) + "/wrapkey?api-version=7.4",
                  {{"alg", "RSA1_5"}, {"value", keyclient::base64url_encode(secret)}});
  EXPECT_EQ(bad.status, 400);
}

TEST_F(DevVaultTest, SoftDeleteRecoverAndNameReuse) {
  vault_json("set-policy --object-id " + principal_id + " --key-permissions all");
  EXPECT_EQ(call("DELETE", "/keys/cmk?api-version=7.4").status, 200);
  EXPECT_EQ(call("GET", "/keys/cmk?api-version=7.4").status, 404);
  json d = body(call("GET", "/deletedkeys/cmk?api-version=7.4"));
  EXPECT_EQ(d["recoveryId"], url + "/deletedkeys/cmk");
  EXPECT_GT(d["scheduledPurgeDate"].get<int64_t>(), d["deletedDate"].get<int64_t>());
  auto again = call("POST", "/keys/cmk/create?api-version=7.4", {{"kty", "RSA"}});
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(body(again)["error"]["innererror"]["code"], "ObjectIsDeletedButRecoverable");
  auto purge = call("DELETE", "/deletedkeys/cmk?api-version=7.4");
  EXPECT_EQ(purge.status, 403);
  EXPECT_NE(body(purge)["error"]["message"].get<std::string>().find("purge protection"), std::string::npos);
  EXPECT_EQ(call("POST", "/deletedkeys/cmk/recover?api-version=7.4").status, 200);
  EXPECT_EQ(call("GET", "/keys/cmk?api-version=7.4").status, 200);
}

TEST_F(DevVaultTest, WithoutPurgeProtectionADeletedKeyCanBePurged) {
  stop_vault();
  start_vault("--no-purge-protection");
  token = vault_json("token --client-id " + client_id)["access_token"];
  vault_json("set-policy --object-id " + principal_id + " --key-permissions all");
  EXPECT_EQ(call("DELETE", "/keys/cmk?api-version=7.4").status, 200);
  EXPECT_EQ(call("DELETE", "/deletedkeys/cmk?api-version=7.4").status, 204);
  EXPECT_EQ(call("GET", "/deletedkeys/cmk?api-version=7.4").status, 404);
  EXPECT_EQ(call("POST", "/keys/cmk/create?api-version=7.4", {{"kty", "RSA-HSM"}, {"key_size", 3072}}).status, 200);
}

TEST_F(DevVaultTest, ImdsTokensNeedTheMetadataHeaderAndAKnownIdentity) {
  auto imds = [&](const std::string& query, bool header) {
    keyclient::HttpRequest r{"GET", url + "/metadata/identity/oauth2/token?api-version=2018-02-01" + query, {}, ""};
    if (header) r.headers.push_back({"Metadata", "true"});
    return *http->send(r);
  };
  EXPECT_EQ(imds("&resource=https://vault.azure.net", false).status, 400);
  auto unknown = imds("&resource=https://vault.azure.net&client_id=00000000-0000-0000-0000-000000000000", true);
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(body(unknown)["error_description"], "Identity not found");
  auto system = imds("&resource=https://127.0.0.1", true);
  ASSERT_EQ(system.status, 200);
  json t = body(system);
  EXPECT_EQ(t["token_type"], "Bearer");
  EXPECT_TRUE(t["expires_in"].is_string());
  // The system identity has no policy yet.
  auto r = call("POST", "/keys/cmk/create?api-version=7.4", {{"kty", "RSA"}}, t["access_token"]);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(body(r)["error"]["innererror"]["code"], "ForbiddenByPolicy");
  // A token is bound to the resource it was asked for: one for another service is no use here.
  auto elsewhere = body(imds("&resource=https://vault.azure.net&client_id=" + client_id, true));
  EXPECT_EQ(call("GET", "/keys/cmk?api-version=7.4", nullptr, elsewhere["access_token"]).status, 401);
}

TEST_F(DevVaultTest, AuditLogRecordsIdentityOperationVersionAndResult) {
  call("POST", "/keys/cmk//wrapkey?api-version=7.4", {{"alg", "RSA-OAEP-256"}, {"value", "AAAA"}});
  std::istringstream in(read_file(vault_dir + "/audit.log"));
  std::string line, last;
  while (std::getline(in, line)) last = line;
  json j = json::parse(last);
  EXPECT_EQ(j["operation"], "wrapKey");
  EXPECT_EQ(j["identity"]["appid"], client_id);
  EXPECT_EQ(j["result"], 200);
  EXPECT_EQ(j["version"].get<std::string>().size(), 32u);
}

TEST_F(DevVaultTest, CompressedAndOversizedBodiesAreRefusedUnread) {
  std::string gz = dir + "/body.gz";
  ASSERT_EQ(run("head -c 20000000 /dev/zero | gzip -c > " + gz).rc, 0);  // 20 MB of zeros in ~20 KB
  std::string auth = "-H 'Authorization: Bearer " + token + "' -H 'Content-Type: application/json' ";
  auto r = run("curl -sk -o /dev/null -w '%{http_code}' " + auth + "-H 'Content-Encoding: gzip' --data-binary @" + gz +
               " '" + url + "/keys/cmk/create?api-version=7.4'");
  EXPECT_EQ(r.output, "415");
  r = run("head -c 100000 /dev/zero | curl -sk -o /dev/null -w '%{http_code}' " + auth + "--data-binary @- '" + url +
          "/keys/cmk/create?api-version=7.4'");
  EXPECT_EQ(r.output, "413");
  EXPECT_EQ(call("GET", "/keys/cmk?api-version=7.4").status, 200);  // and it still serves
}

TEST_F(DevVaultTest, BadInputGetsAzureErrorsAndAnAuditLine) {
  vault_json("set-policy --object-id " + principal_id + " --key-permissions all");
  auto lines = [&] {
    std::string log = read_file(vault_dir + "/audit.log");
    return std::count(log.begin(), log.end(), '\n');
  };
  auto before = lines();
  auto bad_name = call("GET", "/keys/%FF%FEk?api-version=7.4");
  EXPECT_GE(bad_name.status, 400);
  EXPECT_LT(bad_name.status, 500);
  EXPECT_TRUE(body(bad_name)["error"].is_object()) << bad_name.body;
  auto unknown = call("GET", "/no/such/route");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_TRUE(body(unknown)["error"].is_object()) << unknown.body;
  auto wrong_type = call("POST", "/keys/cmk/create?api-version=7.4", {{"kty", 5}});
  EXPECT_EQ(wrong_type.status, 400) << wrong_type.body;
  EXPECT_EQ(lines(), before + 3);
}

TEST_F(DevVaultTest, ASecondVaultOnABusyPortFailsWithOneLine) {
  auto r = run(vault_binary() + " --dir " + dir + "/vault2 serve --listen 127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(r.rc, 1) << r.output;
  EXPECT_NE(r.output.find("cannot listen"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_FALSE(stdfs::exists(dir + "/vault2/state.json"));
}

// The console's sixth wrong password within a minute took the vault's one lock twice, and the
// thread serving it waited on itself forever, holding that lock: the key API never answered again.
TEST_F(DevVaultTest, AThrottledConsoleSignInLeavesTheKeyApiServing) {
  auto signin = [&] {
    keyclient::HttpRequest r{"POST", url + "/console/signin", {}, "csrf=x&password=wrong"};
    r.headers.push_back({"Cookie", "__Host-cmkfs-vault-signin=x"});
    r.headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
    auto resp = http->send(r);
    EXPECT_TRUE(resp.ok()) << resp.status().message();
    return resp.ok() ? resp->headers["location"] : "";
  };
  for (int i = 0; i < 5; ++i) EXPECT_EQ(signin(), "/console/signin?e=wrong");
  EXPECT_EQ(signin(), "/console/signin?e=throttled");
  EXPECT_EQ(call("GET", "/keys/cmk?api-version=7.4").status, 200);
  EXPECT_EQ(signin(), "/console/signin?e=throttled");
}

// Connections that never send a byte (a "slowloris") each held one of the vault's 8 threads for
// 5 s, and a few hundred queued ahead of a mount's key check kept it waiting minutes. Now a
// client (here: another local user) holds at most its limit; the rest are shut at once.
TEST_F(DevVaultTest, IdleConnectionsOfAnotherUserDoNotStarveTheKeyApi) {
  if (::geteuid() != 0) GTEST_SKIP() << "another local user needs root to make";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t parent = ::getpid();
  pid_t attacker = ::fork();
  if (attacker == 0) {
    if (::setuid(65534) != 0) _exit(1);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // after setuid, which clears it: dies with the test
    if (::getppid() != parent) _exit(0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    auto open_one = [&] {
      int s = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) _exit(0);  // the vault is gone
      return pollfd{s, POLLIN, 0};
    };
    std::vector<pollfd> held(200);
    for (auto& p : held) p = open_one();
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    for (;;) {  // every connection the vault ends is opened again, sending nothing
      ::poll(held.data(), held.size(), 1000);
      for (auto& p : held) {
        if (p.revents == 0) continue;
        ::close(p.fd);
        p = open_one();
      }
    }
  }
  ASSERT_GE(attacker, 0) << "fork failed";
  ::close(ready[1]);  // an attacker that ends without a word ends the read below
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid <= 0) return;  // fork failed: kill(-1) would signal every process there is
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{attacker};
  char byte;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  // Over 8 s, past the vault's 5 s read timeout: the attacker's admitted connections are closed
  // and opened again meanwhile. Each call has 5 s to connect (TLS included) and 10 s in all. A
  // user who is not trusted (uid 65533) is served too: from the threads the attacker cannot
  // fill alone, not from root's.
  const std::string as_another_user = "setpriv --reuid=65533 --regid=65533 --clear-groups curl -sk --max-time 10 -o /dev/null "
                                      "-w '%{http_code}' -H 'Authorization: Bearer " + token + "' '" + url +
                                      "/keys/cmk?api-version=7.4'";
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(call("GET", "/keys/cmk?api-version=7.4").status, 200);
    EXPECT_EQ(run(as_another_user).output, "200");
    ::sleep(2);
  }
  EXPECT_EQ(::waitpid(attacker, nullptr, WNOHANG), 0) << "the attacker stopped: the test proved nothing";
  std::string log = read_file(primary.log);
  EXPECT_NE(log.find("the last from local uid 65534, for its limit"), std::string::npos) << log;
}

TEST_F(DevVaultTest, PrivateKeysAreSealedAtRest) {
  vault_json("key create --name hsm --kty RSA-HSM");
  std::string state = read_file(vault_dir + "/state.json");
  EXPECT_EQ(state.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(state.find("\"pem\""), std::string::npos);
  struct stat st;
  ASSERT_EQ(::stat((vault_dir + "/master.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((vault_dir + "/hsm.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  stop_vault();
  start_vault();  // the sealed keys open again
  token = vault_json("token --client-id " + client_id)["access_token"];
  EXPECT_EQ(call("GET", "/keys/cmk?api-version=7.4").status, 200);
  std::vector<uint8_t> secret(32, 1);
  auto w = call("POST", "/keys/cmk//wrapkey?api-version=7.4", {{"alg", "RSA-OAEP-256"}, {"value", keyclient::base64url_encode(secret)}});
  EXPECT_EQ(w.status, 200) << w.body;
}

// The template: applied once it makes what it declares; applied again it changes nothing, not
// even the state file; a malformed one changes nothing either.
TEST_F(DevVaultTest, ATemplateAppliedTwiceChangesNothing) {
  std::string file = dir + "/vault.json";
  write_file(file, R"({
    "identities": [{"name": "registry"}, {"name": "builder"}],
    "keys": [{"name": "cmk"}, {"name": "cmk-b", "kty": "RSA-HSM", "size": 3072}],
    "accessPolicies": [{"identity": "builder", "permissions": ["get", "wrapKey", "unwrapKey"]},
                       {"identity": "[system]", "permissions": ["get", "wrapKey", "unwrapKey"]}],
    "networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": ["127.0.0.1", "10.0.0.0/8"]}
  })");
  json first = vault_json("apply " + file);
  std::vector<std::string> changed = first["changed"];
  EXPECT_EQ(changed, (std::vector<std::string>{"identity builder", "key cmk-b",
                                               "access policy " + first["identities"]["builder"]["principalId"].get<std::string>(),
                                               "access policy " + vault_json("identity list")[0]["principalId"].get<std::string>(),
                                               "networkAcls"}))
      << first.dump();
  EXPECT_EQ(first["identities"]["registry"]["clientId"], client_id);  // the fixture's, found by name
  EXPECT_EQ(vault_json("key show --name cmk-b")["key"]["kty"], "RSA-HSM");
  EXPECT_EQ(vault_json("network-rule list")["ipRules"].size(), 2u);

  std::string state = read_file(vault_dir + "/state.json");
  json second = vault_json("apply " + file);
  EXPECT_TRUE(second["changed"].empty()) << second.dump();
  EXPECT_EQ(second["keys"], first["keys"]);
  EXPECT_EQ(read_file(vault_dir + "/state.json"), state);

  write_file(file, R"({"identities": [{"name": "x"}], "keys": [{"name": "k", "colour": "blue"}]})");
  auto r = run(vault_binary() + " --dir " + vault_dir + " apply " + file + " 2>&1");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.output.find("unknown field 'colour'"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(vault_dir + "/state.json"), state);
}

}  // namespace
}  // namespace cmkfs::testing
