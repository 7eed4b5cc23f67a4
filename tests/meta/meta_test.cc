#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <lmdb.h>
#include <sys/stat.h>

#include <filesystem>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <fstream>

#include "tests/support/lmdb_poke.h"
#include "crypto/base/json_integer.h"
#include "meta/engine.h"
#include "meta/meta.h"
#include "meta/records.h"

namespace cmkfs::meta {
namespace {

namespace fs = std::filesystem;

// The PostgreSQL server the tests use: a connection string in this file (scripts/pg-cluster.sh,
// started by ctest's postgres fixture).
std::string pg_conninfo() {
  std::ifstream in(PG_CONNINFO_FILE);
  std::string line;
  std::getline(in, line);
  return line;
}

// A store's metadata in one engine: "lmdb" (a temporary directory) or "postgres" (a schema of
// its own in the test server's database).
class MetaTestBase : public ::testing::Test {
 protected:
  virtual std::string engine() const { return "lmdb"; }
  void SetUp() override {
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : test) c = std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
    dir = fs::temp_directory_path() / ("cmkfs-meta-" + std::to_string(::getpid()) + "-" + test);
    schema = "t" + std::to_string(::getpid()) + "_" + test.substr(0, 40);
    fs::remove_all(dir);
    fs::create_directories(dir);
    if (engine() == "postgres") {
      conninfo = pg_conninfo();
      if (conninfo.empty()) GTEST_SKIP() << "no PostgreSQL server (" << PG_CONNINFO_FILE << "): run through ctest";
      sql("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
    }
    auto s = open(/*create=*/true);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store = std::move(*s);
    auto dek = crypto::random_key();
    ASSERT_TRUE(dek.ok());
    keys = std::move(*crypto::derive_store_keys(*dek));
  }
  void TearDown() override {
    store.reset();
    fs::remove_all(dir);
    if (!conninfo.empty()) sql("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
  }
  Result<std::unique_ptr<MetaStore>> open(bool create) {
    if (engine() == "postgres") return MetaStore::open_postgres(conninfo, schema, create, false);
    return MetaStore::open(dir, create, false);
  }
  void reopen() {
    store.reset();
    store = std::move(*open(false));
  }
  Txn write() { return std::move(*store->begin(true, &keys)); }
  // One write transaction that puts sample_inode(ino): how it went.
  Status try_put_inode(uint64_t ino);
  // SQL: the session of this test's store's writer lock (other tests' servers run beside it).
  std::string writer_session() const { return "application_name = left('cmkfs writer " + schema + "', 63)"; }
  // A commit's `applied` runs before the next write transaction of the process begins.
  void expect_applied_before_the_next_writer();
  Txn read() { return std::move(*store->begin(false, &keys)); }

  // Runs `query` on the test server with binary parameters $1.. (bytea, or text cast in the
  // query); returns the first value of the first row, if any.
  std::string sql(const std::string& query, const std::vector<std::string>& params = {}) {
    PGconn* c = PQconnectdb(conninfo.c_str());
    EXPECT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (auto& p : params) {
      values.push_back(p.data());
      lengths.push_back(static_cast<int>(p.size()));
      formats.push_back(1);
    }
    PGresult* r = PQexecParams(c, query.c_str(), static_cast<int>(params.size()), nullptr, values.data(), lengths.data(),
                               formats.data(), 1);
    EXPECT_TRUE(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK) << PQerrorMessage(c);
    std::string out;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) out.assign(PQgetvalue(r, 0, 0), PQgetlength(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return out;
  }

  // Overwrites the raw value of `key` in `table`, bypassing sealing: what an attacker with the
  // database (or the backing directory) can do.
  void poke(std::string_view table, const std::string& key, const std::function<void(std::string&)>& edit) {
    store.reset();
    if (engine() == "postgres") {
      int t = 0;
      while (table_name(static_cast<Table>(t)) != table) ++t;
      std::string where = " WHERE tbl = " + std::to_string(t) + " AND k = $1";
      std::string v = sql("SELECT v FROM " + schema + ".records" + where, {key});
      edit(v);
      sql("UPDATE " + schema + ".records SET v = $2" + where, {key, v});
    } else {
      cmkfs::testing::poke_lmdb(dir, std::string(table), key, edit);
    }
    store = std::move(*open(false));
  }

  fs::path dir;
  std::string schema, conninfo;
  std::unique_ptr<MetaStore> store;
  crypto::StoreKeys keys;
};

// The tests every engine passes.
class MetaTest : public MetaTestBase, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string engine() const override { return GetParam(); }
};
INSTANTIATE_TEST_SUITE_P(Engines, MetaTest, ::testing::Values("lmdb", "postgres"),
                         [](const auto& info) { return info.param; });

InodeRecord sample_inode(uint64_t ino) {
  InodeRecord r;
  r.ino = ino;
  r.mode = S_IFREG | 0640;
  r.uid = 1000;
  r.gid = 100;
  r.nlink = 1;
  r.size = (uint64_t{5} << 30) + 17;
  r.parent = 77;
  r.mtime = {1700000000, 123456789};
  r.dek_generation = 1;
  r.file_id = {1, 2, 3, 4};
  r.chunk_writes = 42;
  r.symlink = "target";
  return r;
}

Status MetaTestBase::try_put_inode(uint64_t ino) {
  auto t = store->begin(true, &keys);
  if (!t.ok()) return t.status();
  CMKFS_RETURN_IF_ERROR(t->put_inode(sample_inode(ino)));
  return t->commit();
}

TEST_P(MetaTest, InodeRoundTripsThroughSealing) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(7)).ok());
  ASSERT_TRUE(t.commit().ok());
  auto r = read().get_inode(7);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, sample_inode(7));
  EXPECT_EQ(read().get_inode(8).status().code(), ENOENT);
  EXPECT_EQ(*read().last_inode(), 7u);
}

