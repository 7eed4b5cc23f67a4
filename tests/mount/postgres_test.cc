// A store whose metadata is in PostgreSQL (the test server ctest's postgres fixture starts): what
// the database holds, one writer across hosts, and what an attacker who can write the store
// directory or the database, or a bad connection file, gets.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/lifecycle.h"
#include "tests/support/mount_fixture.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

class PostgresTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    const char* pg = ::getenv("CMKFS_TEST_PG_CONNINFO");
    if (pg == nullptr) GTEST_SKIP() << "no PostgreSQL server: run through ctest (its postgres fixture)";
    conninfo_text = read_file(pg);
    conninfo = dir + "/conninfo";
    write_file(conninfo, conninfo_text);
    ::chmod(conninfo.c_str(), 0600);
    store2 = dir + "/store2", mnt2 = dir + "/mnt2", log2 = dir + "/log2";
  }
  // A store of this test's with its metadata in `schema`.
  void init_pg(const std::string& schema, const std::string& conn = "") {
    auto r = run(cmkfs_binary() + " init " + store + " --local-key-file " + key + " --meta postgres://" + schema +
                 " --pg-conninfo " + (conn.empty() ? conninfo : conn));
    ASSERT_EQ(r.rc, 0) << r.output;
  }
  std::string schema() const {
    std::string s = "t" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s.substr(0, 60);
  }
  // What a server restart does to the writer: its lock's session ends.
  void end_writer_session() const {
    auto killed = psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                       "left('cmkfs writer " + schema() + "', 63)");
    ASSERT_EQ(killed.rc, 0) << killed.output;
    ASSERT_NE(killed.output.find('t'), std::string::npos) << killed.output;
  }
  CommandResult psql(const std::string& sql) const {
    std::string line = conninfo_text.substr(0, conninfo_text.find('\n'));
    return run("psql -X -q -t -A -v ON_ERROR_STOP=1 '" + line + "' -c \"" + sql + "\"");
  }
  static bool says(const CommandResult& r, const std::string& what) { return r.output.find(what) != std::string::npos; }
  std::string password() const {
    auto at = conninfo_text.find("password=");
    return conninfo_text.substr(at + 9, conninfo_text.find_first_of(" \n", at + 9) - at - 9);
  }

  // A follower of this test's mounted store: a second directory of it (a copy, its objects
  // bound in) mounted with --follow at mnt2, logging to log2.
  void mount_follower(const std::string& options = "") {
    stdfs::create_directories(mnt2);
    ASSERT_EQ(run("cp -a " + store + " " + store2).rc, 0);
    ASSERT_EQ(run("mount --bind " + store + "/objects " + store2 + "/objects").rc, 0);
    auto follower = run(cmkfs_binary() + " mount " + store2 + " " + mnt2 + " --follow --log-file " + log2 + options);
    ASSERT_EQ(follower.rc, 0) << follower.output;
  }
  void unbind_follower_objects() { ::umount2((store2 + "/objects").c_str(), MNT_DETACH); }

  std::string conninfo, conninfo_text;
  std::string store2, mnt2, log2;  // a second host's directory of the store, its mountpoint and log
};

TEST_F(PostgresTest, TheDatabaseHoldsSealedRecordsOnlyAndTheStoreDirectoryNone) {
  init_pg(schema());
  mount();
  ASSERT_EQ(::mkdir(at("very-secret-directory").c_str(), 0755), 0);
  write_file(at("very-secret-directory/very-secret-name"), "very secret content");
  umount();
  // The store directory names the store and nothing else.
  EXPECT_FALSE(stdfs::exists(store + "/meta/data.mdb"));
  EXPECT_TRUE(stdfs::exists(store + "/meta/engine.json"));
  auto rows = psql("SELECT count(*) FROM " + schema() + ".records");
  ASSERT_EQ(rows.rc, 0) << rows.output;
  EXPECT_GE(std::stoi(rows.output), 5);
  for (const char* secret : {"very-secret", "very secret"}) {
    auto hits = psql("SELECT count(*) FROM " + schema() + ".records WHERE position(convert_to('" + secret +
                     "', 'UTF8') in v) > 0 OR position(convert_to('" + secret + "', 'UTF8') in k) > 0");
    ASSERT_EQ(hits.rc, 0) << hits.output;
    EXPECT_EQ(std::stoi(hits.output), 0) << secret;
  }
  json engines = json::parse(run(cmkfs_binary() + " encryption show " + store).output)["engines"]["metadata"];
  EXPECT_EQ(engines["kind"], "postgres");
  EXPECT_EQ(engines["schema"], schema());
  auto fsck = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(fsck.rc, 0) << fsck.output;
  mount();
  EXPECT_EQ(read_file(at("very-secret-directory/very-secret-name")), "very secret content");
}

