// The offline commands on real stores. fsck: clean after ordinary use (links, holes, an orphan
// left by a crash), every kind of damage reported by inode and chunk with exit code 10, nothing
// changed by the check, a mounted store and a wrong key refused. inspect: a registry's
// repositories, tags and blobs and an OCI layout's refs, read back through the encryption.
#include <fcntl.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <thread>

#include "tests/support/lmdb_poke.h"
#include "tests/support/mount_fixture.h"

namespace cmkfs::testing {
namespace {

class FsckTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    init();
    mount();
  }
  CommandResult fsck() { return run(cmkfs_binary() + " fsck " + store); }
  // Fills the mount with what a registry leaves: directories, files large and small, links, a hole.
  void populate() {
    stdfs::create_directories(at("blobs/sha256/ab"));
    stdfs::create_directories(at("repositories/app/_manifests"));
    write_file(at("blobs/sha256/ab/data"), std::string(300000, 'L'));
    write_file(at("repositories/app/_manifests/link"), "sha256:ab");
    ASSERT_EQ(::link(at("blobs/sha256/ab/data").c_str(), at("repositories/app/layer").c_str()), 0);
    ASSERT_EQ(::symlink("data", at("blobs/sha256/ab/current").c_str()), 0);
    int fd = ::open(at("sparse").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "x", 1, 5 << 20), 1);
    ::close(fd);
  }
  uint64_t ino_of(const std::string& rel) {
    struct stat st;
    EXPECT_EQ(::stat(at(rel).c_str(), &st), 0);
    return st.st_ino;
  }
};