// A write begun on a thread that already holds one would wait for itself: refused instead, on
// either engine, with or without group commit (GroupCommitTest has the batched case).
TEST_P(MetaTest, AWriteBegunInsideAWriteOnOneThreadIsRefused) {
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
    EXPECT_EQ(store->begin(true, &keys).status().code(), EDEADLK);
    ASSERT_TRUE(t.commit().ok());
  }
  EXPECT_TRUE(try_put_inode(6).ok());  // once committed, the thread writes again
  {
    auto dropped = write();  // an abort lets go too
  }
  EXPECT_TRUE(try_put_inode(7).ok());
  EXPECT_TRUE(read().get_inode(5).ok());
}

// `applied` runs before the next write may begin; a write begun in it waited for itself.
TEST_P(MetaTest, ATransactionBegunWhileACommitIsAppliedIsRefused) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
  int write_code = 0, read_code = 0;
  bool durable_ran = false;
  ASSERT_TRUE(t.commit([&] {
                 write_code = store->begin(true, &keys).status().code();
                 read_code = store->begin(false, &keys).status().code();
                 store->when_durable([&] { durable_ran = true; });  // still flushes, then runs
               }).ok());
  EXPECT_EQ(write_code, EDEADLK);
  EXPECT_TRUE(durable_ran);
  // LMDB reads beside its one writer; PostgreSQL runs one transaction at a time.
  EXPECT_EQ(read_code, GetParam() == "postgres" ? EDEADLK : 0);
  EXPECT_TRUE(try_put_inode(6).ok());
}

// Crash-recovery notes are sealed: a data-key rotation reseals them with the records, so none is
// left under the key its end forgets (and then ignored, its repair lost).
TEST_P(MetaTest, RecoveryNotesOutliveADataKeyRotation) {
  Id128 id{};
  id[0] = 7;
  {
    Txn t = write();
    ASSERT_TRUE(t.add_pending_removal(id).ok());
    ASSERT_TRUE(t.add_writing(42).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  auto dek = crypto::random_key();
  ASSERT_TRUE(dek.ok());
  auto rotated = crypto::derive_store_keys(*dek);
  ASSERT_TRUE(rotated.ok());
  rotated->older_meta.push_back(std::move(keys.meta));
  keys = std::move(*rotated);  // the rotation: new records under the new key, old ones open
  {
    Txn t = read();
    EXPECT_EQ(t.pending_removals()->size(), 1u);
    EXPECT_EQ(*t.unauthentic_recovery_notes(false), 0u);
  }
  Txn::ResealCursor cursor;
  while (!cursor.done()) {
    Txn t = write();
    ASSERT_TRUE(t.reseal_stale(&cursor, 1).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  keys.older_meta.clear();  // the rotation's end
  Txn t = read();
  auto pending = t.pending_removals();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0], id);
  EXPECT_EQ(*t.writing(), std::vector<uint64_t>{42});
  EXPECT_EQ(*t.unauthentic_recovery_notes(false), 0u);
}

// PostgreSQL sends writes without waiting for their replies: a delete that finds nothing must
// still fail its transaction before the COMMIT goes out, and nothing of it land.
TEST_P(MetaTest, ATransactionWhoseDeleteFindsNothingFailsWhole) {
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(7)).ok());
    Status s = t.delete_inode(999);
    if (s.ok()) s = t.commit();
    EXPECT_TRUE(s.code() == ENOENT || s.code() == EIO) << s.message();  // EIO: reported by the COMMIT
  }
  EXPECT_EQ(read().get_inode(7).status().code(), ENOENT);
  auto next = write();  // and the next transaction runs as usual
  ASSERT_TRUE(next.put_inode(sample_inode(8)).ok());
  ASSERT_TRUE(next.commit().ok());
  EXPECT_TRUE(read().get_inode(8).ok());
}

