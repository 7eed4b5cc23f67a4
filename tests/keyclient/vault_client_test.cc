// The vault client against a scripted transport: what each reply means, retries, garbage.
#include "keyclient/vault_client.h"

#include <gtest/gtest.h>

#include <deque>

#include "keyclient/base64url.h"
#include "keyclient/keyclient.h"

namespace cmkfs::keyclient {
namespace {

using nlohmann::json;

class ScriptedTransport : public HttpTransport {
 public:
  std::deque<Result<HttpResponse>> replies;
  std::vector<HttpRequest> requests;
  Result<HttpResponse> send(const HttpRequest& r) override {
    requests.push_back(r);
    if (replies.empty()) return Status(EAGAIN, "script exhausted");
    auto next = std::move(replies.front());
    replies.pop_front();
    return next;
  }
};

std::string percent_encoded(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

HttpResponse reply(long status, const json& body, std::map<std::string, std::string> headers = {}) {
  return HttpResponse{status, body.dump(), std::move(headers)};
}
// The 401 a vault answers a request without a token with.
HttpResponse challenge(const std::string& resource = "https://vault.example") {
  return reply(401, {{"error", {{"code", "Unauthorized"}}}},
               {{"www-authenticate", "Bearer authorization=\"https://login.windows.net/t\", resource=\"" + resource + "\""}});
}
HttpResponse token_reply() {
  return reply(200, {{"access_token", "tok"}, {"expires_on", std::to_string(time(nullptr) + 3600)}, {"token_type", "Bearer"}});
}
HttpResponse error_reply(long status, const std::string& code, const std::string& inner = "") {
  json e{{"code", code}, {"message", "m"}};
  if (!inner.empty()) e["innererror"] = {{"code", inner}};
  return reply(status, {{"error", e}});
}

class VaultClientTest : public ::testing::Test {
 protected:
  ScriptedTransport* t = new ScriptedTransport();
  VaultClient client{std::unique_ptr<HttpTransport>(t),
                     VaultClientOptions{{CredentialKind::kManagedIdentity, "client-1", "https://idp/token", "", ""}, 3, std::chrono::milliseconds(1)}};
  KeyId key = *KeyId::parse("https://vault.example/keys/cmk/abc123");

  Status unwrap_status() { return client.unwrap(key, std::vector<uint8_t>{1, 2, 3}).status(); }
};

TEST(KeyIdTest, ParsesVersionedAndUnversionedIds) {
  auto a = KeyId::parse("https://v.vault.azure.net/keys/my-key/0123abcd");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->vault, "https://v.vault.azure.net");
  EXPECT_EQ(a->name, "my-key");
  EXPECT_EQ(a->version, "0123abcd");
  auto b = KeyId::parse("https://127.0.0.1:8443/keys/k/");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->version, "");
  EXPECT_EQ(b->str(), "https://127.0.0.1:8443/keys/k");
  EXPECT_EQ(b->host(), "127.0.0.1");
  EXPECT_FALSE(KeyId::parse("http://v.vault.azure.net/keys/k"));  // https only
  EXPECT_FALSE(KeyId::parse("https://user@v.vault.azure.net/keys/k"));
  EXPECT_FALSE(KeyId::parse("https://v/secrets/k"));
  EXPECT_FALSE(KeyId::parse("not a url"));
  EXPECT_FALSE(KeyId::parse("https://v/keys/bad_name"));
}

TEST_F(VaultClientTest, UnwrapSendsTheTokenAndDecodes) {
  t->replies = {challenge(), token_reply(), reply(200, {{"kid", key.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 7))}})};
  auto dek = client.unwrap(key, std::vector<uint8_t>{1});
  ASSERT_TRUE(dek.ok()) << dek.status().message();
  EXPECT_EQ(dek->size(), 32u);
  ASSERT_EQ(t->requests.size(), 3u);
  EXPECT_TRUE(t->requests[0].headers.empty());  // the challenge: no token, no body
  EXPECT_TRUE(t->requests[0].body.empty());
  EXPECT_NE(t->requests[1].url.find("client_id=client-1"), std::string::npos);
  EXPECT_NE(t->requests[1].url.find("resource=https%3A%2F%2Fvault.example"), std::string::npos);
  EXPECT_EQ(t->requests[2].url, key.str() + "/unwrapkey?api-version=7.4");
  EXPECT_EQ(t->requests[2].headers[0].second, "Bearer tok");
  EXPECT_EQ(json::parse(t->requests[2].body)["alg"], "RSA-OAEP-256");
}

