// Faults swept over a small-file workload and over a registry push (as docker-registry's filesystem
// driver makes one: an upload written in pieces, moved into the blob store, link files, a
// manifest): the n-th object I/O call (open, read, write, truncate, length, sync or remove) fails
// with EIO, ENOSPC or EDQUOT, for every n the workload makes. Each
// fault must reach the caller as an error (never a crash, never wrong bytes); once it is lifted and
// the store mounted again, everything acknowledged as durable reads back, and no object is left
// that no file names.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <map>

#include "fs/core/filesystem.h"
#include "tests/support/store_fixture.h"
#include "tests/support/test_util.h"

namespace cmkfs::testing {
namespace {

using fs::Handle;
using meta::kRootIno;

class FaultTest : public StoreTest {
 public:  // the sweep takes the workloads by pointer
  // The workload: files of awkward sizes written and fsynced (durable when every step said so),
  // an append, a cut, a rename and an unlink. Returns the files that must survive, and their bytes.
  std::map<std::string, std::vector<uint8_t>> workload(fs::Filesystem& f) {
    std::map<std::string, std::vector<uint8_t>> durable;
    for (int i = 0; i < 6; ++i) {
      std::string name = "f" + std::to_string(i);
      auto data = pattern(1000 + i * 3000, static_cast<uint32_t>(i));
      meta::InodeRecord rec;
      Handle* h = nullptr;
      if (f.create(kRootIno, name, 0644, O_RDWR, {}, &rec, &h) != 0) continue;
      size_t n = 0;
      bool ok = f.write(h, 0, data, &n) == 0 && n == data.size();
      if (i == 3 && ok) {  // appended to, past its partial last chunk
        auto more = pattern(5000, 99);
        ok = f.write(h, data.size(), more, &n) == 0;
        data.insert(data.end(), more.begin(), more.end());
      }
      ok = f.fsync(h, false) == 0 && ok;
      f.release(h);
      if (ok) durable[name] = data;
    }
    meta::InodeRecord rec;
    Handle* h = nullptr;
    if (f.lookup(kRootIno, "f4", &rec) == 0 && f.open(rec.ino, O_RDWR, &h) == 0) {  // cut
      fs::AttrChange cut;
      cut.size = 100;
      meta::InodeRecord out;
      bool ok = f.setattr(rec.ino, cut, h, &out) == 0 && f.fsync(h, false) == 0;
      f.release(h);
      if (durable.count("f4")) {
        if (ok) durable["f4"].resize(100);
        else durable.erase("f4");  // either length may be what a failed cut leaves
      }
    }
    if (f.rename(kRootIno, "f1", kRootIno, "g1", 0) == 0 && durable.count("f1")) {
      durable.erase("f1");  // not synced: either name may survive
    }
    if (f.unlink(kRootIno, "f2") == 0) durable.erase("f2");
    durable.erase("f2");
    return durable;
  }

  // A registry push: two layers uploaded in 32 KiB writes, each moved to its blob path, its
  // layer link written; then the manifest, its revision link and the tag. What was fsynced and
  // moved into place (the directory synced) is durable.
  std::map<std::string, std::vector<uint8_t>> push(fs::Filesystem& f) {
    std::map<std::string, std::vector<uint8_t>> durable;
    const std::string v2 = "docker/registry/v2/";
    auto put = [&](const std::string& upload, const std::string& dest, const std::vector<uint8_t>& data) {
      uint64_t up = mkdirs(f, upload), dir = mkdirs(f, dest.substr(0, dest.rfind('/')));
      if (up == 0 || dir == 0) return;
      meta::InodeRecord rec;
      Handle* h = nullptr;
      if (f.create(up, "data", 0644, O_RDWR, {}, &rec, &h) != 0) return;
      bool ok = true;
      for (size_t off = 0; ok && off < data.size(); off += 32768) {
        size_t n = 0, len = std::min<size_t>(32768, data.size() - off);
        ok = f.write(h, off, {data.data() + off, len}, &n) == 0 && n == len;
      }
      ok = f.fsync(h, false) == 0 && ok;
      f.release(h);
      f.forget(rec.ino, 1);
      ok = ok && f.rename(up, "data", dir, dest.substr(dest.rfind('/') + 1), 0) == 0 && f.fsyncdir() == 0;
      if (ok) durable[dest] = data;
    };
    auto link = [&](const std::string& path, const std::string& text) {
      put(v2 + "repositories/app/_uploads/link-" + std::to_string(durable.size()), path,
          std::vector<uint8_t>(text.begin(), text.end()));
    };
    for (int l = 0; l < 2; ++l) {
      auto layer = pattern(70000 + l * 50000, static_cast<uint32_t>(10 + l));
      std::string hex = std::string(62, static_cast<char>('a' + l)) + "0" + std::to_string(l);
      put(v2 + "repositories/app/_uploads/u" + std::to_string(l), v2 + "blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data", layer);
      link(v2 + "repositories/app/_layers/sha256/" + hex + "/link", "sha256:" + hex);
    }
    std::string m(64, 'f');
    put(v2 + "repositories/app/_uploads/m", v2 + "blobs/sha256/ff/" + m + "/data", pattern(900, 77));
    link(v2 + "repositories/app/_manifests/revisions/sha256/" + m + "/link", "sha256:" + m);
    link(v2 + "repositories/app/_manifests/tags/v1/current/link", "sha256:" + m);
    return durable;
  }

