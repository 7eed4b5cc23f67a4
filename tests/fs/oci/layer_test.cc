// Tar archives and gzip streams as layers hold them, including hostile ones: paths that climb
// out, bad checksums, truncation, corrupt and oversized streams; random access into gzip equals
// reading it whole, across several members.
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <random>
#include <thread>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"
#include "fs/oci/gzip_index.h"
#include "fs/oci/layer.h"
#include "fs/oci/tar.h"
#include "fs/oci/zstd_index.h"
#include "tests/support/tar_writer.h"

namespace cmkfs::oci {
namespace {

using Bytes = std::vector<uint8_t>;

using testing::tar_end;
using testing::tar_entry;

Bytes gzip(const Bytes& in, int level = 6) {
  z_stream s{};
  EXPECT_EQ(deflateInit2(&s, level, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Bytes out(deflateBound(&s, in.size()) + 64);
  s.next_in = const_cast<uint8_t*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

ReadAt reader(const Bytes& b) {
  return [&b](uint64_t off, uint8_t* buf, size_t len, size_t* n) {
    *n = off >= b.size() ? 0 : std::min<size_t>(len, b.size() - off);
    if (*n) std::memcpy(buf, b.data() + off, *n);
    return Status::Ok();
  };
}

Digest digest_of(const Bytes& b) {
  crypto::Sha256 sha;
  sha.update(crypto::Bytes(b.data(), b.size()));
  return Digest{to_hex(sha.finish())};
}

Status parse(const Bytes& tar, TarReader* r) {
  Status s = r->feed(tar.data(), tar.size());
  return s.ok() ? r->finish() : s;
}

TEST(TarTest, EntriesAndWhereTheirDataIs) {
  Bytes tar;
  tar_entry(&tar, "./", '5', "", "", 0700);
  tar_entry(&tar, "./etc/", '5', "", "", 0755);
  tar_entry(&tar, "./etc/motd", '0', "hello\n");
  tar_entry(&tar, "etc/link", '2', "", "motd");
  tar_entry(&tar, "etc/hard", '1', "", "./etc/motd");
  tar_end(&tar);
  TarReader r;
  ASSERT_TRUE(parse(tar, &r).ok());
  auto& e = r.entries();
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[0].path, "");  // the root's own entry
  EXPECT_EQ(e[0].mode, 0700u);
  e.erase(e.begin());
  EXPECT_EQ(e[0].path, "etc");
  EXPECT_EQ(e[0].type, '5');
  EXPECT_EQ(e[1].path, "etc/motd");
  EXPECT_EQ(std::string(tar.begin() + e[1].offset, tar.begin() + e[1].offset + e[1].size), "hello\n");
  EXPECT_EQ(e[2].link, "motd");
  EXPECT_EQ(e[3].link, "etc/motd");
  EXPECT_EQ(e[1].uid, 1000u);
  EXPECT_EQ(e[1].mtime, 1700000000);
}

TEST(TarTest, HostileArchivesAreErrors) {
  for (const char* name : {"../etc/passwd", "a/../../b", "/.."}) {
    Bytes tar;
    tar_entry(&tar, name, '0', "x");
    tar_end(&tar);
    TarReader r;
    EXPECT_FALSE(parse(tar, &r).ok()) << name;
  }
  Bytes tar;
  tar_entry(&tar, "hard", '1', "", "../../outside");
  tar_end(&tar);
  TarReader r1;
  EXPECT_FALSE(parse(tar, &r1).ok());
  Bytes bad_sum;
  tar_entry(&bad_sum, "f", '0', "data");
  bad_sum[10] ^= 1;
  TarReader r2;
  EXPECT_FALSE(parse(bad_sum, &r2).ok());
  Bytes cut;
  tar_entry(&cut, "f", '0', std::string(2000, 'x'));
  cut.resize(1000);
  TarReader r3;
  EXPECT_FALSE(parse(cut, &r3).ok());
  Bytes huge_size;
  tar_entry(&huge_size, "f", 'x', std::string(10, 'x'));
  std::snprintf(reinterpret_cast<char*>(huge_size.data() + 124), 12, "%011o", 077777777u);
  TarReader r4;
  EXPECT_FALSE(r4.feed(huge_size.data(), huge_size.size()).ok() && r4.finish().ok());
  // A base-256 size of 2^64 - 1: with its padding it wrapped to nothing, and the file's "data"
  // was read as the next headers.
  Bytes wraps;
  tar_entry(&wraps, "f", '0');
  std::memset(wraps.data() + 124, 0, 4);
  wraps[124] = 0x80;
  std::memset(wraps.data() + 128, 0xff, 8);
  std::memset(wraps.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += wraps[i];
  std::snprintf(reinterpret_cast<char*>(wraps.data() + 148), 8, "%06o", sum);
  tar_entry(&wraps, "g", '0', "data");
  tar_end(&wraps);
  TarReader r5;
  EXPECT_FALSE(parse(wraps, &r5).ok());
}

// A PAX header whose records are `records` ("size=...\n" lines with their lengths).
void pax_entry(Bytes* out, const std::string& key, const std::string& value) {
  std::string rec = " " + key + "=" + value + "\n";
  size_t len = rec.size() + 2;
  std::string full = std::to_string(len) + rec;
  if (full.size() != len) full = std::to_string(full.size()) + rec;
  tar_entry(out, "pax", 'x', full);
}

TEST(TarTest, PaxNumbersOutOfRangeAndNulsAreErrorsNotCrashes) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"size", "99999999999999999999"}, {"uid", "99999999999"}, {"gid", "-1"}, {"size", "12x"},
           {"path", std::string("..\0x", 4)}}) {
    Bytes tar;
    pax_entry(&tar, key, value);
    tar_entry(&tar, "f", '0', "data");
    tar_end(&tar);
    TarReader r;
    EXPECT_FALSE(parse(tar, &r).ok()) << key << "=" << value;
  }
  Bytes ok;
  pax_entry(&ok, "mtime", "1700000000.5");
  tar_entry(&ok, "f", '0', "data");
  tar_end(&ok);
  TarReader r;
  ASSERT_TRUE(parse(ok, &r).ok());
  EXPECT_EQ(r.entries()[0].mtime_nsec, 500000000u);
}

Bytes random_tar(size_t files, size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes tar;
  for (size_t i = 0; i < files; ++i) {
    std::string data(size, '\0');
    for (auto& c : data) c = static_cast<char>(rng() % 7);  // compressible, not trivially
    tar_entry(&tar, "f" + std::to_string(i), '0', data);
  }
  tar_end(&tar);
  return tar;
}

TEST(GzipIndexTest, RandomReadsEqualTheWholeAcrossMembers) {
  Bytes plain = random_tar(40, 200000, 1);
  size_t half = plain.size() / 2;
  Bytes a = gzip(Bytes(plain.begin(), plain.begin() + half)), b = gzip(Bytes(plain.begin() + half, plain.end()));
  Bytes gz = a;
  gz.insert(gz.end(), b.begin(), b.end());  // two members, as `cat a.gz b.gz`
  Bytes seen;
  auto index = GzipIndex::build(reader(gz), [](const uint8_t*, size_t) { return Status::Ok(); },
                                [&](const uint8_t* p, size_t n) {
                                  seen.insert(seen.end(), p, p + n);
                                  return Status::Ok();
                                },
                                256 << 10);
  ASSERT_TRUE(index.ok()) << index.status().message();
  EXPECT_EQ(seen, plain);
  EXPECT_EQ(index->size(), plain.size());
  EXPECT_GE(index->points(), plain.size() / (512 << 10));  // at block ends past each 256 KiB
  std::mt19937 rng(2);
  for (int i = 0; i < 200; ++i) {
    uint64_t off = rng() % plain.size();
    size_t len = std::min<size_t>(rng() % 300000, plain.size() - off);
    Bytes out(len);
    size_t n = 0;
    ASSERT_TRUE(index->read(reader(gz), off, out.data(), len, &n).ok());
    ASSERT_EQ(n, len);
    ASSERT_TRUE(std::equal(out.begin(), out.end(), plain.begin() + static_cast<long>(off))) << off << "+" << len;
  }
}

TEST(GzipIndexTest, AccessPointsStayBoundedAndAnotherStreamIsAnErrorNotAHang) {
  Bytes plain = random_tar(30, 200000, 5);
  Bytes gz = gzip(plain, 1);
  auto none = [](const uint8_t*, size_t) { return Status::Ok(); };
  // A point at every block end, at most 16 kept: thinned out over and over.
  auto index = GzipIndex::build(reader(gz), none, none, /*span=*/64, GzipIndex::kDefaultMaxOutput, /*max_points=*/16);
  ASSERT_TRUE(index.ok()) << index.status().message();
  EXPECT_LE(index->points(), 17u);
  EXPECT_GE(index->points(), 8u);
  std::mt19937 rng(6);
  for (int i = 0; i < 50; ++i) {
    uint64_t off = rng() % plain.size();
    Bytes out(std::min<size_t>(5000, plain.size() - off));
    size_t n = 0;
    ASSERT_TRUE(index->read(reader(gz), off, out.data(), out.size(), &n).ok());
    ASSERT_TRUE(std::equal(out.begin(), out.end(), plain.begin() + static_cast<long>(off)));
  }
  // The blob replaced by a shorter stream after indexing: an error, never a loop.
  Bytes other = gzip(Bytes(plain.begin(), plain.begin() + 1000));
  Bytes out(4096);
  size_t n = 0;
  EXPECT_FALSE(index->read(reader(other), plain.size() - 5000, out.data(), out.size(), &n).ok());
}

TEST(GzipIndexTest, CorruptTruncatedAndOversizedStreamsAreErrors) {
  Bytes plain = random_tar(4, 100000, 3);
  Bytes gz = gzip(plain);
  auto none = [](const uint8_t*, size_t) { return Status::Ok(); };
  Bytes cut(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2));
  EXPECT_FALSE(GzipIndex::build(reader(cut), none, none).ok());
  Bytes flipped = gz;
  flipped[gz.size() / 2] ^= 0x40;
  EXPECT_FALSE(GzipIndex::build(reader(flipped), none, none).ok());
  Bytes crc = gz;
  crc[gz.size() - 6] ^= 1;  // the trailer's CRC-32
  EXPECT_FALSE(GzipIndex::build(reader(crc), none, none).ok());
  Bytes trailing = gz;
  trailing.push_back('x');
  EXPECT_FALSE(GzipIndex::build(reader(trailing), none, none).ok());
  Bytes bomb = gzip(Bytes(50 << 20, 0), 9);  // 50 MiB of zeros in ~50 KiB
  auto capped = GzipIndex::build(reader(bomb), none, none, GzipIndex::kDefaultSpan, 10 << 20);
  EXPECT_FALSE(capped.ok());
}

