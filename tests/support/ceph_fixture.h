// The single-host Ceph cluster (scripts/ceph-cluster.sh, with its S3 gateway) that ctest starts
// once per run as the `ceph` fixture and names in $CMKFS_TEST_CEPH_DIR, and what tests ask of
// it: RADOS object names, and S3 requests signed with the gateway user's keys (curl --aws-sigv4).
#pragma once

#include <cstdlib>
#include <set>
#include <sstream>
#include <string>

#include "tests/support/lifecycle.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/vault_fixture.h"

namespace cmkfs::testing {

inline std::string ceph_dir() {
  const char* d = ::getenv("CMKFS_TEST_CEPH_DIR");
  return d == nullptr ? "" : d;
}

inline std::set<std::string> lines_of(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.insert(line);
  }
  return out;
}

// The gateway: its endpoint and a credentials file for cmkfs (access_key = / secret_key =).
struct S3Gateway {
  std::string endpoint, access_key, secret_key;

  static S3Gateway from(const std::string& ceph) {
    S3Gateway g;
    for (const auto& line : lines_of(read_file(ceph + "/rgw.env"))) {
      auto eq = line.find('=');
      std::string k = line.substr(0, eq), v = line.substr(eq + 1);
      if (k == "RGW_ENDPOINT") g.endpoint = v;
      if (k == "RGW_ACCESS_KEY") g.access_key = v;
      if (k == "RGW_SECRET_KEY") g.secret_key = v;
    }
    return g;
  }
  void write_credentials(const std::string& path) const {
    write_file(path, "# S3 keys of the test gateway's user\naccess_key = " + access_key + "\nsecret_key = " + secret_key + "\n");
    ::chmod(path.c_str(), 0600);
  }
  // curl, signed; `rest`: the method, the path under the endpoint and any body options.
  CommandResult curl(const std::string& rest) const {
    return run("curl -s --aws-sigv4 aws:amz:us-east-1:s3 --user '" + access_key + ":" + secret_key +
               "' -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' " + rest);
  }
  // The keys under bucket/prefix/ (up to 1000: the tests' stores are small).
  std::set<std::string> keys(const std::string& bucket, const std::string& prefix) const {
    auto r = curl("'" + endpoint + "/" + bucket + "?list-type=2&prefix=" + prefix + "%2F' | grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g'");
    return lines_of(r.output);
  }
  std::string get(const std::string& bucket, const std::string& key) const {
    return curl("'" + endpoint + "/" + bucket + "/" + key + "'").output;
  }
  bool put(const std::string& bucket, const std::string& key, const std::string& file) const {
    return curl("-f -X PUT --data-binary @" + file + " '" + endpoint + "/" + bucket + "/" + key + "'").rc == 0;
  }
  bool remove(const std::string& bucket, const std::string& key) const {
    return curl("-f -X DELETE '" + endpoint + "/" + bucket + "/" + key + "'").rc == 0;
  }
};

// A store whose objects are in the cluster, under a vault key: each kind says how init places
// them and what the cluster holds.
class ClusterObjectsTest : public Lifecycle<VaultTest> {
 protected:
  virtual std::string objects_flags() const = 0;
  virtual std::set<std::string> objects() const = 0;  // this test's object names

  // Revoked, every access through the mount is EACCES (cached pages too); restored, it serves
  // again without a remount, and writes what it is given.
  void revoke_and_restore_through_the_mount() {
    init_vault(key_url, objects_flags());
    mount_with_file();
    ASSERT_FALSE(objects().empty());
    vault_json("key disable --name cmk");
    expect_revoked();
    vault_json("key enable --name cmk");
    expect_serving();
    write_file(at("after"), "written after the restore");
    release();
    remount();
    EXPECT_EQ(read_file(at("after")), "written after the restore");
    EXPECT_EQ(read_file(at("f")), content);
  }
};

}  // namespace cmkfs::testing