TEST_P(MetaTest, ARewriteLeavesADeletedInodeDeletedAndAReadInsideSeesTheWrites) {
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(7)).ok());
    ASSERT_TRUE(t.put_inode(sample_inode(8)).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  {
    auto t = write();
    ASSERT_TRUE(t.delete_inode(7).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  auto t = write();
  InodeRecord changed = sample_inode(8);
  changed.size = 5;
  ASSERT_TRUE(t.rewrite_inode(sample_inode(7)).ok());
  ASSERT_TRUE(t.rewrite_inode(changed).ok());
  EXPECT_EQ(t.get_inode(7).status().code(), ENOENT);
  EXPECT_EQ(t.get_inode(8)->size, 5u);
  ASSERT_TRUE(t.commit().ok());
  EXPECT_EQ(read().get_inode(7).status().code(), ENOENT);
  EXPECT_EQ(read().get_inode(8)->size, 5u);
}

// A read whose statement fills the engine's queue of unanswered ones gets its own reply, and an
// earlier write's failure never reads as the read's answer.
TEST_P(MetaTest, AReadAfterManyWritesGetsItsOwnAnswer) {
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(2)).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  for (int writes = 120; writes < 260; ++writes) {
    auto t = write();
    for (int i = 0; i < writes; ++i) ASSERT_TRUE(t.put_inode(sample_inode(10 + i)).ok());
    auto got = t.get_inode(2);
    ASSERT_TRUE(got.ok()) << writes << ": " << got.status().message();
    EXPECT_EQ(*got, sample_inode(2));
  }
  auto t = write();
  Status s = t.delete_inode(999);
  auto got = t.get_inode(2);
  if (s.ok()) {  // the delete's ENOENT came with the read's reply: not as the read's own answer
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), EIO) << got.status().message();
  }
}

// More writes in one transaction than the engine queues unanswered (a rotation rewrites every
// record in one).
TEST_P(MetaTest, ATransactionOfThousandsOfWritesLandsWhole) {
  auto t = write();
  for (uint64_t ino = 10; ino < 1010; ++ino) ASSERT_TRUE(t.put_inode(sample_inode(ino)).ok());
  ASSERT_TRUE(t.commit().ok());
  auto r = read();
  for (uint64_t ino = 10; ino < 1010; ino += 97) EXPECT_EQ(*r.get_inode(ino), sample_inode(ino)) << ino;
  EXPECT_EQ(*r.last_inode(), 1009u);
}

TEST_P(MetaTest, InodeValueHoldsNoPlaintext) {
  auto t = write();
  InodeRecord r = sample_inode(9);
  r.symlink = "very-recognisable-symlink-target";
  ASSERT_TRUE(t.put_inode(r).ok());
  ASSERT_TRUE(t.commit().ok());
  poke(kTableInodes, be64_key(9), [](std::string& v) {
    EXPECT_EQ(v.find("very-recognisable"), std::string::npos);
  });
}

TEST_P(MetaTest, TamperedInodeRecordIsCorruption) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(3)).ok());
  ASSERT_TRUE(t.commit().ok());
  poke(kTableInodes, be64_key(3), [](std::string& v) { v[v.size() / 2] ^= 4; });
  EXPECT_EQ(read().get_inode(3).status().code(), EIO);
}

TEST_P(MetaTest, InodeRecordCopiedToAnotherInodeIsCorruption) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(3)).ok());
  ASSERT_TRUE(t.put_inode(sample_inode(4)).ok());
  ASSERT_TRUE(t.commit().ok());
  std::string three;
  poke(kTableInodes, be64_key(3), [&](std::string& v) { three = v; });
  poke(kTableInodes, be64_key(4), [&](std::string& v) { v = three; });
  EXPECT_TRUE(read().get_inode(3).ok());
  EXPECT_EQ(read().get_inode(4).status().code(), EIO);
}

TEST_P(MetaTest, WrongKeysCannotReadRecords) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(3)).ok());
  ASSERT_TRUE(t.commit().ok());
  auto other = crypto::derive_store_keys(*crypto::random_key());
  EXPECT_EQ(store->begin(false, &*other)->get_inode(3).status().code(), EIO);
  EXPECT_EQ(store->begin(false, nullptr)->get_inode(3).status().code(), EACCES);
}

TEST_P(MetaTest, EntriesAddLookupRemove) {
  auto t = write();
  ASSERT_TRUE(t.add_entry(1, "layer.tar", 5, S_IFREG).ok());
  EXPECT_EQ(t.add_entry(1, "layer.tar", 6, S_IFREG).code(), EEXIST);
  ASSERT_TRUE(t.add_entry(2, "layer.tar", 6, S_IFREG).ok());  // same name, other directory
  ASSERT_TRUE(t.commit().ok());
  {
    auto r = read();
    auto e = r.lookup(1, "layer.tar");
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->ino, 5u);
    EXPECT_EQ(r.lookup(2, "layer.tar")->ino, 6u);
    EXPECT_EQ(r.lookup(1, "missing").status().code(), ENOENT);
  }  // a process runs one transaction at a time (PostgreSQL, or LMDB with group commit)
  auto w = write();
  ASSERT_TRUE(w.remove_entry(1, "layer.tar").ok());
  EXPECT_EQ(w.remove_entry(1, "layer.tar").code(), ENOENT);
  EXPECT_FALSE(*w.has_entries(1));
  EXPECT_TRUE(*w.has_entries(2));
}

