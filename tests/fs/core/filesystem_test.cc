// The POSIX core driven directly, as the FUSE bridge drives it, on a real store with its objects in
// memory: names, link counts, orphans, revocation. No mount, no root; each test runs in
// milliseconds.
#include "fs/core/filesystem.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "crypto/base/fd.h"
#include "tests/support/store_fixture.h"
#include "tests/support/test_util.h"

namespace cmkfs::testing {
namespace {

using fs::Handle;
using meta::kRootIno;

class FilesystemTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    start();
  }
  void TearDown() override {
    stop();
    StoreTest::TearDown();
  }
  void start() {
    fsys = std::make_unique<fs::Filesystem>(*store, keyring);
    Status s = fsys->start();
    ASSERT_TRUE(s.ok()) << s.message();
  }
  void stop() {
    if (!fsys) return;
    EXPECT_TRUE(fsys->shutdown().ok());
    fsys.reset();
  }
  // A clean unmount and a mount again on the same store.
  void restart() {
    stop();
    open();
    start();
  }

  uint64_t create(uint64_t parent, const std::string& name, const std::vector<uint8_t>& data = {}) {
    meta::InodeRecord rec;
    Handle* h = nullptr;
    EXPECT_EQ(fsys->create(parent, name, 0644, O_RDWR, {}, &rec, &h), 0) << name;
    if (h == nullptr) return 0;
    if (!data.empty()) write(h, 0, data);
    fsys->release(h);
    return rec.ino;
  }
  void write(Handle* h, uint64_t off, const std::vector<uint8_t>& data) {
    size_t n = 0;
    ASSERT_EQ(fsys->write(h, off, data, &n), 0);
    ASSERT_EQ(n, data.size());
  }
  Handle* open_file(uint64_t ino) {
    Handle* h = nullptr;
    EXPECT_EQ(fsys->open(ino, O_RDWR, &h), 0);
    return h;
  }
  std::vector<uint8_t> read_all(uint64_t ino) {
    meta::InodeRecord rec;
    EXPECT_EQ(fsys->getattr(ino, &rec), 0);
    Handle* h = open_file(ino);
    if (h == nullptr) return {};
    std::vector<uint8_t> buf(rec.size);
    size_t n = 0;
    EXPECT_EQ(fsys->read(h, 0, buf, &n), 0);
    buf.resize(n);
    fsys->release(h);
    return buf;
  }
  // The inode a name leads to, or the errno.
  int lookup(uint64_t parent, const std::string& name, uint64_t* ino = nullptr) {
    meta::InodeRecord rec;
    int err = fsys->lookup(parent, name, &rec);
    if (err == 0) {
      fsys->forget(rec.ino, 1);  // as the kernel would, eventually
      if (ino != nullptr) *ino = rec.ino;
    }
    return err;
  }
  uint32_t nlink(uint64_t ino) {
    meta::InodeRecord rec;
    EXPECT_EQ(fsys->getattr(ino, &rec), 0);
    return rec.nlink;
  }
  std::vector<uint64_t> orphans() {
    auto access = keyring.access();
    auto txn = store->meta->begin(false, &access.store_keys());
    EXPECT_TRUE(txn.ok());
    auto o = txn->orphans();
    EXPECT_TRUE(o.ok());
    return o.ok() ? *o : std::vector<uint64_t>{};
  }
  std::vector<std::string> names(uint64_t dir, uint64_t from = 0, size_t limit = SIZE_MAX, uint64_t* next = nullptr) {
    std::vector<std::string> out;
    EXPECT_EQ(fsys->readdir(dir, from, [&](std::string_view name, uint64_t, uint32_t, uint64_t off) {
      if (out.size() == limit) return false;
      out.emplace_back(name);
      if (next != nullptr) *next = off;
      return true;
    }), 0);
    return out;
  }

  std::unique_ptr<fs::Filesystem> fsys;
};

TEST_F(FilesystemTest, BytesWrittenReadBackAfterARestart) {
  auto data = pattern(100000, 1);
  uint64_t ino = create(kRootIno, "a", data);
  EXPECT_EQ(read_all(ino), data);
  fsys->forget(ino, 1);
  restart();
  uint64_t found = 0;
  ASSERT_EQ(lookup(kRootIno, "a", &found), 0);
  EXPECT_EQ(found, ino);
  EXPECT_EQ(read_all(ino), data);
}

