// S3 request signing against AWS's published Signature Version 4 example, the credentials file,
// and the S3 object settings a user gives (what is refused before anything is made).
#include <gtest/gtest.h>

#include "fs/store/object_store.h"
#include "fs/store/s3_object_store.h"
#include "fs/store/s3_signer.h"

namespace cmkfs::fs {
namespace {

std::string header(const std::vector<std::pair<std::string, std::string>>& h, const std::string& name) {
  for (const auto& [k, v] : h) {
    if (k == name) return v;
  }
  return "";
}

constexpr std::string_view kExampleSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";  // AWS's documentation's

std::string secret_of(const S3Keys& k) { return {reinterpret_cast<const char*>(k.secret.data()), k.secret.size()}; }

// "GET Object" of the SigV4 documentation: GET /test.txt with Range bytes=0-9, signed at
// 20130524T000000Z with the documentation's example keys.
TEST(S3Signer, MatchesAwsPublishedExample) {
  S3SignedRequest r{.method = "GET",
                    .host = "examplebucket.s3.amazonaws.com",
                    .path = "/test.txt",
                    .query = {},
                    .headers = {{"Range", "bytes=0-9"}},
                    .payload_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"};
  S3Keys keys = S3Keys::of("AKIAIOSFODNN7EXAMPLE", kExampleSecret);
  auto h = s3_sign(r, keys, "us-east-1", 1369353600);  // 2013-05-24T00:00:00Z
  EXPECT_EQ(header(h, "x-amz-date"), "20130524T000000Z");
  EXPECT_EQ(header(h, "Authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  // The secret itself is in no header.
  for (const auto& [k, v] : h) EXPECT_EQ(v.find(kExampleSecret), std::string::npos) << k;
}

// Known answers from an independent implementation (Python's hmac and urllib, which reproduces
// the example above): a listing whose prefix holds '/', and a PUT with a body's hash.
TEST(S3Signer, ListingsAndPutsMatchAnIndependentSigner) {
  S3Keys keys = S3Keys::of("AKIAIOSFODNN7EXAMPLE", kExampleSecret);
  S3SignedRequest list{.method = "GET", .host = "127.0.0.1:7480", .path = "/bucket",
                       .query = {{"prefix", "a/"}, {"list-type", "2"}}, .headers = {},
                       .payload_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"};
  auto auth = header(s3_sign(list, keys, "us-east-1", 1369353600), "Authorization");
  EXPECT_NE(auth.find("Signature=ec67ee97a4cd84be618094765c484ae5f17c00ef048be0fffb634e60cb5cc4ad"), std::string::npos) << auth;
  S3SignedRequest put{.method = "PUT", .host = "127.0.0.1:7480", .path = "/bucket/p/0123abcd.1", .query = {},
                      .headers = {{"Content-Type", "application/octet-stream"}},
                      .payload_sha256 = "d2ca25d6e77fe121c7ccb887c23da925fae4593c2e41c5f3094b9325400f802e"};
  auth = header(s3_sign(put, keys, "us-east-1", 1369353600), "Authorization");
  EXPECT_NE(auth.find("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date,"
                      "Signature=7756964b267bc2f0f05d48afd1b7495ec7cabf92b2a32a77769acde55b176ed5"),
            std::string::npos)
      << auth;
}

TEST(S3Signer, QueryIsSortedAndEncoded) {
  S3SignedRequest a{.method = "GET", .host = "h", .path = "/b", .query = {{"prefix", "p/"}, {"list-type", "2"}},
                    .headers = {}, .payload_sha256 = "x"};
  S3SignedRequest b = a;
  std::swap(b.query[0], b.query[1]);
  S3Keys keys = S3Keys::of("A", "S");
  EXPECT_EQ(header(s3_sign(a, keys, "r", 0), "Authorization"), header(s3_sign(b, keys, "r", 0), "Authorization"));
  EXPECT_EQ(s3_uri_encode("a/b c~", true), "a/b%20c~");
  EXPECT_EQ(s3_uri_encode("a/b", false), "a%2Fb");
}

TEST(S3Keys, ReadsOwnAndAwsNamesAndSaysWhatIsMissing) {
  auto k = parse_s3_keys("# keys\naccess_key = AK\nsecret_key=SK \n");
  EXPECT_EQ(k.error, "");
  EXPECT_EQ(k.keys.access_key, "AK");
  EXPECT_EQ(secret_of(k.keys), "SK");
  k = parse_s3_keys("[default]\naws_access_key_id = AK2\naws_secret_access_key = SK2\n");
  EXPECT_EQ(k.keys.access_key, "AK2");
  EXPECT_EQ(secret_of(k.keys), "SK2");
  // Of several profiles, [default]'s: never one profile's key with another's secret.
  k = parse_s3_keys("[prod]\naws_access_key_id = P\naws_secret_access_key = PS\n[default]\naws_access_key_id = D\n"
                    "aws_secret_access_key = DS\n[test]\naws_secret_access_key = TS\n");
  EXPECT_EQ(k.keys.access_key, "D");
  EXPECT_EQ(secret_of(k.keys), "DS");
  k = parse_s3_keys("access_key = AK\nsecret = hunter2\n");
  EXPECT_NE(k.error.find("secret_key"), std::string::npos);
  EXPECT_EQ(k.error.find("hunter2"), std::string::npos);
  EXPECT_NE(parse_s3_keys("").error, "");
}

TEST(S3Settings, UrlsBucketsAndEndpoints) {
  auto c = ObjectsConfig::from_url("s3://my-bucket.1/prefix_2");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->kind, "s3");
  EXPECT_EQ(c->pool, "my-bucket.1");
  EXPECT_EQ(c->ns, "prefix_2");
  EXPECT_EQ(c->region, "us-east-1");
  EXPECT_EQ(c->url(), "s3://my-bucket.1/prefix_2");
  for (const char* bad : {"s3://", "s3://ab", "s3://Upper", "s3://a_b", "s3://-ab", "s3://bucket/", "s3://bucket/a b",
                          "s3://bucket/../x", "s3:/bucket", "s4://bucket"}) {
    EXPECT_FALSE(ObjectsConfig::from_url(bad).ok()) << bad;
  }
  // The stripe is whole sealed chunks: 1 MiB of plaintext.
  EXPECT_EQ(ObjectsConfig::s3_object_size(1 << 20), (1u << 20) + 28);
  EXPECT_EQ(ObjectsConfig::s3_object_size(4096), 256u * (4096 + 28));

  EXPECT_TRUE(check_s3_endpoint("http://127.0.0.1:7480").ok());
  EXPECT_TRUE(check_s3_endpoint("http://localhost").ok());
  EXPECT_TRUE(check_s3_endpoint("http://[::1]:80").ok());
  EXPECT_TRUE(check_s3_endpoint("https://s3.example.com").ok());
  for (const char* bad : {"http://10.0.0.1:7480", "http://example.com", "ftp://127.0.0.1", "https://user@h",
                          "https://h/path", "https://h?x", "127.0.0.1:7480", "https://", "http://[::1]evil",
                          "http://[::1", "https://h:", "https://h:0", "https://h:65536", "https://h:1:2",
                          "https://h\r\nX-Evil: 1", "https://-h", "http://127.0.0.1.evil.com"}) {
    EXPECT_FALSE(check_s3_endpoint(bad).ok()) << bad;
  }
  // An endpoint with userinfo is refused without being repeated.
  auto s = check_s3_endpoint("https://AKIA:very-secret@s3.example.com");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message().find("very-secret"), std::string::npos) << s.message();
}

TEST(S3Settings, HostPartsStayOnTheHost) {
  auto c = ObjectsConfig::from_url("s3://bucket/p");
  ASSERT_TRUE(c.ok());
  c->endpoint = "https://s3.example.com";
  c->credentials = "/root/keys";
  auto pub = c->public_json();
  EXPECT_EQ(pub.find("s3.example.com"), std::string::npos) << pub;
  EXPECT_EQ(pub.find("/root/keys"), std::string::npos) << pub;
  auto back = ObjectsConfig::from_json(c->host_json());
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->endpoint, c->endpoint);
  EXPECT_EQ(back->credentials, c->credentials);
  EXPECT_TRUE(back->same_place(*ObjectsConfig::from_json(pub)));
  c->endpoint.clear();
  EXPECT_FALSE(c->check_host_part().ok());
}

}  // namespace
}  // namespace cmkfs::fs
