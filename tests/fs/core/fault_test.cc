// Faults swept over a small-file workload: the n-th object I/O call (open, read, write, truncate,
// length, sync or remove) fails with EIO, ENOSPC or EDQUOT, for every n the workload makes. Each
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
 protected:
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

  std::vector<uint8_t> read_back(fs::Filesystem& f, const std::string& name, int* err) {
    meta::InodeRecord rec;
    Handle* h = nullptr;
    *err = f.lookup(kRootIno, name, &rec);
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
};

TEST_F(FaultTest, EveryInjectedObjectFaultIsAnErrorAndLosesNothingAcknowledged) {
  // How many calls the workload makes without faults.
  objects.fail_at(0, 0);
  {
    fs::Filesystem f(*store, keyring);
    ASSERT_TRUE(f.start().ok());
    workload(f);
    ASSERT_TRUE(f.shutdown().ok());
  }
  int64_t total = objects.calls();
  ASSERT_GT(total, 20);
  int faults = 0;
  for (int err : {EIO, ENOSPC, EDQUOT}) {
    for (int64_t n = 1; n <= total; ++n) {
      recreate();
      std::map<std::string, std::vector<uint8_t>> durable;
      {
        fs::Filesystem f(*store, keyring);
        ASSERT_TRUE(f.start().ok());
        objects.fail_at(n, err);
        durable = workload(f);
        faults += objects.failed();
        (void)f.shutdown();  // may fail too: the fault is still in the past of this mount
      }
      objects.fail_at(0, 0);  // lifted
      open();
      fs::Filesystem f(*store, keyring);
      ASSERT_TRUE(f.start().ok()) << "fault " << n;
      for (const auto& [name, data] : durable) {
        int e = 0;
        EXPECT_EQ(read_back(f, name, &e), data) << name << " after fault " << n << " (" << std::strerror(err) << ")";
        EXPECT_EQ(e, 0) << name << " after fault " << n;
      }
      // Every object left is some file's.
      size_t files = 0;
      EXPECT_EQ(f.readdir(kRootIno, 0, [&](std::string_view name, uint64_t, uint32_t type, uint64_t) {
        files += type == S_IFREG;
        (void)name;
        return true;
      }), 0);
      EXPECT_EQ(objects.count(), files) << "after fault " << n << " (" << std::strerror(err) << ")";
      ASSERT_TRUE(f.shutdown().ok());
    }
  }
  EXPECT_GT(faults, 0);
  std::cout << "[ faults   ] " << total << " object calls in the workload, " << faults << " faults injected\n";
}

}  // namespace
}  // namespace cmkfs::testing