// A second host's directory of the same store (a copy of this one: the same binding, the same
// schema) cannot mount while the first mount lives, and can as soon as it is gone, even killed.
TEST_F(PostgresTest, OneWriterAcrossHostsAndAKilledOneLetsTheNextIn) {
  init_pg(schema());
  mount();
  write_file(at("f"), "from the first host");
  ASSERT_EQ(::system(("sync -f " + mnt).c_str()), 0);
  stdfs::create_directories(mnt2);
  ASSERT_EQ(run("cp -a " + store + " " + store2).rc, 0);
  auto second = run(cmkfs_binary() + " mount " + store2 + " " + mnt2 + " --log-file " + log2);
  EXPECT_EQ(second.rc, 13) << second.output;
  EXPECT_TRUE(says(second, "mounted (or checked) by another cmkfs")) << second.output;
  EXPECT_EQ(run(cmkfs_binary() + " fsck " + store2).rc, 13);

  pid_t pid = daemon_pid(store);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_TRUE(wait_gone(pid, 10));
  detach_mounts_below(mnt);
  mounted = false;
  second = retried_while_in_use([&] { return run(cmkfs_binary() + " mount " + store2 + " " + mnt2 + " --log-file " + log2); });
  ASSERT_EQ(second.rc, 0) << second.output << read_file(log2);
  EXPECT_EQ(read_file(mnt2 + "/f"), "from the first host");
  EXPECT_EQ(run(cmkfs_binary() + " umount " + mnt2).rc, 0);
}

// A follower (cmkfs mount --follow) on a second host's directory of the store, sharing its
// objects (here a bind mount; RADOS between machines): every close on the writer is visible at
// once through it (close-to-open), names come and go with the writer's commits, and it writes
// nothing.
TEST_F(PostgresTest, AFollowerSeesEveryCloseAtOnceAndWritesNothing) {
  init_pg(schema());
  mount();
  write_file(at("f1"), "one");
  mount_follower();
  auto there = [&](const std::string& rel) { return mnt2 + "/" + rel; };
  EXPECT_EQ(read_file(there("f1")), "one");

  write_file(at("f2"), "two");
  EXPECT_EQ(read_file(there("f2")), "two");
  {
    std::ofstream out(at("f1"), std::ios::app);
    out << " and more";
  }
  EXPECT_EQ(read_file(there("f1")), "one and more");
  std::string large(9 << 20, 'x');
  for (size_t i = 0; i < large.size(); i += 4096) large[i] = static_cast<char>('a' + i % 26);
  write_file(at("large"), large);
  EXPECT_EQ(read_file(there("large")), large);
  // Names change with the writer's commit, as soon as the feed brings it (milliseconds).
  struct stat st;
  auto gone = [&](const std::string& rel) { return eventually(5, [&] { return ::stat(there(rel).c_str(), &st) != 0; }); };
  ASSERT_EQ(::rename(at("f2").c_str(), at("f3").c_str()), 0);
  EXPECT_TRUE(gone("f2"));
  EXPECT_EQ(read_file(there("f3")), "two");
  ASSERT_EQ(::unlink(at("f3").c_str()), 0);
  EXPECT_TRUE(gone("f3"));
  ASSERT_EQ(::mkdir(at("d").c_str(), 0755), 0);
  write_file(at("d/x"), "in d");
  EXPECT_EQ(read_file(there("d/x")), "in d");
  // A name is bytes, not UTF-8 (it once took the writer down: the feed's JSON would not hold it).
  write_file(at("d/\xff\x01bytes"), "any name");
  EXPECT_EQ(read_file(there("d/\xff\x01bytes")), "any name");

  // It writes nothing: the mount is read-only, and its unmount saves nothing.
  EXPECT_NE(run("touch " + there("nope")).rc, 0);
  EXPECT_NE(::stat(at("nope").c_str(), &st), 0);
  EXPECT_EQ(run(cmkfs_binary() + " umount " + mnt2).rc, 0);
  EXPECT_EQ(read_file(log2).find(" error "), std::string::npos) << read_file(log2);
  EXPECT_EQ(read_file(at("f1")), "one and more");
  umount();
  unbind_follower_objects();
  auto fsck = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(fsck.rc, 0) << fsck.output;

  // A store of one mount has nobody to follow.
  auto lmdb = run(cmkfs_binary() + " init " + dir + "/plain --local-key-file " + dir + "/key3");
  ASSERT_EQ(lmdb.rc, 0) << lmdb.output;
  auto refused = run(cmkfs_binary() + " mount " + dir + "/plain " + mnt2 + " --follow --log-file " + dir + "/log3");
  EXPECT_EQ(refused.rc, 2) << refused.output;
  EXPECT_TRUE(says(refused, "--follow needs a store whose metadata is in PostgreSQL")) << refused.output;
}

