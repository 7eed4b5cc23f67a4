// Unit-test fixture: a real store (LMDB metadata, or PostgreSQL's with $CMKFS_TEST_PG_CONNINFO;
// sealed records, a local key file) in a fresh temporary directory, opened and unlocked in the
// test's process, with its objects in memory.
// No mount, no FUSE, no root.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <sstream>
#include <string>

#include "fs/store/store.h"
#include "tests/support/mem_object.h"

namespace cmkfs::testing {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cmkfs-unit.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    ::setenv("CMKFS_CONFIG_DIR", (dir + "/host").c_str(), 1);
    create();
  }

  // A new, empty store in place of the one there was.
  void recreate() {
    store.reset();
    objects.clear();
    std::filesystem::remove_all(dir + "/store");
    std::filesystem::remove(dir + "/key");
    create();
  }

  void create() {
    fs::InitOptions init;
    init.store = dir + "/store";
    init.kek.key_file = dir + "/key";
    init.audit_log = audit_path();
    // The same tests on PostgreSQL metadata: ctest runs them again with this set (a fresh schema
    // per store, named after its id).
    if (const char* pg = ::getenv("CMKFS_TEST_PG_CONNINFO")) {
      init.meta.engine = "postgres";
      init.meta.conninfo_file = pg;
    }
    std::ostringstream out;
    Status s = fs::init_store(init, out);
    ASSERT_TRUE(s.ok()) << s.message();
    open();
  }

  void TearDown() override {
    store.reset();
    std::filesystem::remove_all(dir);
  }

  // Opens the store (again), keeping the objects, and installs its data key in `keyring`;
  // `provider` unwraps it (default: the one the store's settings name).
  void open(keyclient::KeyProvider* provider = nullptr) {
    store.reset();
    auto st = fs::open_store(dir + "/store", /*exclusive=*/true, /*read_only=*/false);
    ASSERT_TRUE(st.ok()) << st.status().message();
    store = std::move(*st);
    store->objects = std::make_unique<ObjectsView>(objects);
    std::unique_ptr<keyclient::KeyProvider> own;
    if (provider == nullptr) {
      auto made = keyclient::make_provider(store->kek, store->super.store_id);
      ASSERT_TRUE(made.ok()) << made.status().message();
      own = std::move(*made);
      provider = own.get();
    }
    fs::AuditLog audit(audit_path(), "test");
    auto unlocked = fs::unlock(*store, *provider, audit, "test");
    ASSERT_TRUE(unlocked.ok()) << unlocked.status().message();
    dek = unlocked->dek.clone();
    keyring.revoke();
    ASSERT_TRUE(fs::install_keys(keyring, store->super.dek_generation, std::move(*unlocked)).ok());
  }

  std::string audit_path() const { return dir + "/audit.jsonl"; }

  std::string dir;
  MemObjectStore objects;  // outlives every open of the store
  std::unique_ptr<fs::OpenStore> store;
  fs::Keyring keyring;
  crypto::SecretBytes dek;  // what unlock() gave

 private:
  // The store's ObjectStore for one open: the fixture's objects, which outlive it.
  class ObjectsView : public fs::ObjectStore {
   public:
    explicit ObjectsView(MemObjectStore& m) : m_(m) {}
    Result<std::unique_ptr<fs::ObjectFile>> open(const Id128& id, bool create) override { return m_.open(id, create); }
    Status remove(const Id128& id) override { return m_.remove(id); }
    Result<struct statvfs> statfs() override { return m_.statfs(); }
    Status list(const std::function<void(const Id128&)>& fn,
                const std::function<void(const std::string&)>& stray) override {
      return m_.list(fn, stray);
    }

   private:
    MemObjectStore& m_;
  };
};

}  // namespace cmkfs::testing
