// The S3 object store against a scripted S3 service (a keyclient::HttpTransport in memory): what
// it sends, and what it does with replies a broken or hostile service could send. Every reply
// that is not what was asked for is EIO, never other bytes, a hang or unbounded memory.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "fs/store/s3_object_store.h"
#include "fs/store/striped_object_store.h"

namespace cmkfs::fs {
namespace {

using keyclient::HttpRequest;
using keyclient::HttpResponse;

constexpr uint64_t kStripe = 100000;

// Objects by key (after /bucket/), a log of requests, and a hook that may answer instead.
struct FakeS3State {
  std::mutex mu;  // requests come from several threads
  int get_delay_ms = 0;  // widens the window between a stripe's read and its put
  std::map<std::string, std::string> objects;
  std::vector<std::string> log;  // "METHOD key"
  std::function<std::optional<HttpResponse>(const HttpRequest&, const std::string& key)> hook;
  // A transport error instead of a reply (curl's: a reply too large is EBADMSG).
  std::function<std::optional<Status>(const HttpRequest&, const std::string& key)> fail;
};

std::string header_of(const HttpRequest& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

class FakeS3 : public keyclient::HttpTransport {
 public:
  explicit FakeS3(std::shared_ptr<FakeS3State> s) : s_(std::move(s)) {}

  Result<HttpResponse> send(const HttpRequest& r) override {
    std::string path = r.url.substr(r.url.find('/', 8));  // after http://host
    std::string query;
    if (auto q = path.find('?'); q != std::string::npos) query = path.substr(q + 1), path = path.substr(0, q);
    std::string key = path.size() > 8 ? path.substr(8) : "";  // "/bucket/"
    if (r.method == "GET" && s_->get_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(s_->get_delay_ms));
    std::lock_guard lock(s_->mu);
    s_->log.push_back(r.method + " " + key);
    if (s_->fail) {
      if (auto failed = s_->fail(r, key)) return *failed;
    }
    if (s_->hook) {
      if (auto hooked = s_->hook(r, key)) return *hooked;
    }
    HttpResponse resp;
    auto it = s_->objects.find(key);
    if (key.empty() && r.method == "HEAD") return ok(200);
    if (key.empty() && r.method == "GET") return listing();
    if (r.method == "PUT") {
      s_->objects[key] = r.body;
      return ok(200);
    }
    if (r.method == "DELETE") {
      s_->objects.erase(key);
      return ok(204);
    }
    if (it == s_->objects.end()) return ok(404);
    if (r.method == "HEAD") {
      resp.status = 200;
      resp.headers["content-length"] = std::to_string(it->second.size());
      return resp;
    }
    std::string range = header_of(r, "Range");
    if (range.empty()) {
      resp.status = 200;
      resp.body = it->second;
      resp.headers["content-length"] = std::to_string(it->second.size());
      return resp;
    }
    uint64_t a = std::stoull(range.substr(6)), b = std::stoull(range.substr(range.find('-') + 1));
    if (a >= it->second.size()) return ok(416);
    b = std::min<uint64_t>(b, it->second.size() - 1);
    resp.status = 206;
    resp.body = it->second.substr(a, b - a + 1);
    resp.headers["content-range"] = "bytes " + std::to_string(a) + "-" + std::to_string(b) + "/" + std::to_string(it->second.size());
    return resp;
  }

 private:
  static HttpResponse ok(long status) {
    HttpResponse r;
    r.status = status;
    return r;
  }
  HttpResponse listing() {
    HttpResponse r;
    r.status = 200;
    r.body = "<ListBucketResult><IsTruncated>false</IsTruncated>";
    for (const auto& [k, v] : s_->objects) r.body += "<Contents><Key>" + k + "</Key></Contents>";
    r.body += "</ListBucketResult>";
    return r;
  }
  std::shared_ptr<FakeS3State> s_;
};

class S3BackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    creds_ = ::testing::TempDir() + "/s3-keys-" + std::to_string(::getpid());
    FILE* f = std::fopen(creds_.c_str(), "w");
    std::fputs("access_key = AK\nsecret_key = SK\n", f);
    std::fclose(f);
    ::chmod(creds_.c_str(), 0600);
    auto c = ObjectsConfig::from_url("s3://bucket/p");
    ASSERT_TRUE(c.ok());
    config_ = *c;
    config_.object_size = kStripe;
    config_.endpoint = "http://127.0.0.1:7480";
    config_.credentials = creds_;
    state_ = std::make_shared<FakeS3State>();
    auto store = open_s3_object_store(config_, std::make_unique<FakeS3>(state_));
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(*store);
  }
  void TearDown() override { std::remove(creds_.c_str()); }