TEST_P(MetaTest, ListingThousandsOfEntriesResumesAtStableSlots) {
  auto t = write();
  const int n = 3000;
  for (int i = 0; i < n; ++i) ASSERT_TRUE(t.add_entry(1, "f" + std::to_string(i), 100 + i, S_IFREG).ok());
  ASSERT_TRUE(t.commit().ok());
  // Read in pages of 100, resuming from the last slot seen, deleting entries as we go.
  std::set<std::string> seen;
  uint64_t after = 0;
  for (;;) {
    std::vector<DirEntry> page;
    ASSERT_TRUE(read().list_entries(1, after, [&](const DirEntry& e) {
      page.push_back(e);
      return page.size() < 100;
    }).ok());
    if (page.empty()) break;
    for (auto& e : page) {
      EXPECT_GT(e.slot, after);
      EXPECT_TRUE(seen.insert(e.name).second) << "listed twice: " << e.name;
    }
    after = page.back().slot;
    auto w = write();  // concurrent removal of an already-listed entry must not shift the listing
    ASSERT_TRUE(w.remove_entry(1, page.front().name).ok());
    ASSERT_TRUE(w.commit().ok());
  }
  EXPECT_EQ(seen.size(), size_t{n});
}

TEST_P(MetaTest, EntryNamesAreNotStoredInTheClear) {
  auto t = write();
  ASSERT_TRUE(t.add_entry(1, "_manifests", 5, S_IFDIR).ok());
  ASSERT_TRUE(t.commit().ok());
  auto e = read().lookup(1, "_manifests");
  ASSERT_TRUE(e.ok());
  poke(kTableDirents, entry_key(1, e->slot), [](std::string& v) {
    EXPECT_EQ(v.find("_manifests"), std::string::npos);
  });
}

TEST_P(MetaTest, TamperedEntryIsCorruption) {
  auto t = write();
  ASSERT_TRUE(t.add_entry(1, "name", 5, S_IFREG).ok());
  ASSERT_TRUE(t.commit().ok());
  uint64_t slot = read().lookup(1, "name")->slot;
  poke(kTableDirents, entry_key(1, slot), [](std::string& v) { v.back() ^= 1; });
  EXPECT_EQ(read().lookup(1, "name").status().code(), EIO);
}

TEST_P(MetaTest, OrphansAreRemembered) {
  auto t = write();
  ASSERT_TRUE(t.add_orphan(12).ok());
  ASSERT_TRUE(t.add_orphan(13).ok());
  ASSERT_TRUE(t.remove_orphan(12).ok());
  ASSERT_TRUE(t.remove_orphan(99).ok());
  ASSERT_TRUE(t.commit().ok());
  EXPECT_EQ(*read().orphans(), std::vector<uint64_t>{13});
}

// What a committer keeps in memory changes before the next writer of the process begins (as a
// mounted store runs, with group commit): a flush beginning in between would read the older copy
// and write it back over the commit (a renamed-over file came back with its link count).
TEST_P(MetaTest, WhatACommitAppliesInMemoryIsThereBeforeTheNextWriterBegins) {
  store->start_group_commit(std::chrono::milliseconds(5));
  expect_applied_before_the_next_writer();
}

// LMDB without group commit (`--commit-interval 0`) lets the next writer in at its commit.
TEST_P(MetaTest, WhatACommitAppliesInMemoryIsThereBeforeTheNextWriterBeginsWithoutGroupCommit) {
  expect_applied_before_the_next_writer();
}

void MetaTestBase::expect_applied_before_the_next_writer() {
  std::atomic<bool> applied{false};
  bool next_saw_applied = false;
  std::thread next;
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
  Status s = t.commit([&] {
    next = std::thread([&] {
      auto t2 = write();
      next_saw_applied = applied.load();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    applied = true;
  });
  ASSERT_TRUE(s.ok());
  next.join();
  EXPECT_TRUE(next_saw_applied);
  EXPECT_EQ(read().get_inode(5)->nlink, 1u);
}

// PostgreSQL only: a COMMIT whose connection breaks may have landed or not. The records a mount
// keeps in memory no longer say which (a later flush would write them back over it), so no write
// follows until the store is opened again; reads go on.
class PostgresEngineTest : public MetaTestBase {
 protected:
  std::string engine() const override { return "postgres"; }
};

TEST_F(PostgresEngineTest, ACommitWhoseConnectionBrokeStopsEveryLaterWrite) {
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(4)).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
  ASSERT_TRUE(t.get_inode(4).ok());  // the write is queued until a read (or the COMMIT) sends it
  // Its backend goes (a network cut, a server restart) before the COMMIT.
  std::string killed = sql("SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE state = "
                           "'idle in transaction' AND query LIKE '%" + schema + ".records%'");
  ASSERT_EQ(killed, "1");
  Status s = t.commit();
  EXPECT_FALSE(s.ok());
  auto next = store->begin(true, &keys);
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.status().message().find("writes nothing more"), std::string::npos) << next.status().message();
  EXPECT_EQ(read().get_inode(4)->nlink, 1u);
  reopen();
  auto again = write();
  ASSERT_TRUE(again.put_inode(sample_inode(6)).ok());
  EXPECT_TRUE(again.commit().ok());
}

