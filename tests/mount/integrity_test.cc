// Tampering with the backing store: every kind gives EIO for the affected read (logged with the
// inode and chunk), never wrong bytes, and the daemon keeps serving everything else.
#include <cstring>

#include "tests/support/lmdb_poke.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/test_util.h"

namespace cmkfs::testing {
namespace {

constexpr size_t kChunk = 4096;
constexpr size_t kStride = kChunk + 28;

class IntegrityTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    init("--chunk-size 4KiB");
    mount();
  }
  static std::string bytes(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

  // Writes one file, unmounts, and returns the path of its object file.
  std::string write_one(const std::string& name, const std::string& data) {
    write_file(at(name), data);
    umount();
    auto objects = object_files();
    EXPECT_EQ(objects.size(), 1u);
    return objects.empty() ? "" : objects[0];
  }
  // Reads [off, off+n) of a file; returns -errno on failure.
  ssize_t read_at(const std::string& name, size_t n, off_t off, std::string* out = nullptr) {
    int fd = ::open(at(name).c_str(), O_RDONLY);
    if (fd < 0) return -errno;
    std::string buf(n, '\0');
    ssize_t got = ::pread(fd, buf.data(), n, off);
    int err = errno;
    ::close(fd);
    if (out != nullptr && got >= 0) *out = buf.substr(0, static_cast<size_t>(got));
    return got < 0 ? -err : got;
  }
  void flip_byte(const std::string& path, size_t pos) {
    std::string s = read_file(path);
    ASSERT_LT(pos, s.size());
    s[pos] ^= 0x01;
    write_file(path, s);
  }
  // The daemon still serves: a fresh file round-trips.
  void expect_still_serving() {
    write_file(at("canary"), "alive");
    EXPECT_EQ(read_file(at("canary")), "alive");
  }
};

TEST_F(IntegrityTest, FlippedBitGivesEioForThatChunkOnly) {
  std::string data = bytes(pattern(5 * kChunk, 1));
  std::string obj = write_one("f", data);
  flip_byte(obj, 2 * kStride + 100);  // inside chunk 2's ciphertext
  mount();
  EXPECT_EQ(read_at("f", kChunk, 2 * kChunk), -EIO);
  EXPECT_EQ(read_at("f", 10, 2 * kChunk + 4000), -EIO);
  std::string ok;
  EXPECT_EQ(read_at("f", 2 * kChunk, 0, &ok), static_cast<ssize_t>(2 * kChunk));
  EXPECT_EQ(ok, data.substr(0, 2 * kChunk));
  EXPECT_EQ(read_at("f", kChunk, 3 * kChunk, &ok), static_cast<ssize_t>(kChunk));
  EXPECT_EQ(ok, data.substr(3 * kChunk, kChunk));
  expect_still_serving();
  umount();
  std::string log_text = read_file(log);
  auto first = log_text.find("chunk 2 does not authenticate");
  EXPECT_NE(first, std::string::npos) << log_text;
  EXPECT_NE(log_text.find("inode"), std::string::npos);
  EXPECT_EQ(log_text.find("chunk 2 does not authenticate", first + 1), std::string::npos) << "logged twice";
}

TEST_F(IntegrityTest, FlippedBitInNonceOrTagGivesEio) {
  std::string obj = write_one("f", bytes(pattern(2 * kChunk, 2)));
  flip_byte(obj, 0);                 // nonce of chunk 0
  flip_byte(obj, 2 * kStride - 1);   // tag of chunk 1
  mount();
  EXPECT_EQ(read_at("f", kChunk, 0), -EIO);
  EXPECT_EQ(read_at("f", kChunk, kChunk), -EIO);
}

TEST_F(IntegrityTest, ChunkMovedToAnotherPositionGivesEio) {
  std::string obj = write_one("f", bytes(pattern(3 * kChunk, 3)));
  std::string s = read_file(obj);
  std::string c0 = s.substr(0, kStride);
  s.replace(0, kStride, s.substr(kStride, kStride));
  s.replace(kStride, kStride, c0);
  write_file(obj, s);
  mount();
  EXPECT_EQ(read_at("f", kChunk, 0), -EIO);
  EXPECT_EQ(read_at("f", kChunk, kChunk), -EIO);
  EXPECT_EQ(read_at("f", kChunk, 2 * kChunk), static_cast<ssize_t>(kChunk));
}

TEST_F(IntegrityTest, ChunkCopiedFromAnotherFileGivesEio) {
  write_file(at("a"), bytes(pattern(2 * kChunk, 4)));
  write_file(at("b"), bytes(pattern(2 * kChunk, 5)));
  umount();
  auto objects = object_files();
  ASSERT_EQ(objects.size(), 2u);
  std::string a = read_file(objects[0]), b = read_file(objects[1]);
  b.replace(0, kStride, a.substr(0, kStride));
  write_file(objects[1], b);
  mount();
  // Whichever file owns objects[1] now fails on chunk 0; the other is intact.
  ssize_t ra = read_at("a", kChunk, 0), rb = read_at("b", kChunk, 0);
  EXPECT_TRUE((ra == -EIO) != (rb == -EIO)) << ra << " " << rb;
}

TEST_F(IntegrityTest, TruncatedObjectGivesEio) {
  std::string obj = write_one("f", bytes(pattern(3 * kChunk + 100, 6)));
  std::string s = read_file(obj);
  write_file(obj, s.substr(0, kStride + 10));
  mount();
  EXPECT_EQ(read_at("f", kChunk, 0), static_cast<ssize_t>(kChunk));
  EXPECT_EQ(read_at("f", kChunk, kChunk), -EIO);
  EXPECT_EQ(read_at("f", 50, 3 * kChunk), -EIO);
}

TEST_F(IntegrityTest, ZeroedChunkOfAFileWithoutHolesGivesEio) {
  std::string obj = write_one("f", bytes(pattern(2 * kChunk, 7)));
  std::string s = read_file(obj);
  std::fill(s.begin(), s.begin() + kStride, '\0');
  write_file(obj, s);
  mount();
  EXPECT_EQ(read_at("f", kChunk, 0), -EIO);
}

TEST_F(IntegrityTest, TamperedInodeRecordGivesEio) {
  write_file(at("f"), "content");
  struct stat st;
  ASSERT_EQ(::stat(at("f").c_str(), &st), 0);
  umount();
  poke_lmdb(store + "/meta", "inodes", be64(st.st_ino), [](std::string& v) { v[v.size() / 2] ^= 1; });
  mount();
  EXPECT_EQ(::stat(at("f").c_str(), &st), -1);
  EXPECT_EQ(errno, EIO);
  expect_still_serving();
}

TEST_F(IntegrityTest, InodeRecordSwappedWithAnotherGivesEio) {
  write_file(at("small"), "s");
  write_file(at("large"), std::string(100000, 'L'));
  struct stat s1, s2;
  ASSERT_EQ(::stat(at("small").c_str(), &s1), 0);
  ASSERT_EQ(::stat(at("large").c_str(), &s2), 0);
  umount();
  std::string large_rec;
  poke_lmdb(store + "/meta", "inodes", be64(s2.st_ino), [&](std::string& v) { large_rec = v; });
  poke_lmdb(store + "/meta", "inodes", be64(s1.st_ino), [&](std::string& v) { v = large_rec; });
  mount();
  EXPECT_EQ(::stat(at("small").c_str(), &s1), -1);
  EXPECT_EQ(errno, EIO);
  EXPECT_EQ(read_file(at("large")), std::string(100000, 'L'));
}

TEST_F(IntegrityTest, TamperedDirectoryEntryGivesEio) {
  write_file(at("f"), "x");
  umount();
  // The root has one entry; find its key by scanning the table.
  MDB_env* env;
  mdb_env_create(&env);
  mdb_env_set_maxdbs(env, 8);
  ASSERT_EQ(mdb_env_open(env, (store + "/meta").c_str(), MDB_RDONLY, 0600), 0);
  MDB_txn* txn;
  MDB_dbi dbi;
  mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  ASSERT_EQ(mdb_dbi_open(txn, "dirents", 0, &dbi), 0);
  MDB_cursor* c;
  mdb_cursor_open(txn, dbi, &c);
  MDB_val k, v;
  ASSERT_EQ(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
  std::string key(static_cast<char*>(k.mv_data), k.mv_size);
  mdb_cursor_close(c);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  poke_lmdb(store + "/meta", "dirents", key, [](std::string& val) { val[20] ^= 0x40; });
  mount();
  struct stat st;
  EXPECT_EQ(::stat(at("f").c_str(), &st), -1);
  EXPECT_EQ(errno, EIO);
  expect_still_serving();
}

}  // namespace
}  // namespace cmkfs::testing