  std::unique_ptr<ObjectFile> open(bool create) {
    auto f = store_->open(id_, create);
    EXPECT_TRUE(f.ok()) << f.status().message();
    return f.ok() ? std::move(*f) : nullptr;
  }
  std::string name(int k) const {
    std::string base = "p/" + std::string(32, '0').replace(30, 2, "2a");
    return k == 0 ? base : base + "." + std::to_string(k);
  }
  int puts_of(const std::string& key) const {
    return static_cast<int>(std::count(state_->log.begin(), state_->log.end(), "PUT " + key));
  }

  Id128 id_ = [] {
    Id128 id{};
    id[15] = 0x2a;
    return id;
  }();
  std::string creds_;
  ObjectsConfig config_;
  std::shared_ptr<FakeS3State> state_;
  std::unique_ptr<ObjectStore> store_;
};

crypto::Bytes bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

TEST_F(S3BackendTest, StripesAreWholeObjectsAndAnAlignedWholeStripeIsOnePut) {
  auto f = open(true);
  std::string data(kStripe * 2 + 500, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  state_->log.clear();
  ASSERT_TRUE(f->write_at(0, bytes(data)).ok());
  // Two whole stripes put without a read, the short last one read (missing) and put.
  EXPECT_EQ(puts_of(name(0)), 1);
  EXPECT_EQ(puts_of(name(1)), 1);
  EXPECT_EQ(std::count(state_->log.begin(), state_->log.end(), "GET " + name(0)), 0);
  EXPECT_EQ(state_->objects[name(0)].size(), kStripe);
  EXPECT_EQ(state_->objects[name(2)].size(), 500u);
  EXPECT_EQ(f->write_unit(), kStripe);
  auto g = open(false);
  ASSERT_EQ(*g->length(), data.size());
  std::string back(data.size(), '\0');
  auto got = g->read_at(0, {reinterpret_cast<uint8_t*>(back.data()), back.size()});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, data.size());
  EXPECT_TRUE(back == data);
  ASSERT_TRUE(g->truncate(kStripe + 10).ok());
  EXPECT_EQ(state_->objects.count(name(2)), 0u);
  EXPECT_EQ(state_->objects[name(1)].size(), 10u);
}

// A missing bucket is made in the store's region: AWS wants every region but us-east-1 named
// in the request (and us-east-1 not), or refuses it.
TEST_F(S3BackendTest, ABucketIsMadeInTheStoresRegion) {
  std::vector<std::string> bodies;
  state_->hook = [&](const HttpRequest& r, const std::string& key) -> std::optional<HttpResponse> {
    if (!key.empty()) return std::nullopt;
    HttpResponse resp;
    resp.status = r.method == "HEAD" ? 404 : 200;
    if (r.method == "PUT") bodies.push_back(r.body);
    return resp;
  };
  for (const char* region : {"us-east-1", "eu-west-1"}) {
    ObjectsConfig c = config_;
    c.region = region;
    Status made = create_s3_bucket(c, std::make_unique<FakeS3>(state_));
    ASSERT_TRUE(made.ok()) << made.message();
  }
  ASSERT_EQ(bodies.size(), 2u);
  EXPECT_EQ(bodies[0], "");
  EXPECT_EQ(bodies[1], "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                       "<LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>");
}

TEST_F(S3BackendTest, ARangedReplyOtherThanAskedIsAnIOError) {
  state_->objects[name(0)] = std::string(kStripe, 'a');
  auto f = open(false);
  std::string buf(1000, '\0');
  auto read = [&] { return f->read_at(500, {reinterpret_cast<uint8_t*>(buf.data()), buf.size()}); };
  ASSERT_TRUE(read().ok());
  using Reply = std::function<void(HttpResponse&)>;
  for (const Reply& change : std::vector<Reply>{
           [](HttpResponse& r) { r.body += "extra"; },                                   // longer than asked
           [](HttpResponse& r) { r.body.pop_back(); },                                   // shorter, not at the end
           [](HttpResponse& r) { r.headers["content-range"] = "bytes 0-999/100000"; },   // another range
           [](HttpResponse& r) { r.headers.erase("content-range"); },                    // no range
           [](HttpResponse& r) { r.headers["content-range"] = "bytes 500-1499/9999999"; },  // an object too long
           [](HttpResponse& r) { r.status = 200, r.body = std::string(kStripe + 1, 'a'); },  // whole, too long
       }) {
    state_->hook = [&](const HttpRequest& r, const std::string&) -> std::optional<HttpResponse> {
      if (r.method != "GET" || header_of(r, "Range").empty()) return std::nullopt;
      HttpResponse resp;
      resp.status = 206;
      resp.body = std::string(1000, 'a');
      resp.headers["content-range"] = "bytes 500-1499/100000";
      change(resp);
      return resp;
    };
    auto got = read();
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), EIO) << got.status().message();
  }
}