// The store's writer writes on its writer lock's session. When the server ends that session
// (a restart, a terminated backend), the transaction in flight fails, and its COMMIT is found not
// to have landed once the lock is taken back (the writer mark counts the commits); then the
// writer writes on, with no remount.
TEST_F(PostgresEngineTest, AWriterWhoseSessionEndedTakesItsLockBackAndWritesOn) {
  ASSERT_TRUE(store->lock_writer().ok());
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(4)).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
    ASSERT_TRUE(t.get_inode(4).ok());  // sends what was queued
    std::string killed = sql("SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity WHERE " +
                             writer_session());
    ASSERT_EQ(killed, "1");
    Status s = t.commit();
    EXPECT_FALSE(s.ok());
  }
  EXPECT_EQ(read().get_inode(5).status().code(), ENOENT);
  Status s;
  for (int i = 0; i < 50; ++i) {  // the server drops the old session's lock once its backend exits
    s = try_put_inode(6);
    if (s.ok() || s.message().find("nothing more") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(read().get_inode(6)->nlink, 1u);
  auto second = open(false);  // and it holds the lock again
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->lock_writer().code(), EBUSY);
}

// A writer mark whose count is not the writer's own (its commits rolled back by someone with the
// database, or lost with a server's last moments) stops the writer once its session ended.
TEST_F(PostgresEngineTest, AWriterWhoseMarkCountsOtherCommitsWritesNothingMore) {
  ASSERT_TRUE(store->lock_writer().ok());
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(4)).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  std::string mark = sql("SELECT v FROM " + schema + ".records WHERE tbl = 0 AND k = 'writer'::bytea");
  ASSERT_EQ(mark.substr(mark.size() - 2), ":1");
  sql("UPDATE " + schema + ".records SET v = $1 WHERE tbl = 0 AND k = 'writer'::bytea",
      {mark.substr(0, mark.size() - 1) + "7"});
  sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + writer_session());
  Status s;
  for (int i = 0; i < 50; ++i) {
    s = try_put_inode(5);
    ASSERT_FALSE(s.ok());
    if (s.message().find("nothing more") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(s.message().find("counts 7 commits, not 1"), std::string::npos) << s.message();
  EXPECT_EQ(read().get_inode(5).status().code(), ENOENT);
}

// A write transaction dropped after one of its writes failed (a delete that found nothing) ends
// on the server too, and the writer's session goes on with the next one.
TEST_F(PostgresEngineTest, AWriterDroppingATransactionWhoseWriteFailedWritesOn) {
  ASSERT_TRUE(store->lock_writer().ok());
  const std::string writer_pid = "SELECT pid::text FROM pg_stat_activity WHERE " + writer_session();
  std::string pid = sql(writer_pid);
  for (int i = 0; i < 3; ++i) {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(20 + i)).ok());
    (void)t.delete_inode(999);  // LMDB would say ENOENT here; PostgreSQL at the next reply
  }
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(4)).ok());
  ASSERT_TRUE(t.commit().ok());
  EXPECT_TRUE(read().get_inode(4).ok());
  EXPECT_EQ(read().get_inode(20).status().code(), ENOENT);
  EXPECT_EQ(sql(writer_pid), pid);  // the same session: never dropped and taken again
}