  // mkdir -p below the root: the directory's inode, or 0.
  uint64_t mkdirs(fs::Filesystem& f, const std::string& path) {
    uint64_t ino = kRootIno;
    for (size_t pos = 0; pos < path.size();) {
      size_t slash = path.find('/', pos);
      std::string part = path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
      pos = slash == std::string::npos ? path.size() : slash + 1;
      meta::InodeRecord rec;
      if (f.lookup(ino, part, &rec) != 0 && f.mkdir(ino, part, 0755, {}, &rec) != 0) return 0;
      f.forget(rec.ino, 1);
      ino = rec.ino;
    }
    return ino;
  }

  // Regular files below `dir`, recursively.
  size_t count_files(fs::Filesystem& f, uint64_t dir) {
    std::vector<std::pair<uint64_t, uint32_t>> kids;
    EXPECT_EQ(f.readdir(dir, 0, [&](std::string_view name, uint64_t ino, uint32_t type, uint64_t) {
      if (name != "." && name != "..") kids.emplace_back(ino, type);
      return true;
    }), 0);
    size_t n = 0;
    for (auto [ino, type] : kids) n += type == S_IFREG ? 1 : type == S_IFDIR ? count_files(f, ino) : 0;
    return n;
  }

  std::vector<uint8_t> read_back(fs::Filesystem& f, const std::string& path, int* err) {
    meta::InodeRecord rec;
    Handle* h = nullptr;
    uint64_t parent = kRootIno;
    std::string name = path;
    if (size_t slash = path.rfind('/'); slash != std::string::npos) {
      parent = mkdirs(f, path.substr(0, slash));
      name = path.substr(slash + 1);
    }
    *err = f.lookup(parent, name, &rec);
    if (*err != 0) return {};
    *err = f.open(rec.ino, O_RDONLY, &h);
    if (*err != 0) return {};
    std::vector<uint8_t> buf(rec.size);
    size_t n = 0;
    *err = f.read(h, 0, buf, &n);
    buf.resize(n);
    f.release(h);
    return buf;
  }

  using Workload = std::map<std::string, std::vector<uint8_t>> (FaultTest::*)(fs::Filesystem&);
  // Runs `work` once to count its object calls, then again failing each call in turn.
  void sweep(Workload work, const char* what) {
    objects.fail_at(0, 0);
    {
      fs::Filesystem f(*store, keyring);
      ASSERT_TRUE(f.start().ok());
      (this->*work)(f);
      ASSERT_TRUE(f.shutdown().ok());
    }
    int64_t total = objects.calls();
    ASSERT_GT(total, 20);
    int faults = 0;
    for (int err : {EIO, ENOSPC, EDQUOT}) {
      for (int64_t n = 1; n <= total; ++n) {
        ASSERT_NO_FATAL_FAILURE(recreate());  // a store that failed to open must not be used
        std::map<std::string, std::vector<uint8_t>> durable;
        {
          fs::Filesystem f(*store, keyring);
          ASSERT_TRUE(f.start().ok());
          objects.fail_at(n, err);
          durable = (this->*work)(f);
          faults += objects.failed();
          (void)f.shutdown();  // may fail too: the fault is still in the past of this mount
        }
        objects.fail_at(0, 0);  // lifted
        ASSERT_NO_FATAL_FAILURE(open());
        fs::Filesystem f(*store, keyring);
        ASSERT_TRUE(f.start().ok()) << "fault " << n;
        for (const auto& [name, data] : durable) {
          int e = 0;
          EXPECT_EQ(read_back(f, name, &e), data) << name << " after fault " << n << " (" << std::strerror(err) << ")";
          EXPECT_EQ(e, 0) << name << " after fault " << n;
        }
        // Every object left is some file's.
        EXPECT_EQ(objects.count(), count_files(f, kRootIno)) << "after fault " << n << " (" << std::strerror(err) << ")";
        ASSERT_TRUE(f.shutdown().ok());
      }
    }
    EXPECT_GT(faults, 0);
    std::cout << "[ faults   ] " << what << ": " << total << " object calls, " << faults << " faults injected\n";
  }
};

TEST_F(FaultTest, EveryInjectedObjectFaultIsAnErrorAndLosesNothingAcknowledged) {
  sweep(&FaultTest::workload, "small files");
}

TEST_F(FaultTest, ARegistryPushUnderEveryInjectedFaultLosesNothingAcknowledged) {
  sweep(&FaultTest::push, "registry push");
}

}  // namespace
}  // namespace cmkfs::testing
