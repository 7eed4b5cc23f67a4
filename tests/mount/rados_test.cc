// A store whose objects are in Ceph RADOS, under a vault key, on a real single-host cluster
// (scripts/ceph-cluster.sh, the run's `ceph` fixture): the key lifecycle is the same as on a local
// store (revoked: EACCES through the mount, cached pages too; restored: serving again without a
// remount), and a data-key rotation moves every file into new RADOS objects and removes the old.
#include <set>

#include "tests/support/ceph_fixture.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

class RadosTest : public ClusterObjectsTest {
 protected:
  void SetUp() override {
    ClusterObjectsTest::SetUp();
    cluster_ = ceph_dir();
    ASSERT_FALSE(cluster_.empty()) << "needs the ceph fixture (CMKFS_TEST_CEPH_DIR)";
    std::string rados = "rados -c " + cluster_ + "/ceph.conf -p cmkfs -N " + ns();
    run(rados + " ls | xargs -r -n 100 " + rados + " rm");  // an earlier run's
  }
  // Each test's store in a namespace of its own.
  std::string objects_flags() const override {
    return " --objects rados://cmkfs/" + ns() + " --ceph-conf " + cluster_ + "/ceph.conf";
  }
  std::string ns() const { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }
  // The RADOS object names in this test's namespace.
  std::set<std::string> objects() const override {
    return lines_of(run("rados -c " + cluster_ + "/ceph.conf -p cmkfs -N " + ns() + " ls").output);
  }

  std::string cluster_;
};

TEST_F(RadosTest, RevokedThroughTheMountThenServedAgainWithoutARemount) { revoke_and_restore_through_the_mount(); }

TEST_F(RadosTest, ADataKeyRotationMovesEveryFileIntoNewObjects) {
  init_vault(key_url, objects_flags());
  mount("--key-check-interval 1s");  // the new generation is taken up at the next check
  for (int i = 0; i < 12; ++i) write_file(at("f" + std::to_string(i)), std::string(5000000 + i, 'a' + i));
  ASSERT_EQ(::system(("sync -f " + mnt).c_str()), 0);
  std::set<std::string> before = objects();
  ASSERT_GE(before.size(), 24u);  // two stripes each
  auto r = run(cmkfs_binary() + " encryption rotate-data-key " + mnt);
  ASSERT_EQ(r.rc, 0) << r.output;
  ASSERT_TRUE(eventually(120, [&] { return data_key_rotated_to(2); })) << read_file(log);
  for (int i = 0; i < 12; ++i) ASSERT_EQ(read_file(at("f" + std::to_string(i))), std::string(5000000 + i, 'a' + i)) << i;
  umount();
  // Every file's objects are new, and the old ones are gone from the cluster.
  std::set<std::string> after = objects();
  EXPECT_EQ(after.size(), before.size());
  for (const auto& name : after) EXPECT_EQ(before.count(name), 0u) << name;
  auto fsck = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(fsck.rc, 0) << fsck.output;
  mount();
  EXPECT_EQ(read_file(at("f7")), std::string(5000007, 'a' + 7));
}

}  // namespace
}  // namespace cmkfs::testing