// While the writer's session was gone another mount took the store and wrote: the first one
// must never write again over what the other did.
TEST_F(PostgresEngineTest, AWriterWhoseLockAnotherMountTookMeanwhileWritesNothingMore) {
  ASSERT_TRUE(store->lock_writer().ok());
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(4)).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE " + writer_session());
  {
    std::unique_ptr<MetaStore> other;
    for (int i = 0; i < 50 && !other; ++i) {
      auto o = open(false);
      ASSERT_TRUE(o.ok());
      if ((*o)->lock_writer().ok()) other = std::move(*o);
      else std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(other);
    auto t = (*other->begin(true, &keys));
    ASSERT_TRUE(t.put_inode(sample_inode(7)).ok());
    ASSERT_TRUE(t.commit().ok());
  }  // and lets it go
  Status s;
  for (int i = 0; i < 3; ++i) {
    s = try_put_inode(4);
    EXPECT_FALSE(s.ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the retry interval
  }
  EXPECT_NE(s.message().find("another cmkfs wrote this store"), std::string::npos) << s.message();
  EXPECT_TRUE(read().get_inode(7).ok());
}

// What one process of a store reads (a follower's open file) another sees held until it is let
// go, or until the holder's session ends: a writer then keeps that object.
TEST_F(PostgresEngineTest, AnObjectHeldByAnotherProcessIsHeldUntilItLetsGoOrGoes) {
  auto other = open(/*create=*/false);  // another process's engine: a session of its own
  ASSERT_TRUE(other.ok()) << other.status().message();
  Id128 id{};
  id[0] = 0xab;
  Id128 unheld{};
  EXPECT_FALSE(*store->held_elsewhere(id));
  ASSERT_TRUE((*other)->hold(id).ok());
  ASSERT_TRUE((*other)->hold(id).ok());  // opened twice there
  EXPECT_TRUE(*store->held_elsewhere(id));
  EXPECT_FALSE(*store->held_elsewhere(unheld));
  ASSERT_TRUE((*other)->release_hold(id).ok());
  EXPECT_TRUE(*store->held_elsewhere(id));
  ASSERT_TRUE((*other)->release_hold(id).ok());
  EXPECT_FALSE(*store->held_elsewhere(id));
  ASSERT_TRUE((*other)->hold(id).ok());
  EXPECT_TRUE(*store->held_elsewhere(id));
  other->reset();  // the process ends (or its connection): its holds end with its session
  EXPECT_FALSE(*store->held_elsewhere(id));
}

// The change feed of a store in PostgreSQL: another process sharing the schema hears which
// inodes and entries a commit changed, sealed (the database never sees a name), and nothing of
// an aborted transaction; a payload changed in transit does not open.
class ChangeFeedTest : public MetaTestBase {
 protected:
  std::string engine() const override { return "postgres"; }
};

TEST_F(ChangeFeedTest, AnotherProcessHearsWhatACommitChangedAndNothingOfAnAbort) {
  auto other = open(false);
  ASSERT_TRUE(other.ok()) << other.status().message();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> heard;
  ASSERT_TRUE((*other)->listen([&](std::string_view p) {
    std::lock_guard<std::mutex> g(mu);
    heard.emplace_back(p);
    cv.notify_all();
  }).ok());
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
    ASSERT_TRUE(t.add_entry(1, "secret-name", 5, S_IFREG).ok());
    // aborted: never heard
  }
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(6)).ok());
  ASSERT_TRUE(t.add_entry(1, "another-secret-name", 6, S_IFREG).ok());
  ASSERT_TRUE(t.commit().ok());
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return heard.size() >= 2; }));
  ASSERT_EQ(heard.size(), 2u);
  // First "some may have been missed": what the listener loaded before LISTEN took effect may
  // be older than commits it never hears of.
  EXPECT_EQ(heard[0], MetaStore::kFeedMissed);
  heard.erase(heard.begin());
  EXPECT_EQ(heard[0].find("secret"), std::string::npos);
  auto changes = (*other)->open_changes(keys, heard[0]);
  ASSERT_TRUE(changes.ok()) << changes.status().message();
  EXPECT_EQ(changes->inodes, std::vector<uint64_t>{6});
  ASSERT_EQ(changes->entries.size(), 1u);
  EXPECT_EQ(changes->entries[0], (std::pair<uint64_t, std::string>{1, "another-secret-name"}));
  // Its own payloads a process skips; a changed one, or one under other keys, does not open.
  EXPECT_TRUE(store->open_changes(keys, heard[0])->inodes.empty());
  std::string changed = heard[0];
  changed[changed.size() - 3] = changed[changed.size() - 3] == '0' ? '1' : '0';
  EXPECT_EQ((*other)->open_changes(keys, changed).status().code(), EIO);
  auto strangers = crypto::derive_store_keys(*crypto::random_key());
  EXPECT_EQ((*other)->open_changes(*strangers, heard[0]).status().code(), EIO);
  // Only the engine can say "some were missed": no NOTIFY payload can hold the NUL it uses.
  EXPECT_TRUE((*other)->open_changes(keys, MetaStore::kFeedMissed)->everything);
  EXPECT_EQ((*other)->open_changes(keys, "").status().code(), EIO);
  lock.unlock();
  (*other)->stop_listening();
}

// The writer lock is a session lock: a store closed and opened again at once (a remount, fsck
// after a mount) finds it free. The server frees a closed session's locks only when its backend
// exits, after the close returns, so the lock is released first.
TEST_F(ChangeFeedTest, TheWriterLockIsFreeTheMomentItsHolderCloses) {
  for (int i = 0; i < 50; ++i) {
    auto writer = open(false);
    ASSERT_TRUE(writer.ok()) << writer.status().message();
    ASSERT_TRUE((*writer)->lock_writer().ok()) << "round " << i;
    auto second = open(false);
    ASSERT_TRUE(second.ok());
    EXPECT_EQ((*second)->lock_writer().code(), EBUSY);
  }
}

