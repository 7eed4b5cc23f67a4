// A store whose objects are in S3 (Ceph's gateway, radosgw, on the run's single-host cluster: the
// `ceph` fixture): files of every shape read back as written, through a remount; the bucket holds
// only sealed stripes under random names; a changed or missing stripe is EIO, never other bytes;
// the credentials file is checked and its secret shown nowhere; the key lifecycle is the same as
// on a local store.
#include <fcntl.h>
#include <unistd.h>

#include <map>


#include "tests/support/ceph_fixture.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

constexpr const char* kBucket = "cmkfs-test";

class S3Test : public ClusterObjectsTest {
 protected:
  void SetUp() override {
    ClusterObjectsTest::SetUp();
    ASSERT_FALSE(ceph_dir().empty()) << "needs the ceph fixture (CMKFS_TEST_CEPH_DIR)";
    s3 = S3Gateway::from(ceph_dir());
    ASSERT_FALSE(s3.endpoint.empty()) << read_file(ceph_dir() + "/rgw.env");
    creds = dir + "/s3.keys";
    s3.write_credentials(creds);
    for (const auto& k : s3.keys(kBucket, prefix())) s3.remove(kBucket, k);  // an earlier run's
  }
  // Each test's store under a prefix of its own.
  std::string prefix() const { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }
  std::string objects_flags() const override {
    return std::string(" --objects s3://") + kBucket + "/" + prefix() + " --s3-endpoint " + s3.endpoint + " --s3-credentials " + creds;
  }
  std::set<std::string> objects() const override {
    std::set<std::string> names;
    for (const auto& k : s3.keys(kBucket, prefix())) names.insert(k.substr(prefix().size() + 1));
    return names;
  }
  std::string object(const std::string& name) const { return s3.get(kBucket, prefix() + "/" + name); }

  S3Gateway s3;
  std::string creds;
};

std::string random_bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
  for (auto& c : s) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  return s;
}

TEST_F(S3Test, FilesReadBackAsWrittenAndTheBucketHoldsOnlySealedStripes) {
  init(objects_flags());
  mount();
  const std::string marker = "PLAINTEXT-MARKER-0123456789";
  std::string small = marker + " in a small file";
  std::string big = random_bytes(9 << 20, 1) + marker;  // nine stripes and a piece
  write_file(at("small"), small);
  write_file(at("big"), big);
  // Grown across a stripe boundary by appends, rewritten in the middle, cut to an odd size.
  std::string grown;
  for (int i = 0; i < 5; ++i) {
    std::string piece = random_bytes(300000, 10 + i);
    grown += piece;
    int fd = ::open(at("grown").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, piece.data(), piece.size()), static_cast<ssize_t>(piece.size()));
    ::close(fd);
  }
  int fd = ::open(at("big").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, marker.data(), marker.size(), 3 << 20), static_cast<ssize_t>(marker.size()));
  big.replace(3 << 20, marker.size(), marker);
  ASSERT_EQ(::ftruncate(fd, 5000001), 0);
  big.resize(5000001);
  ::close(fd);
  ASSERT_EQ(::mkdir(at("dir-with-a-name").c_str(), 0755), 0);
  remount();
  EXPECT_EQ(read_file(at("small")), small);
  EXPECT_EQ(read_file(at("big")) == big, true);
  EXPECT_EQ(read_file(at("grown")) == grown, true);
  umount();

  // Stripes are named <file id hex>[.k]: no name of a file, and no plaintext in any of them;
  // every stripe but a file's last is exactly a stripe (1 MiB of 4 KiB chunks, sealed).
  const size_t stripe = 256 * (4096 + 28);
  auto names = objects();
  ASSERT_EQ(names.size(), 8u);  // big: 5 stripes (the cut removed 4); grown: 2; small: 1
  std::map<std::string, int> stripes_of;
  for (const auto& name : names) {
    std::string base = name.substr(0, name.find('.'));
    EXPECT_EQ(base.size(), 32u) << name;
    EXPECT_EQ(base.find_first_not_of("0123456789abcdef"), std::string::npos) << name;
    if (name.size() > 32) {  // .k, k >= 1
      EXPECT_EQ(name[32], '.') << name;
      EXPECT_EQ(name.substr(33).find_first_not_of("0123456789"), std::string::npos) << name;
      EXPECT_NE(name.substr(33, 1), "0") << name;
    }
    ++stripes_of[base];
  }
  for (const auto& name : names) {
    std::string base = name.substr(0, name.find('.'));
    int k = name.size() > 33 ? std::stoi(name.substr(33)) : 0;
    std::string body = object(name);
    if (k + 1 < stripes_of[base]) EXPECT_EQ(body.size(), stripe) << name;
    else EXPECT_LE(body.size(), stripe) << name;
    EXPECT_EQ(body.find(marker), std::string::npos) << name << " holds plaintext";
    EXPECT_EQ(body.find(big.substr(100, 64)), std::string::npos) << name << " holds plaintext";
  }
  auto fsck = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(fsck.rc, 0) << fsck.output;
  EXPECT_NE(fsck.output.find("clean"), std::string::npos) << fsck.output;

  // Shown everywhere; the secret nowhere.
  json o = show()["engines"]["objects"];
  EXPECT_EQ(o["kind"], "s3");
  EXPECT_EQ(o["bucket"], kBucket);
  EXPECT_EQ(o["prefix"], prefix());
  EXPECT_EQ(o["endpoint"], s3.endpoint);
  EXPECT_EQ(o["credentials"], creds);
  EXPECT_EQ(show().dump().find(s3.secret_key), std::string::npos);
  EXPECT_EQ(read_file(log).find(s3.secret_key), std::string::npos);
}