// Close-to-open does not wait for the feed: with the follower's feed cut (its LISTEN session
// ended; it reconnects a second later), what the kernel cached of a file the writer changed
// since (its size, its pages) is not served at the next open. It once was: the size came from
// the kernel's attributes, cached for --attr-timeout, and the pages were kept.
TEST_F(PostgresTest, AFollowersOpenServesTheLastCloseEvenBeforeTheFeedBringsIt) {
  init_pg(schema());
  mount();
  write_file(at("f1"), "one");
  write_file(at("g"), "g");
  mount_follower(" --attr-timeout 60");
  std::string there = mnt2 + "/f1";
  EXPECT_EQ(read_file(there), "one");
  struct stat st;
  ASSERT_EQ(::stat((mnt2 + "/g").c_str(), &st), 0);  // its attributes cached for a minute
  auto cut = psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = 'LISTEN " + schema() + "'");
  ASSERT_EQ(cut.rc, 0) << cut.output;
  ASSERT_EQ(std::stoi(cut.output), 1) << cut.output;
  write_file(at("g"), "gg");  // what only the feed can show (g is not opened)
  {
    std::ofstream out(at("f1"), std::ios::app);
    out << " and more";
  }
  EXPECT_EQ(read_file(there), "one and more");  // a new size
  write_file(at("f1"), "ONE AND MORE");
  EXPECT_EQ(read_file(there), "ONE AND MORE");  // the same size, other pages
  ASSERT_EQ(::stat((mnt2 + "/g").c_str(), &st), 0);
  if (st.st_size != 1) {  // the feed was back (a reconnection a second after the cut) before the reads
    std::cerr << "note: this run was slower than the feed's reconnection and proves less than it should\n";
  }
  // The feed comes back (it reconnects, and drops what the kernel cached): a file's new size is
  // seen without an open of it, though the kernel was told to cache its attributes for a minute.
  write_file(at("g"), "grown");
  EXPECT_TRUE(eventually(10, [&] { return ::stat((mnt2 + "/g").c_str(), &st) == 0 && st.st_size == 5; }));
  EXPECT_EQ(run(cmkfs_binary() + " umount " + mnt2).rc, 0);
  umount();
  unbind_follower_objects();
}