TEST_F(ChangeFeedTest, ALargeCommitIsSplitIntoPayloadsThatFit) {
  auto other = open(false);
  ASSERT_TRUE(other.ok());
  std::mutex mu;
  std::set<std::string> names;
  ASSERT_TRUE((*other)->listen([&](std::string_view p) {
    EXPECT_LE(p.size(), 8000u);
    auto c = (*other)->open_changes(keys, p);
    ASSERT_TRUE(c.ok());
    std::lock_guard<std::mutex> g(mu);
    for (auto& e : c->entries) names.insert(e.second);
  }).ok());
  auto t = write();
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(t.add_entry(1, std::string(200, 'a') + std::to_string(i), 100 + i, S_IFREG).ok());
  ASSERT_TRUE(t.commit().ok());
  // Names are bytes, not UTF-8: the longest, of control and invalid bytes, in one commit.
  auto u = write();
  for (int i = 0; i < 3; ++i) {
    std::string name(252, '\x01');
    name += "\xff\xfe" + std::to_string(i);
    ASSERT_TRUE(u.add_entry(2, name, 500 + i, S_IFREG).ok());
  }
  ASSERT_TRUE(u.commit().ok());
  for (int i = 0; i < 1000; ++i) {
    {
      std::lock_guard<std::mutex> g(mu);
      if (names.size() == 303) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (*other)->stop_listening();
  EXPECT_EQ(names.size(), 303u);
  EXPECT_EQ(names.count(std::string(252, '\x01') + "\xff\xfe" + "2"), 1u);
}

Superblock sample_super() {
  Superblock sb;
  sb.store_id = {0xab};
  sb.chunk_size = 65536;
  sb.created = 1700000000;
  sb.kek = R"({"provider":"local","key_file":"/etc/cmkfs/keys/x.key"})";
  return sb;
}

// Group commit (a mounted store): transactions commit into a batch that reaches the disk later.
class GroupCommitTest : public MetaTestBase {
 protected:
  void SetUp() override {
    MetaTestBase::SetUp();
    store->start_group_commit(std::chrono::seconds(10));  // sync(), closing or 128 changes write
  }
};

TEST_F(GroupCommitTest, ReadsSeeCommittedChangesBeforeTheBatchIsWritten) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
  ASSERT_TRUE(t.add_entry(1, "name", 5, S_IFREG).ok());
  ASSERT_TRUE(t.commit().ok());
  auto r = read();
  EXPECT_EQ(r.get_inode(5)->size, sample_inode(5).size);
  EXPECT_EQ(r.lookup(1, "name")->ino, 5u);
}

TEST_F(GroupCommitTest, CommittedChangesSurviveClosingAndAbortedOnesLeaveNoTrace) {
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
    ASSERT_TRUE(t.commit().ok());
  }
  {
    auto t = write();
    ASSERT_TRUE(t.put_inode(sample_inode(6)).ok());
  }  // aborted: the batch keeps inode 5 only
  reopen();
  auto r = read();
  EXPECT_TRUE(r.get_inode(5).ok());
  EXPECT_EQ(r.get_inode(6).status().code(), ENOENT);
}

TEST_F(GroupCommitTest, WhenDurableWaitsForTheBatch) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
  ASSERT_TRUE(t.commit().ok());
  std::atomic<bool> ran{false};
  store->when_durable([&] { ran = true; });
  EXPECT_FALSE(ran.load());
  ASSERT_TRUE(store->sync().ok());
  EXPECT_TRUE(ran.load());
  store->when_durable([&] { ran = false; });  // nothing pending: at once
  EXPECT_FALSE(ran.load());
}