TEST_F(S3Test, AChangedOrMissingStripeIsAnIOErrorNeverOtherBytes) {
  init(objects_flags());
  mount();
  std::string written = random_bytes(3 << 20, 3);
  write_file(at("f"), written);  // three stripes
  umount();
  auto names = objects();
  ASSERT_EQ(names.size(), 3u);
  std::string base = *names.begin();  // <id>, <id>.1, <id>.2 sort with the bare id first
  ASSERT_EQ(base.find('.'), std::string::npos);

  // One byte of stripe 1 flipped by someone with the bucket's keys.
  std::string body = object(base + ".1");
  ASSERT_GT(body.size(), 100u);
  write_file(dir + "/original", body);
  body[100] ^= 1;  // in its first chunk, the file's bytes from 1 MiB on
  write_file(dir + "/tampered", body);
  ASSERT_TRUE(s3.put(kBucket, prefix() + "/" + base + ".1", dir + "/tampered"));
  mount();
  std::string buf(65536, '\0');
  int fd = ::open(at("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, buf.data(), buf.size(), 0), 65536);  // stripe 0 is intact
  EXPECT_TRUE(buf == written.substr(0, 65536));
  EXPECT_EQ(::pread(fd, buf.data(), buf.size(), 1 << 20), -1);
  EXPECT_EQ(errno, EIO);
  ::close(fd);
  umount();

  // The middle stripe deleted: its bytes read EIO (not zeros), and fsck fails.
  ASSERT_TRUE(s3.put(kBucket, prefix() + "/" + base + ".1", dir + "/original"));
  ASSERT_TRUE(s3.remove(kBucket, prefix() + "/" + base + ".1"));
  mount();
  fd = ::open(at("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, buf.data(), buf.size(), (1 << 20) + 8192), -1);
  EXPECT_EQ(errno, EIO);
  ::close(fd);
  umount();
  auto fsck = run(cmkfs_binary() + " fsck " + store);
  EXPECT_NE(fsck.rc, 0) << fsck.output;
}

TEST_F(S3Test, CredentialsArePrivateTheEndpointIsCheckedAndWrongKeysAreRefused) {
  ::chmod(creds.c_str(), 0644);
  auto r = run(cmkfs_binary() + " init " + store + " --local-key-file " + key + objects_flags());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("chmod"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(s3.secret_key), std::string::npos);
  ::chmod(creds.c_str(), 0600);

  // Plain http goes to this host only: the requests are signed, not encrypted.
  r = run(cmkfs_binary() + " init " + store + " --local-key-file " + key + std::string(" --objects s3://") + kBucket +
          " --s3-endpoint http://192.0.2.1:7480 --s3-credentials " + creds);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find("use https"), std::string::npos) << r.output;

  // A wrong secret: the gateway refuses, the error names the bucket, never the secret.
  write_file(creds, "access_key = " + s3.access_key + "\nsecret_key = not-the-secret-at-all\n");
  r = run(cmkfs_binary() + " init " + store + " --local-key-file " + key + objects_flags());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.output.find(kBucket), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("not-the-secret-at-all"), std::string::npos) << r.output;
  EXPECT_FALSE(stdfs::exists(store + "/meta/data.mdb"));
}

TEST_F(S3Test, RevokedThroughTheMountThenServedAgainWithoutARemount) { revoke_and_restore_through_the_mount(); }

TEST_F(S3Test, ADataKeyRotationMovesEveryFileIntoNewObjectsAndRemovesTheOld) {
  init_vault(key_url, objects_flags());
  mount("--key-check-interval 1s");  // the new generation is taken up at the next check
  for (int i = 0; i < 3; ++i) write_file(at("f" + std::to_string(i)), random_bytes(2500000 + i, 20 + i));
  ASSERT_EQ(::system(("sync -f " + mnt).c_str()), 0);
  std::set<std::string> before = objects();
  ASSERT_EQ(before.size(), 9u);  // three stripes each
  auto r = run(cmkfs_binary() + " encryption rotate-data-key " + mnt);
  ASSERT_EQ(r.rc, 0) << r.output;
  ASSERT_TRUE(eventually(120, [&] { return data_key_rotated_to(2); })) << read_file(log);
  umount();
  std::set<std::string> after = objects();
  EXPECT_EQ(after.size(), before.size());
  for (const auto& name : after) EXPECT_EQ(before.count(name), 0u) << name;
  auto fsck = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(fsck.rc, 0) << fsck.output;
  mount();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(read_file(at("f" + std::to_string(i))) == random_bytes(2500000 + i, 20 + i)) << i;
}

}  // namespace
}  // namespace cmkfs::testing