// A follower reading a file while the writer's data-key rotation moves it to a new object reads
// on, whole: its open file follows the record to the new object and the new generation's key
// (it read the old object with the new key, EIO, before). The follower checks the key less often
// than the writer rotates: the feed telling of the move is sealed under a generation it does not
// hold yet, and what it said is read again once the follower takes it (EIO before, under load).
TEST_F(PostgresTest, AFollowersOpenFileReadsWholeAcrossADataKeyRotation) {
  init_pg(schema());
  mount("--key-check-interval 1s");
  std::string content(6 << 20, 'r');
  for (size_t i = 0; i < content.size(); i += 4096) content[i] = static_cast<char>('a' + (i / 4096) % 26);
  write_file(at("f"), content);
  mount_follower(" --key-check-interval 4s");
  int fd = ::open((mnt2 + "/f").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::string got(content.size(), '\0');
  ASSERT_EQ(::pread(fd, got.data(), 1 << 20, 0), 1 << 20);
  auto r = run(cmkfs_binary() + " encryption rotate-data-key " + mnt);
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_TRUE(eventually(60, [&] { return data_key_rotated_to(2); })) << read_file(log);
  // The follower's key check takes the new generation (a fixed 2.5 s wait failed under load).
  EXPECT_TRUE(wait_for_text(log2, "data-key generation 2 in use", 30)) << read_file(log2);
  write_file("/proc/sys/vm/drop_caches", "3");  // what it cached goes: the rest is read now
  size_t done = 1 << 20;
  while (done < got.size()) {
    ssize_t n = ::pread(fd, got.data() + done, got.size() - done, static_cast<off_t>(done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  EXPECT_EQ(done, content.size()) << std::strerror(errno) << "\n" << read_file(log2);
  EXPECT_TRUE(got == content);
  EXPECT_EQ(read_file(mnt2 + "/f"), content);
  EXPECT_EQ(run(cmkfs_binary() + " umount " + mnt2).rc, 0);
  unbind_follower_objects();
}

// Anyone with a login to the database can NOTIFY the store's channel: a flood of payloads that
// do not open is one line a minute in the follower's log (each was a line), and it keeps serving.
TEST_F(PostgresTest, GarbageOnTheFeedIsLoggedOnceAMinuteAndTheFollowerServes) {
  init_pg(schema());
  mount();
  mount_follower();
  ASSERT_EQ(psql("SELECT count(pg_notify('" + schema() + "', 'garbage' || g)) FROM generate_series(1, 200) g").rc, 0);
  write_file(at("after"), "still served");
  EXPECT_EQ(read_file(mnt2 + "/after"), "still served");
  EXPECT_TRUE(wait_for_text(log2, "did not open", 5)) << read_file(log2);
  ::usleep(300000);
  std::string logged = read_file(log2);
  size_t lines = 0;
  for (size_t at = logged.find("did not open"); at != std::string::npos; at = logged.find("did not open", at + 1)) ++lines;
  EXPECT_EQ(lines, 1u) << logged;
  EXPECT_EQ(run(cmkfs_binary() + " umount " + mnt2).rc, 0);
  umount();
  unbind_follower_objects();
}

// The writer's lock is a session in the database, and the writer writes on it. If that session
// ends under it (a server restart, a terminated backend), the writer takes the lock back and
// writes on, without a remount, once the server has dropped the old session.
TEST_F(PostgresTest, AWriterWhoseLockSessionEndedTakesItBackAndWritesOn) {
  init_pg(schema());
  mount();
  write_file(at("before"), "kept");
  end_writer_session();
  bool written = false;
  for (int i = 0; i < 30 && !written; ++i) {  // a write may fail while the old session goes
    written = run("sh -c 'echo again > " + at("after") + "'").rc == 0;
    if (!written) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(written) << read_file(log);
  EXPECT_EQ(read_file(at("after")), "again\n");
  EXPECT_EQ(read_file(at("before")), "kept");
  stdfs::create_directories(mnt2);  // and it is the writer again: another mount is refused
  ASSERT_EQ(run("cp -a " + store + " " + store2).rc, 0);
  EXPECT_EQ(run(cmkfs_binary() + " mount " + store2 + " " + mnt2 + " --log-file " + log2).rc, 13);
}

// If another mount took the store meanwhile, the first never writes again: the other may have
// changed what the first holds in memory. Two never write side by side.
TEST_F(PostgresTest, AWriterWhoseLockAnotherMountTookMeanwhileWritesNothingMore) {
  init_pg(schema());
  mount();
  write_file(at("before"), "kept");
  // Stopped while the other mount takes the lock: running, the first takes it back within a
  // second (the test above), and under a sanitizer it won that race before the other was up.
  int rc = -1;
  {
    pid_t first = daemon_pid(store);
    ASSERT_GT(first, 0);
    struct Resume {  // at the block's end, and on every return: a stopped daemon would hang the teardown
      pid_t pid;
      ~Resume() { ::kill(pid, SIGCONT); }
    } resume{first};
    ASSERT_EQ(::kill(first, SIGSTOP), 0);
    end_writer_session();
    stdfs::create_directories(mnt2);
    ASSERT_EQ(run("cp -a " + store + " " + store2).rc, 0);
    for (int i = 0; i < 30 && rc != 0; ++i) {  // once the server has dropped the old session's lock
      rc = run(cmkfs_binary() + " mount " + store2 + " " + mnt2 + " --log-file " + log2).rc;
      if (rc != 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(read_file(mnt2 + "/before"), "kept");
  EXPECT_NE(run("sh -c 'echo x > " + at("late") + "'").rc, 0);  // the second holds the lock
  // and its mark says so: the first knows it is done at once, not when the second lets go
  EXPECT_TRUE(wait_for_text(log, "another cmkfs wrote this store", 5)) << read_file(log);
  write_file(mnt2 + "/second", "by the second");
  EXPECT_EQ(run(cmkfs_binary() + " umount " + mnt2).rc, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the first's retry interval
  EXPECT_NE(run("sh -c 'echo x > " + at("later") + "'").rc, 0);  // the lock is free, the mark not its own
  EXPECT_TRUE(wait_for_text(log, "another cmkfs wrote this store", 5)) << read_file(log);
}

// Two stores whose schema names differ in their last character, mounted at once, both write
// (their lock keys once met, and each mount froze the other).
TEST_F(PostgresTest, StoresWithNeighbouringNamesDoNotBlockEachOther) {
  init_pg(schema() + "0");
  std::string other = dir + "/other";
  auto r = run(cmkfs_binary() + " init " + other + " --local-key-file " + dir + "/key2 --meta postgres://" + schema() +
               "1 --pg-conninfo " + conninfo);
  ASSERT_EQ(r.rc, 0) << r.output;
  mount();
  stdfs::create_directories(mnt2);
  auto m = run(cmkfs_binary() + " mount " + other + " " + mnt2 + " --log-file " + log2);
  ASSERT_EQ(m.rc, 0) << m.output;
  auto both = run("timeout 20 sh -c 'for i in $(seq 50); do echo $i > " + at("f") + "; echo $i > " + mnt2 +
                  "/f; done'");
  EXPECT_EQ(both.rc, 0) << both.output;
  EXPECT_EQ(read_file(mnt2 + "/f"), "50\n");
  EXPECT_EQ(run(cmkfs_binary() + " umount " + mnt2).rc, 0);
}

// Whoever can write the database swaps two stores' schemas: each store finds another's metadata
// where its own should be, and refuses it before reading a record.
TEST_F(PostgresTest, SwappedSchemasAreRefused) {
  init_pg(schema());
  std::string other = dir + "/other";
  auto r = run(cmkfs_binary() + " init " + other + " --local-key-file " + dir + "/key2 --meta postgres://" + schema() +
               "_b --pg-conninfo " + conninfo);
  ASSERT_EQ(r.rc, 0) << r.output;
  ASSERT_EQ(psql("ALTER SCHEMA " + schema() + " RENAME TO " + schema() + "_x; ALTER SCHEMA " + schema() + "_b RENAME TO " +
                 schema() + "; ALTER SCHEMA " + schema() + "_x RENAME TO " + schema() + "_b")
                .rc,
            0);
  auto m = try_mount();
  EXPECT_EQ(m.rc, 11) << m.output;
  EXPECT_TRUE(says(m, "not store")) << m.output;
  EXPECT_EQ(run(cmkfs_binary() + " fsck " + store).rc, 11);
}

// The store directory names the store only: garbage there, or a store this host has no binding
// for, is a clear refusal.
TEST_F(PostgresTest, TheStoreDirectoryCannotPointTheMetadataAnywhere) {
  init_pg(schema());
  write_file(store + "/meta/engine.json", "{\"engine\":\"postgres\",\"store_id\":\"00112233445566778899aabbccddeeff\"}");
  auto m = try_mount();
  EXPECT_EQ(m.rc, 10) << m.output;
  EXPECT_TRUE(says(m, "no binding saying where")) << m.output;
  write_file(store + "/meta/engine.json", "not json");
  m = try_mount();
  EXPECT_EQ(m.rc, 10) << m.output;
  EXPECT_TRUE(says(m, "engine.json is damaged")) << m.output;
}

// The connection string holds a password: a file others may read is refused, and no error ever
// shows the password, even when the server is not there.
TEST_F(PostgresTest, TheConnectionFileIsPrivateAndItsPasswordNeverShown) {
  ::chmod(conninfo.c_str(), 0644);
  auto r = run(cmkfs_binary() + " init " + store + " --local-key-file " + key + " --meta postgres --pg-conninfo " + conninfo);
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_TRUE(says(r, "chmod")) << r.output;
  EXPECT_FALSE(says(r, password())) << r.output;
  ::chmod(conninfo.c_str(), 0600);
  // libpq's own parse error would quote the part it cannot parse: here, the password.
  std::string malformed = dir + "/malformed";
  write_file(malformed, "host=127.0.0.1 password=leaked secret\n");
  ::chmod(malformed.c_str(), 0600);
  r = run(cmkfs_binary() + " init " + dir + "/m --local-key-file " + dir + "/k3 --meta postgres --pg-conninfo " + malformed);
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_TRUE(says(r, "malformed")) << r.output;
  EXPECT_FALSE(says(r, "secret") || says(r, "leaked")) << r.output;
  init_pg(schema());
  // The server moves away: the mount fails, saying why, without the password.
  std::string moved = conninfo_text;
  auto port = moved.find("port=");
  moved.replace(port, moved.find(' ', port) - port, "port=1");
  write_file(conninfo, moved);
  auto m = try_mount();
  EXPECT_NE(m.rc, 0) << m.output;
  EXPECT_TRUE(says(m, "cannot connect")) << m.output;
  EXPECT_FALSE(says(m, password())) << m.output;
  EXPECT_EQ(read_file(log).find(password()), std::string::npos);
}

}  // namespace
}  // namespace cmkfs::testing