TEST_F(FilesystemTest, RenameOverAnExistingFileReplacesItAndFreesItsObject) {
  uint64_t a = create(kRootIno, "a", pattern(5000, 1));
  uint64_t b = create(kRootIno, "b", pattern(7000, 2));
  ASSERT_EQ(objects.count(), 2u);
  ASSERT_EQ(fsys->rename(kRootIno, "a", kRootIno, "b", 0), 0);
  EXPECT_EQ(lookup(kRootIno, "a"), ENOENT);
  uint64_t now_b = 0;
  ASSERT_EQ(lookup(kRootIno, "b", &now_b), 0);
  EXPECT_EQ(now_b, a);
  EXPECT_EQ(read_all(a), pattern(5000, 1));
  // The kernel still holds the replaced inode; once it lets go, record and object are gone.
  EXPECT_EQ(orphans(), std::vector<uint64_t>{b});
  fsys->forget(b, 1);
  EXPECT_TRUE(orphans().empty());
  EXPECT_EQ(objects.count(), 1u);
  EXPECT_EQ(fsys->rename(kRootIno, "b", kRootIno, "c", RENAME_NOREPLACE), 0);
  create(kRootIno, "d");
  EXPECT_EQ(fsys->rename(kRootIno, "c", kRootIno, "d", RENAME_NOREPLACE), EEXIST);
}

TEST_F(FilesystemTest, LinkCountsFollowNamesAndSubdirectories) {
  meta::InodeRecord d;
  ASSERT_EQ(fsys->mkdir(kRootIno, "d", 0755, {}, &d), 0);
  EXPECT_EQ(nlink(kRootIno), 3u);
  EXPECT_EQ(nlink(d.ino), 2u);
  uint64_t f = create(d.ino, "f", pattern(10, 3));
  meta::InodeRecord linked;
  ASSERT_EQ(fsys->link(f, kRootIno, "g", &linked), 0);
  EXPECT_EQ(linked.nlink, 2u);
  EXPECT_EQ(fsys->link(d.ino, kRootIno, "dirlink", &linked), EPERM);
  EXPECT_EQ(fsys->rmdir(kRootIno, "d"), ENOTEMPTY);
  ASSERT_EQ(fsys->unlink(d.ino, "f"), 0);
  EXPECT_EQ(nlink(f), 1u);
  EXPECT_EQ(read_all(f), pattern(10, 3));  // through its other name
  EXPECT_EQ(fsys->unlink(kRootIno, "d"), EISDIR);
  ASSERT_EQ(fsys->rmdir(kRootIno, "d"), 0);
  EXPECT_EQ(nlink(kRootIno), 2u);
  EXPECT_EQ(fsys->rmdir(kRootIno, "g"), ENOTDIR);
}

TEST_F(FilesystemTest, UnlinkedWhileOpenTheBytesStayUntilTheLastRelease) {
  auto data = pattern(20000, 4);
  meta::InodeRecord rec;
  Handle* h = nullptr;
  ASSERT_EQ(fsys->create(kRootIno, "f", 0644, O_RDWR, {}, &rec, &h), 0);
  write(h, 0, data);
  ASSERT_EQ(fsys->unlink(kRootIno, "f"), 0);
  EXPECT_EQ(lookup(kRootIno, "f"), ENOENT);
  EXPECT_EQ(orphans(), std::vector<uint64_t>{rec.ino});
  std::vector<uint8_t> back(data.size());
  size_t n = 0;
  ASSERT_EQ(fsys->read(h, 0, back, &n), 0);
  EXPECT_EQ(back, data);
  fsys->release(h);
  EXPECT_EQ(objects.count(), 1u);  // the kernel still holds the inode
  fsys->forget(rec.ino, 1);
  EXPECT_TRUE(orphans().empty());
  EXPECT_EQ(objects.count(), 0u);
}

TEST_F(FilesystemTest, AnOrphanLeftOpenAtUnmountIsReapedByTheNextStart) {
  meta::InodeRecord rec;
  Handle* h = nullptr;
  ASSERT_EQ(fsys->create(kRootIno, "f", 0644, O_RDWR, {}, &rec, &h), 0);
  write(h, 0, pattern(3000, 5));
  ASSERT_EQ(fsys->unlink(kRootIno, "f"), 0);
  restart();  // the kernel sends no release after an unmount
  EXPECT_TRUE(orphans().empty());
  EXPECT_EQ(objects.count(), 0u);
  meta::InodeRecord gone;
  EXPECT_NE(fsys->getattr(rec.ino, &gone), 0);
}