TEST_F(VaultClientTest, RefusalsAreDefinitiveAndNamedByCause) {
  struct Case {
    HttpResponse r;
    int code;
  } cases[] = {
      {error_reply(403, "Forbidden", "ForbiddenByPolicy"), EACCES},
      {error_reply(403, "Forbidden", "ForbiddenByFirewall"), EACCES},
      {error_reply(403, "Forbidden", "KeyDisabled"), EKEYREVOKED},
      {error_reply(404, "KeyNotFound"), ENOKEY},
      {error_reply(400, "BadParameter"), EKEYREJECTED},
  };
  t->replies = {challenge(), token_reply(), reply(200, {{"kid", key.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 1))}})};
  ASSERT_TRUE(client.unwrap(key, std::vector<uint8_t>{1}).ok());  // the token is cached from here on
  for (auto& c : cases) {
    t->replies = {c.r};
    Status s = unwrap_status();
    EXPECT_EQ(s.code(), c.code) << s.message();
    EXPECT_TRUE(is_definitive_refusal(s));
  }
}

// A firewall refusal says so in one line: the operator's fix is a network rule, not a policy.
TEST_F(VaultClientTest, AFirewallRefusalIsNamedOnOneLine) {
  t->replies = {challenge(), token_reply(),
                reply(403, {{"error", {{"code", "Forbidden"},
                                       {"message", "Client address is not authorized and caller is not a trusted "
                                                   "service.\r\nClient address: 10.9.8.7\r\nCaller: appid=a;oid=b"},
                                       {"innererror", {{"code", "ForbiddenByFirewall"}}}}}})};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), EACCES);
  EXPECT_NE(s.message().find("firewall refuses this host"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("Client address: 10.9.8.7"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find_first_of("\r\n"), std::string::npos) << s.message();
}

TEST_F(VaultClientTest, A401RefreshesTheTokenOnceThenIsARefusal) {
  t->replies = {challenge(), token_reply(), challenge(), token_reply(), challenge()};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), EACCES);
  EXPECT_EQ(t->requests.size(), 5u);
}

TEST_F(VaultClientTest, ServerErrorsAndThrottlingAreRetriedThenTransient) {
  t->replies = {challenge(), token_reply(), error_reply(503, "ServiceUnavailable"), reply(429, json::object(), {{"retry-after", "0"}}),
                reply(200, {{"kid", key.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 1))}})};
  EXPECT_TRUE(client.unwrap(key, std::vector<uint8_t>{1}).ok());
  t->replies = {error_reply(500, "x"), error_reply(502, "x"), error_reply(503, "x")};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), EAGAIN);
  EXPECT_FALSE(is_definitive_refusal(s));
}

TEST_F(VaultClientTest, NetworkFailuresAndTimeoutsAreTransient) {
  t->replies = {challenge(), token_reply(), Status(ETIMEDOUT, "timeout"), Status(ETIMEDOUT, "timeout"), Status(ETIMEDOUT, "timeout")};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), ETIMEDOUT);
  EXPECT_FALSE(is_definitive_refusal(s));
  EXPECT_NE(s.message().find("unreachable"), std::string::npos);
}

TEST_F(VaultClientTest, MalformedRepliesAreErrorsNotCrashes) {
  const char* garbage[] = {"", "not json", "[]", "{\"value\": 12}", "{\"value\": \"!!!\"}", "{\"kid\": 1}"};
  for (const char* g : garbage) {
    t->replies = {challenge(), token_reply(), HttpResponse{200, g, {}}};
    Status s = unwrap_status();
    EXPECT_EQ(s.code(), EBADMSG) << g;
    EXPECT_FALSE(is_definitive_refusal(s));
  }
  auto* t2 = new ScriptedTransport();
  VaultClient fresh(std::unique_ptr<HttpTransport>(t2), VaultClientOptions{{CredentialKind::kManagedIdentity, "c", "https://idp/token", "", ""}, 1, std::chrono::milliseconds(1)});
  t2->replies = {challenge(), HttpResponse{200, "{\"no_token\": true}", {}}};
  EXPECT_EQ(fresh.unwrap(key, std::vector<uint8_t>{1}).status().code(), EBADMSG);
}

TEST_F(VaultClientTest, AnUnknownIdentityIsDefinitive) {
  t->replies = {challenge(), reply(400, {{"error", "invalid_request"}, {"error_description", "Identity not found"}})};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), ENOKEY);
  EXPECT_NE(s.message().find("Identity not found"), std::string::npos);
}

TEST_F(VaultClientTest, TokensAreCachedUntilNearExpiry) {
  auto ok = reply(200, {{"kid", key.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 1))}});
  t->replies = {challenge(), token_reply(), ok, ok, ok};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client.unwrap(key, std::vector<uint8_t>{1}).ok());
  EXPECT_EQ(t->requests.size(), 5u);  // one challenge, one token, three unwraps
}

TEST_F(VaultClientTest, NoSecretInErrorMessages) {
  t->replies = {challenge(), token_reply(), error_reply(403, "Forbidden", "ForbiddenByPolicy")};
  Status s = unwrap_status();
  EXPECT_EQ(s.message().find("tok"), std::string::npos);
}