TEST(LayerIndexTest, ChecksTheDigestAndReadsFilesOfGzipAndPlainLayers) {
  Bytes plain = random_tar(3, 5000, 4);
  Bytes gz = gzip(plain);
  for (const Bytes* blob : {&plain, &gz}) {
    auto index = LayerIndex::build(reader(*blob), digest_of(*blob));
    ASSERT_TRUE(index.ok()) << index.status().message();
    ASSERT_EQ((*index)->entries.size(), 3u);
    const TarEntry& f1 = (*index)->entries[1];
    Bytes out(f1.size);
    size_t n = 0;
    ASSERT_TRUE((*index)->read(reader(*blob), f1.offset, out.data(), out.size(), &n).ok());
    EXPECT_TRUE(std::equal(out.begin(), out.end(), plain.begin() + static_cast<long>(f1.offset)));
    Bytes other = *blob;
    other.push_back(0);
    EXPECT_EQ(LayerIndex::build(reader(*blob), digest_of(other)).status().code(), EIO);
  }
  Bytes zstd = {0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0};  // a zstd header and nothing
  EXPECT_EQ(LayerIndex::build(reader(zstd), digest_of(zstd)).status().code(), EIO);
}

Bytes zstd(const Bytes& in, int level = 3) {
  Bytes out(ZSTD_compressBound(in.size()));
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

TEST(ZstdIndexTest, RandomReadsEqualTheWholeInOneFrameAndInMany) {
  Bytes plain = random_tar(20, 150000, 7);
  Bytes one = zstd(plain), many;
  for (size_t off = 0; off < plain.size(); off += 400000) {  // frames of 400 KB, as seekable zstd makes
    Bytes f = zstd(Bytes(plain.begin() + static_cast<long>(off),
                         plain.begin() + static_cast<long>(std::min(plain.size(), off + 400000))));
    many.insert(many.end(), f.begin(), f.end());
  }
  for (const Bytes* z : {&one, &many}) {
    Bytes seen;
    auto index = ZstdIndex::build(reader(*z), [](const uint8_t*, size_t) { return Status::Ok(); },
                                  [&](const uint8_t* p, size_t n) {
                                    seen.insert(seen.end(), p, p + n);
                                    return Status::Ok();
                                  });
    ASSERT_TRUE(index.ok()) << index.status().message();
    EXPECT_EQ(seen, plain);
    EXPECT_EQ(index->frames(), z == &one ? 1u : (plain.size() + 399999) / 400000);
    std::mt19937 rng(8);
    for (int i = 0; i < 40; ++i) {
      uint64_t off = rng() % plain.size();
      Bytes out(std::min<size_t>(rng() % 200000 + 1, plain.size() - off));
      size_t n = 0;
      ASSERT_TRUE(index->read(reader(*z), off, out.data(), out.size(), &n).ok());
      ASSERT_EQ(n, out.size());
      ASSERT_TRUE(std::equal(out.begin(), out.end(), plain.begin() + static_cast<long>(off))) << off;
    }
  }
  // A layer compressed with zstd reads like any other.
  auto layer = LayerIndex::build(reader(many), digest_of(many));
  ASSERT_TRUE(layer.ok()) << layer.status().message();
  EXPECT_EQ((*layer)->entries.size(), 20u);
}

// A file read in requests of 128 KiB, out of order as readahead sends them: with the reader's
// cursor each request goes on from the last or is copied from what it decoded last (the stream is
// read about once), and seeks back, forward and into another frame or member still read the right
// bytes. Without it, every request decoded from the access point before it: from a zstd frame's
// start (the compressed bytes read grew with the square of the offset) or half a gzip span on
// average. Past kMaxDecoders readers at once, a reader goes without a decoder of its own and
// still reads right.
template <class Index>
void reads_on_from_its_cursor(const Index& index, const Bytes& z, const Bytes& plain) {
  uint64_t compressed_read = 0;
  ReadAt counting = [&](uint64_t off, uint8_t* buf, size_t len, size_t* n) {
    Status s = reader(z)(off, buf, len, n);
    compressed_read += *n;
    return s;
  };
  typename Index::Cursor cursor;
  Bytes whole(plain.size());
  // In requests of 128 KiB, out of order within each 512 KiB, as the kernel's readahead sends them.
  const uint64_t req = 128 << 10;
  for (uint64_t window = 0; window < plain.size(); window += 4 * req) {
    for (uint64_t k : {1, 0, 3, 2}) {
      uint64_t off = window + k * req;
      if (off >= plain.size()) continue;
      size_t n = 0;
      size_t want = static_cast<size_t>(std::min<uint64_t>(req, plain.size() - off));
      ASSERT_TRUE(index.read(counting, off, whole.data() + off, want, &n, &cursor).ok());
      ASSERT_EQ(n, want);
    }
  }
  EXPECT_EQ(whole, plain);
  EXPECT_LT(compressed_read, 2 * z.size()) << "the stream was decoded again and again";
  std::mt19937 rng(12);
  for (int i = 0; i < 30; ++i) {  // seeks, both ways, across frames and members
    uint64_t off = rng() % plain.size();
    Bytes out(std::min<size_t>(rng() % 100000 + 1, plain.size() - off));
    size_t n = 0;
    ASSERT_TRUE(index.read(reader(z), off, out.data(), out.size(), &n, &cursor).ok());
    ASSERT_EQ(n, out.size());
    ASSERT_TRUE(std::equal(out.begin(), out.end(), plain.begin() + static_cast<long>(off))) << off;
  }
  std::vector<std::unique_ptr<typename Index::Cursor>> readers;
  for (size_t i = 0; i < DecoderCursor::kMaxDecoders + 2; ++i) {
    readers.push_back(std::make_unique<typename Index::Cursor>());
    Bytes out(1000);
    size_t n = 0;
    ASSERT_TRUE(index.read(reader(z), 5000 * i, out.data(), out.size(), &n, readers.back().get()).ok());
    ASSERT_TRUE(std::equal(out.begin(), out.end(), plain.begin() + static_cast<long>(5000 * i))) << i;
  }
}

TEST(ZstdIndexTest, ASequentialReaderGoesOnFromItsCursor) {
  Bytes plain = random_tar(20, 150000, 11);
  Bytes one = zstd(plain), many;
  for (size_t off = 0; off < plain.size(); off += 400000) {
    Bytes f = zstd(Bytes(plain.begin() + static_cast<long>(off),
                         plain.begin() + static_cast<long>(std::min(plain.size(), off + 400000))));
    many.insert(many.end(), f.begin(), f.end());
  }
  auto none = [](const uint8_t*, size_t) { return Status::Ok(); };
  for (const Bytes* z : {&one, &many}) {
    auto index = ZstdIndex::build(reader(*z), none, none);
    ASSERT_TRUE(index.ok()) << index.status().message();
    reads_on_from_its_cursor(*index, *z, plain);
  }
}

// Open files that no longer read cannot keep the decoders from one that does: once they have been
// idle a while, the reader takes the one idle longest. And a revocation drops every decoder (what
// they decoded is plaintext); the readers go on, decoding afresh.
TEST(ZstdIndexTest, IdleCursorsGiveTheirDecodersUpAndRevocationDropsThemAll) {
  Bytes plain = random_tar(20, 150000, 17);
  Bytes one = zstd(plain);
  auto none = [](const uint8_t*, size_t) { return Status::Ok(); };
  auto index = ZstdIndex::build(reader(one), none, none);
  ASSERT_TRUE(index.ok()) << index.status().message();
  std::vector<std::unique_ptr<DecoderCursor>> idle;
  for (size_t i = 0; i < DecoderCursor::kMaxDecoders; ++i) {
    idle.push_back(std::make_unique<DecoderCursor>());
    Bytes out(1000);
    size_t n = 0;
    ASSERT_TRUE(index->read(reader(one), 1000 * i, out.data(), out.size(), &n, idle.back().get()).ok());
  }
  std::this_thread::sleep_for(DecoderCursor::kIdleBeforeTaken + std::chrono::milliseconds(200));
  reads_on_from_its_cursor(*index, one, plain);  // its stream read about once: it had a decoder
  DecoderCursor cursor;
  Bytes out(plain.size());
  size_t n = 0;
  ASSERT_TRUE(index->read(reader(one), 0, out.data(), 300000, &n, &cursor).ok());
  DecoderCursor::drop_all();
  uint64_t compressed_read = 0;
  ReadAt counting = [&](uint64_t off, uint8_t* buf, size_t len, size_t* got) {
    Status st = reader(one)(off, buf, len, got);
    compressed_read += *got;
    return st;
  };
  // Bytes it decoded before: kept, they would be copied from its ring without reading anything.
  Bytes again(1000);
  ASSERT_TRUE(index->read(counting, 1000, again.data(), again.size(), &n, &cursor).ok());
  EXPECT_GT(compressed_read, 0u) << "served from a decoder that should have been dropped";
  EXPECT_TRUE(std::equal(again.begin(), again.end(), plain.begin() + 1000));
}

TEST(GzipIndexTest, ASequentialReaderGoesOnFromItsCursor) {
  Bytes plain = random_tar(20, 150000, 13);
  size_t half = plain.size() / 2;
  Bytes one = gzip(plain), two = gzip(Bytes(plain.begin(), plain.begin() + static_cast<long>(half)));
  Bytes rest = gzip(Bytes(plain.begin() + static_cast<long>(half), plain.end()));
  two.insert(two.end(), rest.begin(), rest.end());
  auto none = [](const uint8_t*, size_t) { return Status::Ok(); };
  for (const Bytes* z : {&one, &two}) {
    auto index = GzipIndex::build(reader(*z), none, none);
    ASSERT_TRUE(index.ok()) << index.status().message();
    reads_on_from_its_cursor(*index, *z, plain);
  }
}

TEST(ZstdIndexTest, CorruptTruncatedAndOversizedStreamsAreErrors) {
  Bytes plain = random_tar(4, 100000, 9);
  Bytes z = zstd(plain);
  auto none = [](const uint8_t*, size_t) { return Status::Ok(); };
  EXPECT_FALSE(ZstdIndex::build(reader(Bytes(z.begin(), z.begin() + static_cast<long>(z.size() / 2))), none, none).ok());
  Bytes flipped = z;
  flipped[z.size() / 2] ^= 0x55;
  EXPECT_FALSE(ZstdIndex::build(reader(flipped), none, none).ok());
  Bytes bomb = zstd(Bytes(50 << 20, 0), 19);
  EXPECT_FALSE(ZstdIndex::build(reader(bomb), none, none, 10 << 20).ok());
}

}  // namespace
}  // namespace cmkfs::oci
