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

HttpResponse reply(long status, const json& body, std::map<std::string, std::string> headers = {}) {
  return HttpResponse{status, body.dump(), std::move(headers)};
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
                     VaultClientOptions{"client-1", "https://idp/token", 3, std::chrono::milliseconds(1)}};
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
  EXPECT_FALSE(KeyId::parse("https://v/secrets/k"));
  EXPECT_FALSE(KeyId::parse("not a url"));
  EXPECT_FALSE(KeyId::parse("https://v/keys/bad_name"));
}

TEST_F(VaultClientTest, UnwrapSendsTheTokenAndDecodes) {
  t->replies = {token_reply(), reply(200, {{"kid", key.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 7))}})};
  auto dek = client.unwrap(key, std::vector<uint8_t>{1});
  ASSERT_TRUE(dek.ok()) << dek.status().message();
  EXPECT_EQ(dek->size(), 32u);
  ASSERT_EQ(t->requests.size(), 2u);
  EXPECT_NE(t->requests[0].url.find("client_id=client-1"), std::string::npos);
  EXPECT_EQ(t->requests[1].url, key.str() + "/unwrapkey?api-version=7.4");
  EXPECT_EQ(t->requests[1].headers[0].second, "Bearer tok");
  EXPECT_EQ(json::parse(t->requests[1].body)["alg"], "RSA-OAEP-256");
}

TEST_F(VaultClientTest, RefusalsAreDefinitiveAndNamedByCause) {
  struct Case {
    HttpResponse r;
    int code;
  } cases[] = {
      {error_reply(403, "Forbidden", "ForbiddenByPolicy"), EACCES},
      {error_reply(403, "Forbidden", "KeyDisabled"), EKEYREVOKED},
      {error_reply(404, "KeyNotFound"), ENOKEY},
      {error_reply(400, "BadParameter"), EKEYREJECTED},
  };
  t->replies = {token_reply(), reply(200, {{"kid", key.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 1))}})};
  ASSERT_TRUE(client.unwrap(key, std::vector<uint8_t>{1}).ok());  // the token is cached from here on
  for (auto& c : cases) {
    t->replies = {c.r};
    Status s = unwrap_status();
    EXPECT_EQ(s.code(), c.code) << s.message();
    EXPECT_TRUE(is_definitive_refusal(s));
  }
}

TEST_F(VaultClientTest, A401RefreshesTheTokenOnceThenIsARefusal) {
  t->replies = {token_reply(), error_reply(401, "Unauthorized"), token_reply(), error_reply(401, "Unauthorized")};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), EACCES);
  EXPECT_EQ(t->requests.size(), 4u);
}

TEST_F(VaultClientTest, ServerErrorsAndThrottlingAreRetriedThenTransient) {
  t->replies = {token_reply(), error_reply(503, "ServiceUnavailable"), reply(429, json::object(), {{"retry-after", "0"}}),
                reply(200, {{"kid", key.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 1))}})};
  EXPECT_TRUE(client.unwrap(key, std::vector<uint8_t>{1}).ok());
  t->replies = {error_reply(500, "x"), error_reply(502, "x"), error_reply(503, "x")};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), EAGAIN);
  EXPECT_FALSE(is_definitive_refusal(s));
}

TEST_F(VaultClientTest, NetworkFailuresAndTimeoutsAreTransient) {
  t->replies = {token_reply(), Status(ETIMEDOUT, "timeout"), Status(ETIMEDOUT, "timeout"), Status(ETIMEDOUT, "timeout")};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), ETIMEDOUT);
  EXPECT_FALSE(is_definitive_refusal(s));
  EXPECT_NE(s.message().find("unreachable"), std::string::npos);
}

TEST_F(VaultClientTest, MalformedRepliesAreErrorsNotCrashes) {
  const char* garbage[] = {"", "not json", "[]", "{\"value\": 12}", "{\"value\": \"!!!\"}", "{\"kid\": 1}"};
  for (const char* g : garbage) {
    t->replies = {token_reply(), HttpResponse{200, g, {}}};
    Status s = unwrap_status();
    EXPECT_EQ(s.code(), EBADMSG) << g;
    EXPECT_FALSE(is_definitive_refusal(s));
  }
  auto* t2 = new ScriptedTransport();
  VaultClient fresh(std::unique_ptr<HttpTransport>(t2), VaultClientOptions{"c", "https://idp/token", 1, std::chrono::milliseconds(1)});
  t2->replies = {HttpResponse{200, "{\"no_token\": true}", {}}};
  EXPECT_EQ(fresh.unwrap(key, std::vector<uint8_t>{1}).status().code(), EBADMSG);
}

TEST_F(VaultClientTest, AnUnknownIdentityIsDefinitive) {
  t->replies = {reply(400, {{"error", "invalid_request"}, {"error_description", "Identity not found"}})};
  Status s = unwrap_status();
  EXPECT_EQ(s.code(), ENOKEY);
  EXPECT_NE(s.message().find("Identity not found"), std::string::npos);
}

TEST_F(VaultClientTest, TokensAreCachedUntilNearExpiry) {
  auto ok = reply(200, {{"kid", key.str()}, {"value", base64url_encode(std::vector<uint8_t>(32, 1))}});
  t->replies = {token_reply(), ok, ok, ok};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client.unwrap(key, std::vector<uint8_t>{1}).ok());
  EXPECT_EQ(t->requests.size(), 4u);  // one token, three unwraps
}

TEST_F(VaultClientTest, NoSecretInErrorMessages) {
  t->replies = {token_reply(), error_reply(403, "Forbidden", "ForbiddenByPolicy")};
  Status s = unwrap_status();
  EXPECT_EQ(s.message().find("tok"), std::string::npos);
}

}  // namespace
}  // namespace cmkfs::keyclient