// An unmount while the key is revoked saves nothing, and says so; the handles of files still
// open are freed all the same (the kernel sends no release after an unmount). The sanitizer
// run's leak check reported them before.
TEST_F(FilesystemTest, AnUnmountWhileRevokedFailsAndFreesTheOpenHandles) {
  meta::InodeRecord rec;
  Handle* h = nullptr;
  ASSERT_EQ(fsys->create(kRootIno, "open", 0644, O_RDWR, {}, &rec, &h), 0);
  write(h, 0, pattern(1000, 1));
  keyring.revoke();
  Status s = fsys->shutdown();
  EXPECT_EQ(s.code(), EACCES) << s.message();
  fsys.reset();
}

// Compaction replaces the metadata file and holds the metadata directory's lock exclusively
// meanwhile. A reader (cmkfs encryption show) holds it shared: with LMDB's lock file open in
// another process, the replaced file's first write would start from a stale transaction counter
// and could write over the data with the compacted copy's empty meta page.
TEST_F(FilesystemTest, CompactionCannotReplaceTheMetadataUnderAReader) {
  if (!store->meta_config.lmdb()) GTEST_SKIP() << "PostgreSQL metadata is compacted in place";
  stop();
  store.reset();  // one LMDB environment per process at a time
  auto reader = fs::open_store(dir + "/store", /*exclusive=*/false, /*read_only=*/true);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  Fd meta(::open((dir + "/store/meta").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_GE(meta.get(), 0);
  EXPECT_NE(::flock(meta.get(), LOCK_EX | LOCK_NB), 0) << "compaction could replace the file under the reader";
  reader->reset();
  EXPECT_EQ(::flock(meta.get(), LOCK_EX | LOCK_NB), 0);
}

TEST_F(FilesystemTest, DataKeyRotationMovesEveryFileAndRecordAndForgetsTheOldKey) {
  meta::InodeRecord d;
  ASSERT_EQ(fsys->mkdir(kRootIno, "d", 0755, {}, &d), 0);
  uint64_t a = create(kRootIno, "a", pattern(300000, 1));
  uint64_t b = create(d.ino, "b", pattern(5000, 2));
  meta::InodeRecord rec;
  Handle* h = nullptr;
  ASSERT_EQ(fsys->create(kRootIno, "sparse", 0644, O_RDWR, {}, &rec, &h), 0);
  write(h, 10 << 20, pattern(100, 3));  // 10 MiB of hole, then 100 bytes
  fsys->release(h);
  std::string old_blob;
  {
    auto txn = store->meta->begin(false);
    old_blob = *txn->wrapped_dek(1);
  }
  fs::AuditLog audit(audit_path(), "test");
  auto provider = fs::bound_provider(*store);
  ASSERT_TRUE(provider.ok());
  auto current = fs::unlock(*store, **provider, audit, "test");
  ASSERT_TRUE(current.ok());
  auto to = fs::start_dek_rotation(*store, **provider, *current, audit);
  ASSERT_TRUE(to.ok()) << to.status().message();
  EXPECT_EQ(*to, 2u);
  {
    auto unlocked = fs::unlock(*store, **provider, audit, "test");  // what a mount would install now
    ASSERT_TRUE(unlocked.ok()) << unlocked.status().message();
    ASSERT_TRUE(fs::install_keys(keyring, store->super.dek_generation, std::move(*unlocked)).ok());
  }
  EXPECT_EQ(keyring.older_generations(), std::vector<uint32_t>{1});
  // Old files read under the old key, new ones are written under the new.
  EXPECT_EQ(read_all(a), pattern(300000, 1));
  uint64_t c = create(kRootIno, "c", pattern(7000, 4));
  fs::Filesystem::RekeyProgress p;
  for (int i = 0; i < 100 && !p.done; ++i) {
    auto step = fsys->rekey_step(1, 2);  // small steps, as between requests
    ASSERT_TRUE(step.ok()) << step.status().message();
    p = *step;
  }
  ASSERT_TRUE(p.done);
  ASSERT_TRUE(fs::finish_dek_rotation(*store, audit).ok());
  stop();
  ASSERT_TRUE(fs::compact_metadata(*store).ok());
  open();  // only generation 2 is left: a mount unwraps it alone
  EXPECT_TRUE(keyring.older_generations().empty());
  start();
  uint64_t found = 0;
  ASSERT_EQ(lookup(kRootIno, "a", &found), 0);  // names stay where they were: the name key carried over
  EXPECT_EQ(read_all(found), pattern(300000, 1));
  ASSERT_EQ(lookup(d.ino, "b", &found), 0);
  EXPECT_EQ(read_all(found), pattern(5000, 2));
  ASSERT_EQ(lookup(kRootIno, "c", &found), 0);
  EXPECT_EQ(read_all(found), pattern(7000, 4));
  ASSERT_EQ(lookup(kRootIno, "sparse", &found), 0);
  auto sparse = read_all(found);
  ASSERT_EQ(sparse.size(), (10u << 20) + 100);
  EXPECT_TRUE(std::all_of(sparse.begin(), sparse.begin() + (10 << 20), [](uint8_t x) { return x == 0; }));
  EXPECT_EQ(std::vector<uint8_t>(sparse.begin() + (10 << 20), sparse.end()), pattern(100, 3));
  // No file refers to generation 1, and its wrapped key is nowhere in the metadata file.
  auto access = keyring.access();
  auto txn = store->meta->begin(false, &access.store_keys());
  ASSERT_TRUE(txn->for_each_inode([&](uint64_t ino, Result<meta::InodeRecord> r) {
    EXPECT_TRUE(r.ok()) << ino;
    if (r.ok() && S_ISREG(r->mode)) {
      EXPECT_EQ(r->dek_generation, 2u) << ino;
    }
    return true;
  }).ok());
  EXPECT_EQ(txn->wrapped_dek(1).status().code(), EIO);  // gone
  auto blob = nlohmann::json::parse(old_blob)["blob"].get<std::string>();
  EXPECT_EQ(read_text(dir + "/store/meta/data.mdb").find(blob), std::string::npos);
  EXPECT_EQ(objects.count(), 4u);  // a, b, c, sparse: the old objects are gone
  (void)b;
  (void)c;
}

TEST_F(FilesystemTest, AStoreRolledBackToAnOlderDataKeyIsRefused) {
  create(kRootIno, "a", pattern(1000, 1));
  std::string before;
  {
    auto txn = store->meta->begin(false);
    before = txn->superblock()->to_json();
  }
  fs::AuditLog audit(audit_path(), "test");
  auto provider = fs::bound_provider(*store);
  ASSERT_TRUE(provider.ok());
  auto current = fs::unlock(*store, **provider, audit, "test");
  ASSERT_TRUE(current.ok());
  ASSERT_TRUE(fs::start_dek_rotation(*store, **provider, *current, audit).ok());
  stop();
  {
    // The attacker puts the old superblock back, hoping the old (perhaps stolen) key stays in use.
    auto txn = store->meta->begin(true);
    ASSERT_TRUE(txn->put_superblock(*meta::Superblock::from_json(before)).ok());
    ASSERT_TRUE(txn->commit().ok());
  }
  auto st = fs::open_store(dir + "/store", /*exclusive=*/false, /*read_only=*/true);
  ASSERT_TRUE(st.ok());
  auto unlocked = fs::unlock(**st, **provider, audit, "test");
  EXPECT_EQ(unlocked.status().code(), EUCLEAN) << unlocked.status().message();
  EXPECT_NE(unlocked.status().message().find("rolled back"), std::string::npos) << unlocked.status().message();
}

TEST_F(FilesystemTest, AForgedOrphanEntryDoesNotDeleteALiveFile) {
  uint64_t f = create(kRootIno, "f", pattern(4000, 9));
  fsys->forget(f, 1);
  stop();
  {
    // The orphans table is not sealed: anyone with the backing store can add an entry.
    auto txn = store->meta->begin(true);
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE(txn->add_orphan(f).ok());
    ASSERT_TRUE(txn->commit().ok());
  }
  open();
  start();
  EXPECT_TRUE(orphans().empty());
  uint64_t found = 0;
  ASSERT_EQ(lookup(kRootIno, "f", &found), 0);
  EXPECT_EQ(read_all(found), pattern(4000, 9));
  EXPECT_EQ(objects.count(), 1u);
}

TEST_F(FilesystemTest, EveryOperationAnswersEaccesAfterRevocationAndServesAfterRestore) {
  uint64_t f = create(kRootIno, "f", pattern(100, 6));
  Handle* h = open_file(f);
  ASSERT_NE(h, nullptr);
  keyring.revoke();
  meta::InodeRecord rec;
  EXPECT_EQ(fsys->lookup(kRootIno, "f", &rec), EACCES);
  EXPECT_EQ(fsys->getattr(f, &rec), EACCES);
  EXPECT_EQ(fsys->getattr(kRootIno, &rec), 0);  // the root still answers, as statfs does
  struct statvfs st;
  EXPECT_EQ(fsys->statfs(&st), 0);
  std::vector<uint8_t> buf(100);
  size_t n = 0;
  EXPECT_EQ(fsys->read(h, 0, buf, &n), EACCES);
  EXPECT_EQ(fsys->write(h, 0, buf, &n), EACCES);
  Handle* h2 = nullptr;
  EXPECT_EQ(fsys->create(kRootIno, "g", 0644, O_RDWR, {}, &rec, &h2), EACCES);
  EXPECT_EQ(fsys->mkdir(kRootIno, "d", 0755, {}, &rec), EACCES);
  EXPECT_EQ(fsys->unlink(kRootIno, "f"), EACCES);
  EXPECT_EQ(fsys->rename(kRootIno, "f", kRootIno, "g", 0), EACCES);
  EXPECT_EQ(fsys->readdir(kRootIno, 0, [](std::string_view, uint64_t, uint32_t, uint64_t) { return true; }), EACCES);
  ASSERT_TRUE(keyring.install(store->super.dek_generation, dek.clone()).ok());
  ASSERT_EQ(fsys->read(h, 0, buf, &n), 0);
  EXPECT_EQ(buf, pattern(100, 6));
  fsys->release(h);
}

TEST_F(FilesystemTest, ReaddirOffsetsStayValidWhileEntriesAreRemoved) {
  std::set<std::string> all;
  for (int i = 0; i < 200; ++i) {
    std::string name = "n" + std::to_string(i);
    uint64_t ino = create(kRootIno, name);
    fsys->forget(ino, 1);
    all.insert(name);
  }
  uint64_t next = 0;
  auto first = names(kRootIno, 0, 50, &next);
  ASSERT_EQ(first.size(), 50u);
  EXPECT_EQ(first[0], ".");
  EXPECT_EQ(first[1], "..");
  std::set<std::string> seen(first.begin() + 2, first.end());
  // Remove some seen and some not yet seen entries between two readdir calls.
  std::set<std::string> removed;
  int k = 0;
  for (const auto& name : all) {
    if (k++ % 7 != 0) continue;
    ASSERT_EQ(fsys->unlink(kRootIno, name), 0);
    removed.insert(name);
  }
  for (const auto& name : names(kRootIno, next)) {
    EXPECT_TRUE(seen.insert(name).second) << name << " returned twice";
  }
  for (const auto& name : all) {
    if (!removed.contains(name)) {
      EXPECT_TRUE(seen.contains(name)) << name << " never returned";
    }
  }
}

TEST_F(FilesystemTest, NamesAreCheckedBeforeAnythingIsWritten) {
  meta::InodeRecord rec;
  Handle* h = nullptr;
  EXPECT_EQ(fsys->create(kRootIno, std::string(256, 'x'), 0644, O_RDWR, {}, &rec, &h), ENAMETOOLONG);
  EXPECT_EQ(fsys->create(kRootIno, "a/b", 0644, O_RDWR, {}, &rec, &h), EINVAL);
  EXPECT_EQ(fsys->mkdir(kRootIno, "..", 0755, {}, &rec), EINVAL);
  create(kRootIno, "x");
  EXPECT_EQ(fsys->create(kRootIno, "x", 0644, O_RDWR, {}, &rec, &h), EEXIST);
  EXPECT_EQ(names(kRootIno).size(), 3u);  // ., .., x
}

}  // namespace
}  // namespace cmkfs::testing