TEST_F(VaultClientTest, NoTokenGoesToAVaultWhoseChallengeNamesAnotherService) {
  for (const char* resource : {"https://attacker.example", "https://other.example", "http://vault.example",
                               "https://evilvault.example", "https://vault.example.attacker.net"}) {
    auto* tr = new ScriptedTransport();
    VaultClient c(std::unique_ptr<HttpTransport>(tr), VaultClientOptions{{CredentialKind::kManagedIdentity, "c", "https://idp/token", "", ""}, 1, std::chrono::milliseconds(1)});
    tr->replies = {challenge(resource), token_reply()};
    Status s = c.unwrap(key, std::vector<uint8_t>{1}).status();
    EXPECT_EQ(s.code(), EACCES) << resource;
    ASSERT_EQ(tr->requests.size(), 1u) << resource;  // the identity endpoint was never asked
  }
}

TEST_F(VaultClientTest, ManagedHsmAndSovereignCloudsGetTokensForTheirOwnResource) {
  struct Case {
    const char* key;
    const char* resource;
  } cases[] = {
      {"https://myhsm.managedhsm.azure.net/keys/k/v1", "https://managedhsm.azure.net"},
      {"https://kv.vault.azure.cn/keys/k/v1", "https://vault.azure.cn"},
      {"https://kv.vault.usgovcloudapi.net/keys/k/v1", "https://vault.usgovcloudapi.net/.default"},
      {"https://kv1.vault.azure.net:443/keys/k/v1", "https://vault.azure.net/"},
  };
  for (const auto& c : cases) {
    auto* tr = new ScriptedTransport();
    VaultClient client(std::unique_ptr<HttpTransport>(tr), VaultClientOptions{{CredentialKind::kManagedIdentity, "c", "https://idp/token", "", ""}, 1, std::chrono::milliseconds(1)});
    auto id = *KeyId::parse(c.key);
    tr->replies = {challenge(c.resource), token_reply(),
                   reply(200, {{"kid", id.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 1))}})};
    ASSERT_TRUE(client.unwrap(id, std::vector<uint8_t>{1}).ok()) << c.key;
    std::string want = std::string(c.resource);
    if (want.size() > 9 && want.compare(want.size() - 9, 9, "/.default") == 0) want.resize(want.size() - 9);
    while (want.back() == '/') want.pop_back();
    EXPECT_NE(tr->requests[1].url.find("resource=" + percent_encoded(want)), std::string::npos) << tr->requests[1].url;
  }
}

TEST(IdentityEndpointTest, PlainHttpOnlyToImdsOrLoopback) {
  EXPECT_TRUE(check_identity_endpoint("http://169.254.169.254/metadata/identity/oauth2/token").ok());
  EXPECT_TRUE(check_identity_endpoint("http://localhost:40342/metadata/identity/oauth2/token").ok());
  EXPECT_TRUE(check_identity_endpoint("http://127.0.0.1:8080/token").ok());
  EXPECT_TRUE(check_identity_endpoint("https://idp.example/token").ok());
  EXPECT_FALSE(check_identity_endpoint("http://idp.example/token").ok());
  EXPECT_FALSE(check_identity_endpoint("http://169.254.169.254.evil.example/token").ok());
  EXPECT_FALSE(check_identity_endpoint("ftp://127.0.0.1/token").ok());
  EXPECT_FALSE(check_identity_endpoint("not a url").ok());
}

TEST(ChallengeTest, TheResourceMustBeTheVaultsDomainOrAParentOfIt) {
  EXPECT_TRUE(challenge_resource_matches("https://vault.azure.net", "kv1.vault.azure.net"));
  EXPECT_TRUE(challenge_resource_matches("https://127.0.0.1", "127.0.0.1"));
  EXPECT_FALSE(challenge_resource_matches("https://vault.azure.net", "kv1.evilvault.azure.net.example"));
  EXPECT_FALSE(challenge_resource_matches("https://ault.azure.net", "kv1.vault.azure.net"));
  EXPECT_FALSE(challenge_resource_matches("http://vault.azure.net", "kv1.vault.azure.net"));
  EXPECT_FALSE(challenge_resource_matches("https://graph.microsoft.com", "kv1.vault.azure.net"));
}

}  // namespace
}  // namespace cmkfs::keyclient

namespace cmkfs::keyclient {
namespace {

// A token reply's lifetime is hostile too: "expires_in" of 2^63 - 1 seconds is cut to a day (the
// sum with the clock would overflow), and a token without one lasts five minutes.
TEST(TokenReplyTest, ALifetimeBeyondADayIsCutToADay) {
  Credential c{CredentialKind::kManagedIdentity, "client", "https://login.test", "", ""};
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto t = parse_token_reply(c, HttpResponse{200, R"({"access_token":"abc","expires_in":"9223372036854775807"})", {}});
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_GE(t->expires_on, now + 24 * 3600 - 5);
  EXPECT_LE(t->expires_on, now + 24 * 3600 + 5);
  t = parse_token_reply(c, HttpResponse{200, R"({"access_token":"abc"})", {}});
  ASSERT_TRUE(t.ok());
  EXPECT_LE(t->expires_on, now + 300 + 5);
}

}  // namespace
}  // namespace cmkfs::keyclient
