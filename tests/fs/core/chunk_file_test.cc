#include "fs/core/chunk_file.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/support/mem_object.h"
#include "tests/support/test_util.h"

namespace cmkfs::fs {
namespace {

using cmkfs::testing::MemObjectFile;
using cmkfs::testing::pattern;

class ChunkFileTest : public ::testing::Test {
 protected:
  crypto::SecretBytes key = std::move(*crypto::random_key());
  crypto::ChunkBinding binding{1, {7}, {9}, 1};
  crypto::ChunkLayout layout{4096};
  MemObjectFile obj;
  bool sparse = false;
  uint64_t size = 0;
  std::vector<uint8_t> model;  // what the file must read back as

  ChunkFile file() { return ChunkFile{obj, layout, binding, key.bytes(), sparse}; }

  void write(uint64_t off, const std::vector<uint8_t>& data) {
    auto w = write_chunks(file(), size, off, data);
    ASSERT_TRUE(w.ok()) << w.status().message();
    size = w->new_size;
    sparse = sparse || w->made_hole;
    if (model.size() < off + data.size()) model.resize(off + data.size(), 0);
    std::copy(data.begin(), data.end(), model.begin() + off);
    ASSERT_EQ(obj.size, layout.phys_size(size));
  }
  void resize(uint64_t n) {
    auto w = resize_chunks(file(), size, n);
    ASSERT_TRUE(w.ok()) << w.status().message();
    size = n;
    sparse = sparse || w->made_hole;
    model.resize(n, 0);
    ASSERT_EQ(obj.size, layout.phys_size(size));
  }
  std::vector<uint8_t> read(uint64_t off, size_t len) {
    std::vector<uint8_t> out(len);
    auto n = read_chunks(file(), size, off, out);
    EXPECT_TRUE(n.ok()) << n.status().message();
    out.resize(n.ok() ? *n : 0);
    return out;
  }
  void expect_matches_model() {
    ASSERT_EQ(size, model.size());
    EXPECT_EQ(read(0, size + 100), model);
  }
};

TEST_F(ChunkFileTest, RandomWritesResizesAndReadsMatchAModel) {
  std::mt19937_64 rng(12345);
  for (int step = 0; step < 400; ++step) {
    int op = rng() % 10;
    if (op < 6) {
      uint64_t off = rng() % (size + 3 * 4096 + 1);
      size_t len = 1 + rng() % (3 * 4096);
      write(off, pattern(len, step));
    } else if (op < 8) {
      resize(rng() % (size + 2 * 4096 + 1));
    } else {
      uint64_t off = rng() % (size + 1);
      size_t len = rng() % (2 * 4096 + 10);
      auto got = read(off, len);
      size_t want = off >= size ? 0 : std::min<uint64_t>(len, size - off);
      ASSERT_EQ(got.size(), want);
      ASSERT_TRUE(std::equal(got.begin(), got.end(), model.begin() + off)) << "step " << step;
    }
  }
  expect_matches_model();
}

TEST_F(ChunkFileTest, SparseWriteReadsZerosInTheGapAndIsMarkedSparse) {
  write(0, pattern(100, 1));
  write(5 * 4096 + 7, pattern(10, 2));
  EXPECT_TRUE(sparse);
  expect_matches_model();
}

TEST_F(ChunkFileTest, GrowingByTruncateReadsZeros) {
  write(0, pattern(5000, 1));
  resize(3 * 4096 + 5);
  expect_matches_model();
  resize(4097);
  expect_matches_model();
}

TEST_F(ChunkFileTest, OffsetsBeyondFourGiB) {
  uint64_t off = (uint64_t{1} << 32) + 4095;  // no model: it would take 4 GiB
  auto w = write_chunks(file(), 0, off, pattern(9000, 3));
  ASSERT_TRUE(w.ok());
  size = w->new_size;
  sparse = w->made_hole;
  EXPECT_EQ(size, off + 9000);
  EXPECT_EQ(read(off, 9000), pattern(9000, 3));
  EXPECT_EQ(read(off - 10, 10), std::vector<uint8_t>(10, 0));
}

TEST_F(ChunkFileTest, FlippedBitIsEioNotGarbage) {
  write(0, pattern(3 * 4096, 4));
  for (uint64_t pos : {uint64_t{0}, uint64_t{20}, uint64_t{4096 + 28 + 100}, obj.size - 1}) {
    obj.byte(pos) ^= 0x10;
    std::vector<uint8_t> out(3 * 4096);
    auto n = read_chunks(file(), size, 0, out);
    EXPECT_EQ(n.status().code(), EIO) << pos;
    obj.byte(pos) ^= 0x10;
  }
  expect_matches_model();
}

TEST_F(ChunkFileTest, SwappedChunksAreEio) {
  write(0, pattern(2 * 4096, 5));
  size_t stride = layout.phys_stride();
  auto v = obj.contents();
  std::swap_ranges(v.begin(), v.begin() + stride, v.begin() + stride);
  obj.set_contents(v);
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(read_chunks(file(), size, 0, out).status().code(), EIO);
  EXPECT_EQ(read_chunks(file(), size, 4096, out).status().code(), EIO);
}

TEST_F(ChunkFileTest, TruncatedObjectIsEio) {
  write(0, pattern(2 * 4096, 6));
  ASSERT_TRUE(obj.truncate(obj.size - 1).ok());
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(read_chunks(file(), size, 4096, out).status().code(), EIO);
  EXPECT_TRUE(read_chunks(file(), size, 0, out).ok());  // the intact chunk still reads
}

TEST_F(ChunkFileTest, ZeroedChunkIsEioUnlessTheFileHasHoles) {
  write(0, pattern(2 * 4096, 7));
  for (uint64_t i = 0; i < layout.phys_stride(); ++i) obj.byte(i) = 0;
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(read_chunks(file(), size, 0, out).status().code(), EIO);
}

TEST_F(ChunkFileTest, ChunkFromAnotherFileIsEio) {
  write(0, pattern(4096, 8));
  auto stolen = obj.contents();
  binding.file_id[0] ^= 1;  // a second file
  write(0, pattern(4096, 9));
  obj.set_contents(stolen);
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(read_chunks(file(), size, 0, out).status().code(), EIO);
}

TEST_F(ChunkFileTest, FullDiskFailsTheWriteAndKeepsEarlierData) {
  write(0, pattern(3000, 10));
  obj.space_left = 100;
  auto w = write_chunks(file(), size, 3000, pattern(20000, 11));
  EXPECT_EQ(w.status().code(), ENOSPC);
  ASSERT_TRUE(obj.truncate(layout.phys_size(size)).ok());  // the caller keeps the old size
  EXPECT_EQ(read(0, 3000), pattern(3000, 10));
}

// Requests of more than 256 KiB are opened and sealed on several threads.
TEST_F(ChunkFileTest, LargeRequestsSplitAcrossCoresRoundTrip) {
  write(1000, pattern(3 << 20, 13));                 // unaligned at both ends
  write((2 << 20) + 77, pattern(1 << 20, 14));      // overwrite in the middle
  expect_matches_model();
  EXPECT_EQ(read(5000, 2 << 20), std::vector<uint8_t>(model.begin() + 5000, model.begin() + 5000 + (2 << 20)));
  obj.byte(layout.phys_offset(300) + 40) ^= 1;       // a chunk deep inside a large read
  std::vector<uint8_t> out(3 << 20);
  EXPECT_EQ(read_chunks(file(), size, 0, out).status().code(), EIO);
}

TEST_F(ChunkFileTest, AlignedFullChunkWritesSealEachChunkOnce) {
  auto w = write_chunks(file(), 0, 0, pattern(8 * 4096, 12));
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->chunks_sealed, 8u);
  EXPECT_FALSE(w->made_hole);
}

}  // namespace
}  // namespace cmkfs::fs