TEST_F(S3BackendTest, AStripeListedOrStatedLargerThanAStripeIsRefused) {
  state_->hook = [](const HttpRequest& r, const std::string& key) -> std::optional<HttpResponse> {
    if (r.method != "HEAD" || key.empty()) return std::nullopt;
    HttpResponse resp;
    resp.status = 200;
    resp.headers["content-length"] = "99999999999999999";
    return resp;
  };
  auto f = store_->open(id_, false);
  EXPECT_FALSE(f.ok());
}

TEST_F(S3BackendTest, AListingThatLoopsOrIsNotAListingIsRefused) {
  int pages = 0;
  state_->hook = [&](const HttpRequest& r, const std::string& key) -> std::optional<HttpResponse> {
    if (r.method != "GET" || !key.empty()) return std::nullopt;
    HttpResponse resp;
    resp.status = 200;
    // The same keys again and again, under tokens that alternate.
    resp.body = "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>" +
                std::string(++pages % 2 ? "A" : "B") + "</NextContinuationToken><Contents><Key>p/" +
                std::string(32, '1') + "</Key></Contents></ListBucketResult>";
    return resp;
  };
  auto s = store_->list([](const Id128&) {}, [](const std::string&) {});
  EXPECT_FALSE(s.ok());
  EXPECT_LE(pages, 2);
  // A reply that is no listing at all is not an empty one.
  state_->hook = [&](const HttpRequest& r, const std::string& key) -> std::optional<HttpResponse> {
    if (r.method != "GET" || !key.empty()) return std::nullopt;
    HttpResponse resp;
    resp.status = 200;
    resp.body = "<Something><IsTruncated>false</IsTruncated></Something>";
    return resp;
  };
  EXPECT_FALSE(store_->list([](const Id128&) {}, [](const std::string&) {}).ok());
  // Truncated pages that list nothing, under tokens that alternate, went on for 100,000 pages.
  pages = 0;
  state_->hook = [&](const HttpRequest& r, const std::string& key) -> std::optional<HttpResponse> {
    if (r.method != "GET" || !key.empty()) return std::nullopt;
    HttpResponse resp;
    resp.status = 200;
    resp.body = "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>" +
                std::string(++pages % 2 ? "A" : "B") + "</NextContinuationToken></ListBucketResult>";
    return resp;
  };
  EXPECT_FALSE(store_->list([](const Id128&) {}, [](const std::string&) {}).ok());
  EXPECT_LE(pages, 2);
}

// A reply the transport refuses on the first try (larger than any reply may be) is not tried
// again, and it is an error: it was an error without a code, which the write passed on as
// success without writing anything. Nor is a body shorter than the stripe's written back.
TEST_F(S3BackendTest, AReplyTooLargeOrCutShortFailsTheWrite) {
  state_->objects[name(0)] = std::string(1000, 'a');
  auto f = open(false);
  state_->fail = [](const HttpRequest& r, const std::string&) -> std::optional<Status> {
    if (r.method != "GET") return std::nullopt;
    return Status(EBADMSG, "the reply is larger than 4194304 bytes");
  };
  state_->log.clear();
  Status s = f->write_at(100, bytes("new bytes"));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), 0);
  EXPECT_NE(s.message().find("larger than"), std::string::npos) << s.message();
  EXPECT_EQ(puts_of(name(0)), 0);
  EXPECT_EQ(state_->log.size(), 1u) << "tried again";
  EXPECT_EQ(state_->objects[name(0)], std::string(1000, 'a'));
  // A whole stripe's body cut short (or with no length to tell): it was padded with zeros and
  // written back over the stripe's tail.
  for (const char* length : {"1000", ""}) {
    state_->fail = nullptr;
    state_->hook = [&](const HttpRequest& r, const std::string& key) -> std::optional<HttpResponse> {
      if (r.method != "GET" || key != name(0) || !header_of(r, "Range").empty()) return std::nullopt;
      HttpResponse resp;
      resp.status = 200;
      resp.body = std::string(500, 'a');
      if (*length) resp.headers["content-length"] = length;
      return resp;
    };
    state_->log.clear();
    EXPECT_FALSE(f->write_at(100, bytes("new bytes")).ok()) << length;
    EXPECT_EQ(puts_of(name(0)), 0) << length;
    EXPECT_EQ(state_->objects[name(0)], std::string(1000, 'a')) << length;
  }
}