// What waits for a batch (removing a deleted file's object, 60 ms for 1 GiB on tmpfs) must not
// hold up the changes after it.
TEST_F(GroupCommitTest, ASlowWhenDurableCallbackDoesNotHoldUpTheNextBatch) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
  ASSERT_TRUE(t.commit().ok());
  std::atomic<bool> started{false}, release{false};
  store->when_durable([&] {
    started = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  std::thread syncer([this] { EXPECT_TRUE(store->sync().ok()); });  // returns once the callback has run
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto next = std::async(std::launch::async, [this] {
    auto t2 = store->begin(true, &keys);
    return t2.ok() && t2->put_inode(sample_inode(6)).ok() && t2->commit().ok();
  });
  bool done_while_blocked = next.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  release = true;
  syncer.join();
  EXPECT_TRUE(done_while_blocked);
  EXPECT_TRUE(next.get());
}

TEST_F(GroupCommitTest, ReadInsideAWriteSeesItsChangesAndNestedWritesOrSyncsAreRefused) {
  auto t = write();
  ASSERT_TRUE(t.put_inode(sample_inode(5)).ok());
  {
    auto inner = store->begin(false, &keys);
    ASSERT_TRUE(inner.ok());
    EXPECT_TRUE(inner->get_inode(5).ok());
  }
  EXPECT_EQ(store->begin(true, &keys).status().code(), EDEADLK);
  EXPECT_EQ(store->sync().code(), EDEADLK);
  ASSERT_TRUE(t.commit().ok());
}

TEST_F(GroupCommitTest, ConcurrentWritersAllLand) {
  std::vector<std::thread> writers;
  for (uint64_t w = 0; w < 4; ++w) {
    writers.emplace_back([this, w] {
      for (uint64_t i = 0; i < 100; ++i) {
        auto t = store->begin(true, &keys);
        ASSERT_TRUE(t.ok());
        ASSERT_TRUE(t->put_inode(sample_inode(1000 + w * 100 + i)).ok());
        ASSERT_TRUE(t->commit().ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  reopen();
  auto r = read();
  for (uint64_t ino = 1000; ino < 1400; ++ino) EXPECT_TRUE(r.get_inode(ino).ok()) << ino;
}

TEST(Superblock, MacVerifiesAndDetectsChanges) {
  auto k = crypto::random_key();
  Superblock sb = sample_super();
  sb.seal(k->bytes());
  auto back = Superblock::from_json(sb.to_json());
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->verify(k->bytes()).ok());
  back->chunk_size = 4096;
  EXPECT_EQ(back->verify(k->bytes()).code(), EIO);
  auto other = crypto::random_key();
  EXPECT_EQ(sb.verify(other->bytes()).code(), EIO);
}

TEST(Superblock, UnknownFormatVersionIsRefused) {
  auto j = nlohmann::json::parse(sample_super().to_json());
  j["format_version"] = 99;
  auto r = Superblock::from_json(j.dump());
  EXPECT_EQ(r.status().code(), ENOTSUP);
  EXPECT_NE(r.status().message().find("99"), std::string::npos);
}

TEST(Superblock, GarbageIsCorruption) {
  EXPECT_EQ(Superblock::from_json("{not json").status().code(), EIO);
  EXPECT_EQ(Superblock::from_json("{}").status().code(), EIO);
  auto j = nlohmann::json::parse(sample_super().to_json());
  j["chunk_size"] = 1000;
  EXPECT_EQ(Superblock::from_json(j.dump()).status().code(), EIO);
}

// What every hostile document's integers go through (crypto/base/json_integer.h).
TEST(JsonInteger, TakesIntegersWithinRangeOnly) {
  using nlohmann::json;
  EXPECT_EQ(json_integer<uint32_t>(json::parse("4096")), 4096u);
  EXPECT_EQ(json_integer<int64_t>(json::parse("-5")), -5);
  EXPECT_EQ(json_integer_or(json::parse("{}"), "gen", uint32_t{7}), 7u);
  for (const char* bad : {"4294967296", "-1", "1.5", "1e300", "40964444444444444444444444444444", "\"1\"", "null"}) {
    EXPECT_THROW(json_integer<uint32_t>(json::parse(bad)), json::exception) << bad;
    EXPECT_THROW(json_integer_or(json::parse(std::string("{\"gen\":") + bad + "}"), "gen", uint32_t{0}), json::exception)
        << bad;
  }
}

// A number that is not an integer of the field's range is refused, not cast (the fuzzer's find:
// a chunk size too large for 64 bits parses as a float, and casting it was undefined behaviour).
TEST(Superblock, NumbersOutOfRangeOrNotIntegersAreCorruption) {
  for (const char* key : {"chunk_size", "format_version", "dek_generation", "created"}) {
    for (const char* bad : {"40964444444444444444444444444444", "4096.5", "-1", "1e300", "\"4096\""}) {
      auto j = nlohmann::json::parse(sample_super().to_json());
      std::string text = j.dump();
      std::string field = "\"" + std::string(key) + "\":";
      size_t at = text.find(field);
      ASSERT_NE(at, std::string::npos) << key;
      size_t end = text.find_first_of(",}", at);
      text.replace(at + field.size(), end - at - field.size(), bad);
      if (std::string(key) == "created" && std::string(bad) == "-1") continue;  // before 1970: still a time
      auto r = Superblock::from_json(text);
      EXPECT_FALSE(r.ok()) << key << " = " << bad;
    }
  }
}

TEST(Records, TruncatedInodeRecordIsCorruption) {
  std::string enc = encode_inode(sample_inode(1));
  for (size_t n = 0; n < enc.size(); ++n) {
    EXPECT_EQ(decode_inode(1, enc.substr(0, n)).status().code(), EIO) << n;
  }
  EXPECT_EQ(decode_inode(1, enc + "x").status().code(), EIO);
}

}  // namespace
}  // namespace cmkfs::meta
