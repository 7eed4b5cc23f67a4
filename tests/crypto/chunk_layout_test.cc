#include "crypto/chunk_layout.h"

#include <gtest/gtest.h>

namespace cmkfs::crypto {
namespace {

TEST(ChunkLayout, ValidChunkSizesArePowersOfTwoFrom4KiBTo1MiB) {
  EXPECT_TRUE(ChunkLayout::valid_chunk_size(4096));
  EXPECT_TRUE(ChunkLayout::valid_chunk_size(65536));
  EXPECT_TRUE(ChunkLayout::valid_chunk_size(1 << 20));
  EXPECT_FALSE(ChunkLayout::valid_chunk_size(2048));
  EXPECT_FALSE(ChunkLayout::valid_chunk_size(2 << 20));
  EXPECT_FALSE(ChunkLayout::valid_chunk_size(65537));
  EXPECT_FALSE(ChunkLayout::valid_chunk_size(0));
}

// For every file size around chunk boundaries, the chunk lengths add up to the size, every chunk
// but the last is full, and the physical size is what the chunks occupy.
TEST(ChunkLayout, LengthsAndPhysicalSizeAgreeForManySizes) {
  for (uint32_t cs : {4096u, 65536u, 1u << 20}) {
    ChunkLayout l(cs);
    for (uint64_t base : {uint64_t{0}, uint64_t{cs}, uint64_t{7} * cs, uint64_t{5} << 30}) {
      for (int64_t delta = -2; delta <= 2; ++delta) {
        if (static_cast<int64_t>(base) + delta < 0) continue;
        uint64_t size = base + delta;
        uint64_t n = l.count(size), sum = 0, phys = 0;
        for (uint64_t i = 0; i < n; ++i) {
          uint32_t len = l.length(i, size);
          ASSERT_GT(len, 0u);
          if (i + 1 < n) {
            ASSERT_EQ(len, cs);
          }
          ASSERT_EQ(l.phys_offset(i), phys);
          sum += len;
          phys += len + kChunkOverhead;
          if (n > 4 && i == 1) {  // skip the middle of huge files, keeping the sums right
            uint64_t skip = n - 3;
            sum += (skip - 2) * uint64_t{cs};
            phys += (skip - 2) * l.phys_stride();
            i = skip - 1;
          }
        }
        EXPECT_EQ(sum, size) << cs << " " << size;
        EXPECT_EQ(l.phys_size(size), phys) << cs << " " << size;
        EXPECT_EQ(l.length(n, size), 0u);
      }
    }
  }
}

TEST(ChunkLayout, IndexAndStartAreInverse) {
  ChunkLayout l(65536);
  for (uint64_t off : {uint64_t{0}, uint64_t{1}, uint64_t{65535}, uint64_t{65536}, uint64_t{5} << 30}) {
    uint64_t i = l.index_of(off);
    EXPECT_LE(l.start_of(i), off);
    EXPECT_LT(off, l.start_of(i + 1));
  }
  EXPECT_EQ(l.phys_offset(2), 2 * (65536u + kChunkOverhead));
}

TEST(ChunkLayout, BeyondFourGiBOffsetsDoNotOverflow) {
  ChunkLayout l(4096);
  uint64_t off = (uint64_t{1} << 32) + 123;
  EXPECT_EQ(l.index_of(off), (uint64_t{1} << 20));
  EXPECT_EQ(l.phys_offset(l.index_of(off)), (uint64_t{1} << 20) * (4096u + kChunkOverhead));
  EXPECT_GE(l.max_file_size(), uint64_t{1} << 44);
}

}  // namespace
}  // namespace cmkfs::crypto
