// `mount --direct-reads`: files opened read-only are read straight from the daemon, not through
// the page cache. What a reader relies on must hold as with cached reads: every byte, writes of
// other handles, holes, truncation, shared mappings.
#include <sys/mman.h>
#include <sys/sendfile.h>

#include <cstring>

#include "tests/support/mount_fixture.h"
#include "tests/support/test_util.h"

namespace cmkfs::testing {
namespace {

std::string as_string(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

bool kernel_has_fuse_uring() { return ::access("/sys/module/fuse/parameters/enable_uring", F_OK) == 0; }

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

class DirectReadsTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (::geteuid() != 0 || !kernel_has_fuse_uring()) GTEST_SKIP() << "needs root and FUSE over io_uring (Linux 6.14+)";
    init("--chunk-size 4KiB");  // many chunk boundaries in small files
    mount("--direct-reads");
  }

  // How many of `path`'s pages are in the page cache: mincore on a mapping that touches none,
  // through a handle open for writing (mapping a direct handle would empty the cache first).
  static size_t cached_pages(const std::string& path) {
    Fd f{::open(path.c_str(), O_RDWR)};
    struct stat st;
    if (f.fd < 0 || ::fstat(f.fd, &st) != 0 || st.st_size == 0) return 0;
    size_t len = static_cast<size_t>(st.st_size);
    void* m = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, f.fd, 0);
    if (m == MAP_FAILED) return 0;
    std::vector<unsigned char> vec((len + 4095) / 4096);
    size_t n = 0;
    if (::mincore(m, len, vec.data()) == 0) {
      for (unsigned char v : vec) n += v & 1;
    }
    ::munmap(m, len);
    return n;
  }
};

TEST_F(DirectReadsTest, FilesReadBackByteForByteAtEveryOffset) {
  // Logged when the kernel's INIT has been answered, which the mount command does not wait for.
  EXPECT_TRUE(wait_for_text(log, "direct reads: files opened read-only bypass the page cache", 10)) << read_file(log);
  std::string data = as_string(pattern(3 * 4096 + 777, 7));
  write_file(at("f"), data);
  write_file("/proc/sys/vm/drop_caches", "3");
  EXPECT_EQ(read_file(at("f")), data);
  {
    Fd f{::open(at("f").c_str(), O_RDONLY)};
    ASSERT_GE(f.fd, 0) << std::strerror(errno);
    for (size_t off : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{8191}, data.size() - 1}) {
      for (size_t len : {size_t{1}, size_t{4097}, size_t{20000}}) {
        EXPECT_EQ(pread_n(f.fd, len, static_cast<off_t>(off)), data.substr(off, len))
            << "offset " << off << ", length " << len;
      }
    }
    EXPECT_EQ(pread_n(f.fd, 1, static_cast<off_t>(data.size())), "");  // at the end: nothing
    // sendfile(2), as a Go server copies a file to its socket, goes through splice.
    Fd out{::open((dir + "/copy").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600)};
    off_t from = 0;
    ASSERT_EQ(::sendfile(out.fd, f.fd, &from, data.size()), static_cast<ssize_t>(data.size())) << std::strerror(errno);
    EXPECT_EQ(read_file(dir + "/copy"), data);
  }  // closed: the mount is not busy
  umount();
  mount("--direct-reads");
  EXPECT_EQ(read_file(at("f")), data) << "after a remount";
}

// A writer beside a direct reader writes through, so the reader sees its writes at once, also a
// store into a shared mapping and a write past the end that leaves a hole (a cached write would
// tell the daemon the new size only at write-back, and the reader's read of the hole would end
// early). A reader that opens while the file is open for writing reads through the cache.
TEST_F(DirectReadsTest, AReaderSeesTheWritesOfAWriterBesideIt) {
  write_file(at("f"), std::string(100, 'a'));
  for (bool reader_first : {true, false}) {
    SCOPED_TRACE(reader_first ? "the reader opened first" : "the writer opened first");
    std::string name = reader_first ? "f" : "g";
    if (!reader_first) write_file(at(name), std::string(100, 'a'));
    Fd r{reader_first ? ::open(at(name).c_str(), O_RDONLY) : -1};
    Fd w{::open(at(name).c_str(), O_RDWR)};
    if (!reader_first) r.fd = ::open(at(name).c_str(), O_RDONLY);
    ASSERT_GE(r.fd, 0) << std::strerror(errno);
    ASSERT_GE(w.fd, 0) << std::strerror(errno);

    ASSERT_EQ(::pwrite(w.fd, "written", 7, 50), 7);
    EXPECT_EQ(pread_n(r.fd, 7, 50), "written");
    ASSERT_EQ(::pwrite(w.fd, "x", 1, 3 * 4096), 1);  // a hole from 100 to 12288
    EXPECT_EQ(pread_n(r.fd, 4096, 4096), std::string(4096, '\0'));
    EXPECT_EQ(pread_n(r.fd, 10, 3 * 4096), "x");

    void* m = ::mmap(nullptr, 3 * 4096 + 1, PROT_READ | PROT_WRITE, MAP_SHARED, w.fd, 0);
    ASSERT_NE(m, MAP_FAILED) << std::strerror(errno);
    std::memcpy(static_cast<char*>(m) + 2 * 4096, "mapped", 6);
    EXPECT_EQ(pread_n(r.fd, 6, 2 * 4096), "mapped");
    ::munmap(m, 3 * 4096 + 1);
  }
}

// Linux truncates on O_TRUNC also when the file is opened read-only (given write permission);
// the kernel then holds the file empty, and so must the store.
TEST_F(DirectReadsTest, AReadOnlyOpenWithTruncEmptiesTheFile) {
  write_file(at("f"), std::string(10000, 'a'));
  {
    Fd r{::open(at("f").c_str(), O_RDONLY | O_TRUNC)};
    ASSERT_GE(r.fd, 0) << std::strerror(errno);
    EXPECT_EQ(pread_n(r.fd, 100, 0), "");
  }
  umount();
  mount("--direct-reads");
  EXPECT_EQ(read_file(at("f")), "") << "after a remount";
}

// A file opened read-only can still be mapped shared (a database's readers do), and a direct
// read leaves nothing of the file in the page cache, where a cached mount keeps it all.
TEST_F(DirectReadsTest, ReadOnlyFilesMapSharedAndLeaveThePageCacheEmpty) {
  std::string data = as_string(pattern(64 * 4096, 3));
  write_file(at("f"), data);
  write_file("/proc/sys/vm/drop_caches", "3");
  EXPECT_EQ(read_file(at("f")), data);
  EXPECT_EQ(cached_pages(at("f")), 0u);
  {
    Fd r{::open(at("f").c_str(), O_RDONLY)};
    ASSERT_GE(r.fd, 0) << std::strerror(errno);
    void* m = ::mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, r.fd, 0);
    ASSERT_NE(m, MAP_FAILED) << std::strerror(errno);
    EXPECT_EQ(std::memcmp(m, data.data(), data.size()), 0);
    ::munmap(m, data.size());
  }
  umount();
  mount();  // cached reads: the same read keeps the file's pages
  write_file("/proc/sys/vm/drop_caches", "3");
  EXPECT_EQ(read_file(at("f")), data);
  EXPECT_EQ(cached_pages(at("f")), 64u);
}

}  // namespace
}  // namespace cmkfs::testing