TEST_F(FsckTest, CleanStoreAfterOrdinaryUse) {
  populate();
  umount();
  auto r = fsck();
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("3 files, 1 symlinks"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("clean"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("problem"), std::string::npos) << r.output;
}

TEST_F(FsckTest, OrphanLeftByACrashIsNotAProblem) {
  write_file(at("f"), "orphan");
  int fd = ::open(at("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::unlink(at("f").c_str()), 0);
  sync_dir(mnt);  // the unlink is on disk (group commit would write it within milliseconds)
  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(wait_gone(pid, 10));
  ::close(fd);
  detach_mounts_below(mnt);
  mounted = false;
  auto r = fsck();
  EXPECT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("1 orphans"), std::string::npos) << r.output;
}

TEST_F(FsckTest, ReportsEveryKindOfDamageAndChangesNothing) {
  populate();
  uint64_t blob = ino_of("blobs/sha256/ab/data"), link = ino_of("repositories/app/_manifests/link");
  umount();
  // A flipped bit in chunk 3 of the blob, a tampered inode record, a stray file, a leaked object.
  std::string blob_object;  // 300,000 bytes in 74 chunks; the sparse file's object is 5 MiB
  for (const auto& f : object_files()) {
    if (stdfs::file_size(f) > 300000 && stdfs::file_size(f) < 400000) blob_object = f;
  }
  ASSERT_FALSE(blob_object.empty());
  std::string s = read_file(blob_object);
  s[3 * (4096 + 28) + 100] ^= 1;
  write_file(blob_object, s);
  poke_lmdb(store + "/meta", "inodes", be64(link), [](std::string& v) { v[v.size() / 2] ^= 1; });
  write_file(store + "/objects/00/stray", "x");
  write_file(store + "/objects/00/\x1b]0;owned\x07", "x");  // a terminal's title, set by a report
  write_file(store + "/objects/ab/abababababababababababababababab", "x");
  std::string meta_before = read_file(store + "/meta/data.mdb");

  auto r = fsck();
  EXPECT_EQ(r.rc, 10) << r.output;
  EXPECT_NE(r.output.find("inode " + std::to_string(blob) + ": chunk 3 does not authenticate"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("inode " + std::to_string(link) + ": "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("names missing inode " + std::to_string(link)), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stray: not an object of this store"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\\x1b]0;owned\\x07: not an object of this store"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << "an escape sequence reached the terminal";
  EXPECT_NE(r.output.find("object abababababababababababababababab belongs to no file"), std::string::npos) << r.output;
  // The link file's object lost its inode record, so it counts as leaked too.
  EXPECT_NE(r.output.find("fsck found 7 problem(s)"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(store + "/meta/data.mdb"), meta_before);  // read-only
  EXPECT_TRUE(stdfs::exists(store + "/objects/00/stray"));
}

// The chunks are checked in blocks on every core; the report still names the damaged files in
// inode order and counts every file once, and says how fast it went and on how many threads.
TEST_F(FsckTest, ChecksOnEveryCoreAndReportsInInodeOrder) {
  constexpr int kFiles = 500, kBlobs = 16;
  // Blobs first, as a registry holds them among its links: the first damaged file is in the
  // block that takes longest, so a report merged as blocks finish would not be in inode order.
  for (int i = 0; i < kBlobs; ++i) write_file(at("blob" + std::to_string(i)), std::string((4 << 20) + i, 'b'));
  uint64_t blob0 = ino_of("blob0");
  std::vector<uint64_t> inos;
  for (int i = 0; i < kFiles; ++i) {
    write_file(at("f" + std::to_string(i)), std::string(1000 + i, 'a' + i % 26));  // one chunk each
    inos.push_back(ino_of("f" + std::to_string(i)));
  }
  umount();
  const std::vector<int> damaged = {7, 200, 450};  // told apart by their objects' lengths
  uintmax_t blob0_length = UINTMAX_MAX;            // the shortest blob's
  for (const auto& f : object_files()) {
    if (stdfs::file_size(f) > (4 << 20)) blob0_length = std::min(blob0_length, stdfs::file_size(f));
  }
  for (const auto& f : object_files()) {
    int i = static_cast<int>(stdfs::file_size(f)) - 1000 - 28;
    if (stdfs::file_size(f) != blob0_length && std::find(damaged.begin(), damaged.end(), i) == damaged.end()) continue;
    std::string s = read_file(f);
    s[40] ^= 1;
    write_file(f, s);
  }
  auto r = fsck();
  EXPECT_EQ(r.rc, 10) << r.output;
  EXPECT_NE(r.output.find(std::to_string(kFiles + kBlobs) + " files"), std::string::npos) << r.output;
  size_t last = r.output.find("inode " + std::to_string(blob0) + ": chunk 0 does not authenticate");
  ASSERT_NE(last, std::string::npos) << r.output;
  for (int i : damaged) {
    size_t pos = r.output.find("inode " + std::to_string(inos[i]) + ": chunk 0 does not authenticate");
    ASSERT_NE(pos, std::string::npos) << r.output;
    EXPECT_GT(pos, last) << "not in inode order: " << r.output;
    last = pos;
  }
  EXPECT_NE(r.output.find("fsck found 4 problem(s)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("MB/s, "), std::string::npos) << r.output;
  // How many threads took part depends on the scheduler (a loaded machine may leave the helper
  // asleep): the report says it, and scripts/bench.sh measures the rate.
  EXPECT_NE(r.output.find(" threads"), std::string::npos) << r.output;
}

TEST_F(FsckTest, NamesPathsAndRegistryBlobsAndRepairsOnlyWhatIsSafe) {
  const std::string hex(64, 'c'), v2 = "reg/docker/registry/v2";
  const std::string blob = v2 + "/blobs/sha256/cc/" + hex + "/data";
  stdfs::create_directories(at(v2 + "/blobs/sha256/cc/" + hex));
  stdfs::create_directories(at(v2 + "/repositories/apps/web/_layers/sha256/" + hex));
  write_file(at(blob), std::string(300000, 'L'));
  write_file(at(v2 + "/repositories/apps/web/_layers/sha256/" + hex + "/link"), "sha256:" + hex);
  write_file(at("other"), std::string(50000, 'o'));
  uint64_t blob_ino = ino_of(blob), other_ino = ino_of("other");
  umount();
  std::string blob_object, other_object;
  for (const auto& f : object_files()) {
    auto size = stdfs::file_size(f);
    if (size > 300000 && size < 400000) blob_object = f;
    if (size > 50000 && size < 60000) other_object = f;
  }
  ASSERT_FALSE(blob_object.empty());
  ASSERT_FALSE(other_object.empty());
  std::string saved = read_file(blob_object);
  std::string flipped = saved;
  flipped[2 * (4096 + 28) + 7] ^= 1;  // chunk 2
  write_file(blob_object, flipped);
  write_file(other_object, read_file(other_object) + std::string(5000, 'x'));  // longer than its file
  write_file(store + "/objects/ab/abababababababababababababababab", "x");       // leaked

  auto r = fsck();
  EXPECT_EQ(r.rc, 10) << r.output;
  EXPECT_NE(r.output.find("inode " + std::to_string(blob_ino) + ": chunk 2 does not authenticate"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("; path /" + blob + "; blob sha256:" + hex + " (repository apps/web)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("inode " + std::to_string(other_ino) + ": object is"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("path /other (fsck --repair fixes this)"), std::string::npos) << r.output;

  auto j = run(cmkfs_binary() + " fsck --json " + store + " 2>/dev/null");
  EXPECT_EQ(j.rc, 10);
  auto report = nlohmann::json::parse(j.output, nullptr, false);
  ASSERT_TRUE(report.is_object()) << j.output;
  EXPECT_EQ(report["clean"], false);
  EXPECT_EQ(report["problems"].size(), 3u) << j.output;
  size_t repairable = 0;
  for (const auto& p : report["problems"]) repairable += p["repairable"].get<bool>();
  EXPECT_EQ(repairable, 2u) << j.output;

  // --repair removes the leaked object and cuts the long one back; the damaged chunk stays.
  auto fixed = run(cmkfs_binary() + " fsck --repair " + store);
  EXPECT_EQ(fixed.rc, 10) << fixed.output;
  EXPECT_NE(fixed.output.find("repaired: removed leaked object abababababababababababababababab"), std::string::npos)
      << fixed.output;
  EXPECT_NE(fixed.output.find("object cut back to"), std::string::npos) << fixed.output;
  EXPECT_NE(fixed.output.find("chunk 2 does not authenticate"), std::string::npos) << fixed.output;
  EXPECT_NE(fixed.output.find("fsck found 1 problem(s)"), std::string::npos) << fixed.output;
  EXPECT_EQ(read_file(blob_object), flipped);  // authenticated data is never touched
  write_file(blob_object, saved);
  r = fsck();
  EXPECT_EQ(r.rc, 0) << r.output;
  mount();
  EXPECT_EQ(read_file(at("other")), std::string(50000, 'o'));
}

TEST_F(FsckTest, MissingAndTruncatedObjectsAreReported) {
  write_file(at("a"), std::string(50000, 'a'));
  uint64_t a = ino_of("a");
  umount();
  auto objects = object_files();
  ASSERT_EQ(objects.size(), 1u);
  stdfs::resize_file(objects[0], 20000);
  auto r = fsck();
  EXPECT_EQ(r.rc, 10) << r.output;
  EXPECT_NE(r.output.find("inode " + std::to_string(a) + ": object is 20000 bytes"), std::string::npos) << r.output;
  stdfs::remove(objects[0]);
  r = fsck();
  EXPECT_EQ(r.rc, 10) << r.output;
  EXPECT_NE(r.output.find("inode " + std::to_string(a) + ": object"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing"), std::string::npos) << r.output;
}

TEST_F(FsckTest, RefusesAMountedStoreAndAWrongKey) {
  auto r = fsck();
  EXPECT_EQ(r.rc, 13) << r.output;
  EXPECT_NE(r.output.find("in use"), std::string::npos) << r.output;
  umount();
  write_file(key, std::string(32, '\x07'));
  r = fsck();
  EXPECT_EQ(r.rc, 11) << r.output;
}

using InspectTest = FsckTest;

TEST_F(InspectTest, ShowsRepositoriesTagsBlobsAndOciLayouts) {
  std::string v2 = "reg/docker/registry/v2";
  stdfs::create_directories(at(v2 + "/repositories/apps/web/_manifests/tags/v1/current"));
  stdfs::create_directories(at(v2 + "/repositories/apps/web/_manifests/revisions/sha256/abcd"));
  stdfs::create_directories(at(v2 + "/repositories/apps/web/_layers/sha256/ef01"));
  stdfs::create_directories(at(v2 + "/blobs/sha256/ab/abcd"));
  stdfs::create_directories(at(v2 + "/blobs/sha256/ef/ef01"));
  write_file(at(v2 + "/repositories/apps/web/_manifests/tags/v1/current/link"), "sha256:abcd");
  write_file(at(v2 + "/blobs/sha256/ab/abcd/data"), std::string(1000, 'm'));
  write_file(at(v2 + "/blobs/sha256/ef/ef01/data"), std::string(5000, 'l'));
  stdfs::create_directories(at("layouts/app/blobs"));
  write_file(at("layouts/app/oci-layout"), R"({"imageLayoutVersion":"1.0.0"})");
  write_file(at("layouts/app/index.json"), R"({"schemaVersion":2,"manifests":[{"digest":"sha256:1234","size":500,)"
                                           R"("annotations":{"org.opencontainers.image.ref.name":"v2"}}]})");
  umount();

  auto r = run(cmkfs_binary() + " inspect " + store + " --registry-root /reg 2>/dev/null");
  ASSERT_EQ(r.rc, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["protection"]["keyEncryptionKey"], "local key file");
  EXPECT_EQ(j["protection"]["dataKeyGeneration"], 1);
  const auto& reg = j["registry"];
  EXPECT_EQ(reg["root"], "/reg/docker/registry/v2");
  ASSERT_EQ(reg["repositories"].size(), 1u) << r.output;
  EXPECT_EQ(reg["repositories"][0]["name"], "apps/web");
  EXPECT_EQ(reg["repositories"][0]["tags"]["v1"], "sha256:abcd");
  EXPECT_EQ(reg["repositories"][0]["manifestRevisions"], 1);
  EXPECT_EQ(reg["blobs"]["count"], 2);
  EXPECT_EQ(reg["blobs"]["bytes"], 6000);
  ASSERT_EQ(j["ociLayouts"].size(), 1u) << r.output;
  EXPECT_EQ(j["ociLayouts"][0]["path"], "/layouts/app");
  EXPECT_EQ(j["ociLayouts"][0]["manifests"][0]["ref"], "v2");
  EXPECT_EQ(j["ociLayouts"][0]["manifests"][0]["digest"], "sha256:1234");

  // Without the registry's root there is no registry to show.
  r = run(cmkfs_binary() + " inspect " + store + " 2>/dev/null");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_FALSE(nlohmann::json::parse(r.output).contains("registry"));
  // Mounted, the same report through the mount, by the store or by its mountpoint.
  mount();
  for (const std::string& target : {store, mnt}) {
    r = run(cmkfs_binary() + " inspect " + target + " --registry-root /reg 2>/dev/null");
    ASSERT_EQ(r.rc, 0) << r.output;
    auto live = nlohmann::json::parse(r.output);
    EXPECT_EQ(live["registry"]["repositories"], reg["repositories"]) << r.output;
    EXPECT_EQ(live["registry"]["blobs"]["bytes"], 6000);
    EXPECT_EQ(live["ociLayouts"], j["ociLayouts"]);
    EXPECT_EQ(live["protection"]["dataKeyGeneration"], 1);
    EXPECT_EQ(live["mountpoint"], mnt);
  }
}

}  // namespace
}  // namespace cmkfs::testing
