// The inode table past its capacity: idle inodes are demoted to their lookup count and read
// again on use, with their references intact; dirty, held, open, unlinked, root inodes and those
// with lost writes stay whole; a load that raced a demotion or an erase is not kept, nor an error
// of one that raced a reload.
#include "fs/core/inode_table.h"

#include <gtest/gtest.h>

#include <map>

namespace cmkfs::fs {
namespace {

meta::InodeRecord record(uint64_t ino, uint64_t size = 0) {
  meta::InodeRecord r;
  r.ino = ino;
  r.mode = 0100644;
  r.nlink = 1;
  r.size = size;
  return r;
}

// A table over a fake LMDB: `disk` holds the saved records; `loads` counts reads of them.
struct Fixture {
  InodeTable table{4};
  std::map<uint64_t, meta::InodeRecord> disk;
  int loads = 0;

  InodeTable::Loader loader(uint64_t ino) {
    return [this, ino]() -> Result<meta::InodeRecord> {
      ++loads;
      return disk.at(ino);
    };
  }
  // Another request loads `ino` (with `lookups` references), changes its size, and commits.
  void change_elsewhere(uint64_t ino, uint64_t size, uint64_t lookups) {
    auto other = table.get(ino, loader(ino), lookups);
    EXPECT_TRUE(other.ok());
    if (!other.ok()) return;
    (*other)->update([size](meta::InodeRecord& r) { r.size = size; });
    disk[ino].size = size;
    (*other)->mark_saved(1);
  }
  // A created inode whose creating transaction committed: clean, with `lookups` references.
  void create(uint64_t ino, uint64_t lookups = 1) {
    disk[ino] = record(ino);
    table.insert(record(ino), lookups)->mark_saved(1);
  }
};

TEST(InodeTableTest, IdleInodesPastTheCapacityKeepOnlyTheirReferences) {
  Fixture f;
  for (uint64_t ino = 2; ino < 12; ++ino) f.create(ino, ino);
  EXPECT_LE(f.table.size(), 5u);  // the last one is demoted by the next insert or load
  EXPECT_EQ(f.table.size() + f.table.demoted(), 10u);
  EXPECT_EQ(f.table.referenced().size(), 10u);

  // Inode 2 was demoted: its record is read again, and its references add up.
  EXPECT_EQ(f.table.find(2), nullptr);
  auto node = f.table.get(2, f.loader(2), 1);
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(f.loads, 1);
  EXPECT_EQ((*node)->lookups, 3u);
  EXPECT_EQ((*node)->snapshot().ino, 2u);
  node->reset();

  // Forgetting a demoted inode's references removes it once none is left.
  EXPECT_EQ(f.table.find(3), nullptr);
  EXPECT_EQ(f.table.forget(3, 2), nullptr);
  EXPECT_EQ(f.table.referenced().size(), 10u);
  EXPECT_EQ(f.table.forget(3, 1), nullptr);
  EXPECT_EQ(f.table.referenced().size(), 9u);
}

TEST(InodeTableTest, DirtyHeldOpenAndRootInodesStayWhole) {
  Fixture f;
  f.disk[meta::kRootIno] = record(meta::kRootIno);
  ASSERT_TRUE(f.table.get(meta::kRootIno, f.loader(meta::kRootIno), 1).ok());
  auto dirty = f.table.insert(record(2), 1);  // its creating transaction has not committed
  f.create(3);
  auto held = f.table.find(3);  // a request is using it
  f.create(4);
  f.table.opened(*f.table.find(4));
  f.create(5);
  auto unlinked = f.table.find(5);  // its last name removed while the kernel holds it: reaped at the forget
  unlinked->update([](meta::InodeRecord& r) { r.nlink = 0; });
  unlinked->mark_saved(2);
  unlinked.reset();
  f.create(6);
  f.table.find(6)->lost.add(0, 4096);  // a write-back that failed: reads of it must keep failing
  for (uint64_t ino = 7; ino < 40; ++ino) f.create(ino);
  EXPECT_NE(f.table.find(meta::kRootIno), nullptr);
  EXPECT_NE(f.table.find(2), nullptr);
  EXPECT_NE(f.table.find(3), nullptr);
  EXPECT_NE(f.table.find(4), nullptr);
  EXPECT_NE(f.table.find(5), nullptr);
  EXPECT_NE(f.table.find(6), nullptr);
  EXPECT_EQ(f.table.size() + f.table.demoted(), 39u);
}

TEST(InodeTableTest, ALoadThatRacedADemotionIsReadAgain) {
  Fixture f;
  f.create(2);
  for (uint64_t ino = 3; ino < 10; ++ino) f.create(ino);
  ASSERT_EQ(f.table.find(2), nullptr);  // demoted
  f.disk[2].size = 1;                   // what the first load reads
  int outer_loads = 0;
  auto node = f.table.get(2, [&]() -> Result<meta::InodeRecord> {
    meta::InodeRecord stale = f.disk.at(2);
    if (++outer_loads == 1) {
      // Meanwhile another request loads it, changes it, commits, and it is demoted again.
      f.change_elsewhere(2, 2, 1);
      for (uint64_t ino = 10; ino < 20; ++ino) f.create(ino);
      EXPECT_EQ(f.table.find(2), nullptr);
    }
    return stale;
  }, 1);
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(outer_loads, 2);
  EXPECT_EQ((*node)->snapshot().size, 2u);
  EXPECT_EQ((*node)->lookups, 3u);
}

// The same with an inode nobody references (a rekey's, a lookup's before the kernel holds it):
// loaded by another request, changed, committed and erased while the first load ran, it leaves no
// demotion behind; the first load must still not put its older record in the table.
TEST(InodeTableTest, ALoadThatRacedAnotherLoadChangeAndEraseIsReadAgain) {
  Fixture f;
  f.disk[2] = record(2, 1);
  int outer_loads = 0;
  auto node = f.table.get(2, [&]() -> Result<meta::InodeRecord> {
    meta::InodeRecord stale = f.disk.at(2);
    if (++outer_loads == 1) {
      f.change_elsewhere(2, 2, 0);
      f.table.erase_if_unused(2);
      EXPECT_EQ(f.table.find(2), nullptr);
    }
    return stale;
  }, 1);
  ASSERT_TRUE(node.ok());
  EXPECT_EQ(outer_loads, 2);
  EXPECT_EQ((*node)->snapshot().size, 2u);
}

// A demoted inode loaded by an unlink, which deleted its record, while a getattr was loading it:
// the getattr gets the unlink's inode, not "inode missing".
TEST(InodeTableTest, ALoadThatFoundNoRecordUsesTheInodeLoadedMeanwhile) {
  Fixture f;
  for (uint64_t ino = 2; ino < 10; ++ino) f.create(ino);
  ASSERT_EQ(f.table.find(2), nullptr);
  auto node = f.table.get(2, [&]() -> Result<meta::InodeRecord> {
    auto unlinking = f.table.get(2, f.loader(2));
    EXPECT_TRUE(unlinking.ok());
    (*unlinking)->update([](meta::InodeRecord& r) { r.nlink = 0; });
    f.disk.erase(2);
    return Status::NotFound("no record");
  });
  ASSERT_TRUE(node.ok()) << node.status().message();
  EXPECT_EQ((*node)->snapshot().nlink, 0u);
  EXPECT_EQ((*node)->lookups, 1u);
}

}  // namespace
}  // namespace cmkfs::fs
