#include "fs/core/lost_ranges.h"

#include <gtest/gtest.h>

namespace cmkfs::fs {
namespace {

TEST(LostRangesTest, ReportsTheFirstLostByteOfARead) {
  LostRanges lost;
  EXPECT_TRUE(lost.empty());
  EXPECT_EQ(lost.first_in(0, 100), 100u);
  lost.add(10, 20);
  EXPECT_EQ(lost.first_in(0, 10), 10u);  // ends where the lost range begins: untouched
  EXPECT_EQ(lost.first_in(0, 11), 10u);
  EXPECT_EQ(lost.first_in(15, 16), 15u);
  EXPECT_EQ(lost.first_in(19, 30), 19u);
  EXPECT_EQ(lost.first_in(20, 30), 30u);
}

TEST(LostRangesTest, RewritingPartOfARangeLeavesTheRest) {
  LostRanges lost;
  lost.add(0, 100);
  lost.forget(40, 60);
  EXPECT_EQ(lost.first_in(40, 60), 60u);
  EXPECT_EQ(lost.first_in(39, 60), 39u);
  EXPECT_EQ(lost.first_in(50, 61), 60u);
  lost.forget(0, 40);
  lost.forget(60, 1000);
  EXPECT_TRUE(lost.empty());
}

TEST(LostRangesTest, AdjacentAndOverlappingRangesMerge) {
  LostRanges lost;
  lost.add(0, 10);
  lost.add(10, 20);
  lost.add(30, 40);
  lost.add(15, 35);
  lost.forget(0, 39);
  EXPECT_EQ(lost.first_in(0, 100), 39u);
  lost.forget(39, 40);
  EXPECT_TRUE(lost.empty());
}

TEST(LostRangesTest, TruncatingAwayForgetsEverythingPastTheCut) {
  LostRanges lost;
  lost.add(1 << 20, 64 << 20);
  lost.forget(2 << 20, UINT64_MAX);
  EXPECT_EQ(lost.first_in(0, UINT64_MAX), uint64_t{1} << 20);
  EXPECT_EQ(lost.first_in(2 << 20, UINT64_MAX), UINT64_MAX);
}

}  // namespace
}  // namespace cmkfs::fs