TEST_F(S3BackendTest, AStripeMissingBelowTheLastIsNeverWrittenFromNothing) {
  // Two stripes: the first full, the second short. The first then vanishes (a bucket
  // administrator, a lying service): writing part of it must not put a stripe of zeros.
  state_->objects[name(0)] = std::string(kStripe, 'a');
  state_->objects[name(1)] = std::string(10, 'b');
  auto f = open(false);
  ASSERT_EQ(*f->length(), kStripe + 10);
  state_->objects.erase(name(0));
  state_->log.clear();
  Status s = f->write_at(100, bytes("0123456789"));
  EXPECT_EQ(s.code(), EIO) << s.message();
  EXPECT_EQ(puts_of(name(0)), 0);
  // Nor extended from nothing when the file grows past it.
  state_->objects[name(0)] = std::string(kStripe, 'a');
  state_->objects.erase(name(1));
  auto g = open(false);
  ASSERT_EQ(*g->length(), kStripe);
  state_->objects.erase(name(0));
  s = g->write_at(kStripe * 3, bytes("x"));
  EXPECT_EQ(s.code(), EIO) << s.message();
  EXPECT_EQ(puts_of(name(0)), 0);
}

// A read across stripes: a refusal of any one fails the read, and a short stripe ends it.
TEST_F(S3BackendTest, AReadAcrossStripesFailsOrEndsAsOneRead) {
  state_->objects[name(0)] = std::string(kStripe, 'a');
  state_->objects[name(1)] = std::string(kStripe, 'b');
  state_->objects[name(2)] = std::string(10, 'c');
  auto f = open(false);
  std::string buf(kStripe * 3, '\0');
  auto got = f->read_at(kStripe / 2, {reinterpret_cast<uint8_t*>(buf.data()), buf.size()});
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(*got, kStripe / 2 + kStripe + 10);
  EXPECT_EQ(buf.substr(0, kStripe / 2), std::string(kStripe / 2, 'a'));
  EXPECT_EQ(buf.substr(kStripe / 2, kStripe), std::string(kStripe, 'b'));
  EXPECT_EQ(buf.substr(kStripe / 2 + kStripe, 10), std::string(10, 'c'));
  state_->hook = [&](const HttpRequest& r, const std::string& key) -> std::optional<HttpResponse> {
    if (r.method != "GET" || key != name(1)) return std::nullopt;
    HttpResponse resp;
    resp.status = 403;
    return resp;
  };
  got = f->read_at(0, {reinterpret_cast<uint8_t*>(buf.data()), buf.size()});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), EACCES);
}

// Parts of one stripe written at once (the parallel parts of a large write, any two callers):
// each puts the whole stripe back, so without the stripe's lock a later put undoes an earlier one.
TEST_F(S3BackendTest, WritesIntoOneStripeAtOnceKeepEveryByte) {
  state_->objects[name(0)] = std::string(kStripe, '.');
  auto f = open(false);
  ASSERT_EQ(*f->length(), kStripe);
  state_->get_delay_ms = 5;
  std::vector<std::thread> writers;
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      std::string piece(1000, static_cast<char>('A' + t));
      EXPECT_TRUE(f->write_at(t * 10000, bytes(piece)).ok());
    });
  }
  for (auto& w : writers) w.join();
  const std::string& stripe = state_->objects[name(0)];
  ASSERT_EQ(stripe.size(), kStripe);
  for (int t = 0; t < 8; ++t) EXPECT_EQ(stripe.substr(t * 10000, 1000), std::string(1000, static_cast<char>('A' + t))) << t;
}

}  // namespace
}  // namespace cmkfs::fs
