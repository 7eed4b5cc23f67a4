// An attacker who can write the backing store, and nothing else, tries to redirect, replace or
// weaken the store's key. Each attack is refused, and the addresses it plants receive nothing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/base/fd.h"
#include "crypto/base/hex.h"
#include "crypto/keys.h"
#include "fs/fuse/mount_table.h"
#include "keyclient/base64url.h"
#include "keyclient/http.h"
#include "meta/meta.h"
#include "tests/support/listener.h"
#include "tests/support/lmdb_poke.h"
#include "tests/support/vault_fixture.h"

namespace cmkfs::testing {
namespace {

using nlohmann::json;

class AttackTest : public VaultTest {
 protected:
  // Edits the store's superblock JSON (the MAC is left as it was, unless the edit reseals it).
  void edit_superblock(const std::function<void(json&)>& edit) {
    poke_lmdb(store + "/meta", "super", "superblock", [&](std::string& v) {
      json j = json::parse(v);
      edit(j);
      v = j.dump();
    });
  }
  void edit_wrapped_key(const std::function<void(json&)>& edit) {
    poke_lmdb(store + "/meta", "keys", be64(1), [&](std::string& v) {
      json j = json::parse(v);
      edit(j);
      v = j.dump();
    });
  }
  static bool says(const CommandResult& r, const std::string& what) { return r.output.find(what) != std::string::npos; }

  RecordingListener attacker;
};

TEST_F(AttackTest, AKeyIdPlantedInTheWrappedKeyGetsNoRequest) {
  init_vault(key_url);
  for (const char* scheme : {"http", "https"}) {
    edit_wrapped_key([&](json& j) { j["key_id"] = attacker.origin(scheme) + "/keys/cmk/0123456789abcdef"; });
    auto r = try_mount();
    EXPECT_EQ(r.rc, 11) << r.output;
    EXPECT_TRUE(says(r, "does not name")) << r.output;
    r = run(cmkfs_binary() + " fsck " + store);
    EXPECT_EQ(r.rc, 11) << r.output;
  }
  EXPECT_EQ(attacker.connections(), 0);
}

TEST_F(AttackTest, KeySettingsPlantedInTheSuperblockGetNoRequest) {
  init_vault(key_url);
  edit_superblock([&](json& j) { j["kek"]["identity_endpoint"] = attacker.origin("http") + "/token"; });
  auto r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_TRUE(says(r, "differ")) << r.output;
  edit_superblock([&](json& j) {
    j["kek"]["identity_endpoint"] = url + "/metadata/identity/oauth2/token";
    j["kek"]["key_identifier"] = attacker.origin() + "/keys/cmk";
  });
  r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_EQ(attacker.connections(), 0);
}

TEST_F(AttackTest, ARunningMountTakesNoKeySettingsFromTheStore) {
  init_vault(key_url);
  mount("--key-check-interval 300ms --rotation-poll-interval 300ms --audit-log " + dir + "/audit.jsonl");
  write_file(at("f"), "still mine");
  edit_superblock([&](json& j) {
    j["kek"]["key_identifier"] = attacker.origin() + "/keys/cmk";
    j["kek"]["identity_endpoint"] = attacker.origin("http") + "/token";
  });
  // A key check finds the change and audits it; then several more checks and rotation polls.
  EXPECT_TRUE(wait_for_text(dir + "/audit.jsonl", "\"event\":\"tamper\"", 15)) << read_file(log);
  ::usleep(1500000);
  EXPECT_EQ(attacker.connections(), 0);
  EXPECT_EQ(read_file(at("f")), "still mine");
}

TEST_F(AttackTest, AnHttpKeyVaultIsRefusedAtInit) {
  auto r = run(cmkfs_binary() + " init " + store + vault_flags(attacker.origin("http") + "/keys/cmk"));
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(says(r, "https only")) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_EQ(attacker.connections(), 0);
}

TEST_F(AttackTest, AnotherStoreSwappedInIsRefused) {
  init();
  mount();
  write_file(at("f"), "the victim's");
  umount();
  // The attacker makes a store of their own, with their own key, on their own host...
  std::string theirs = dir + "/theirs";
  auto r = run("CMKFS_CONFIG_DIR=" + dir + "/attacker-host " + cmkfs_binary() + " init " + theirs +
               " --local-key-file " + dir + "/attacker.key");
  ASSERT_EQ(r.rc, 0) << r.output;
  // ... and puts its metadata in place of the victim's.
  stdfs::remove_all(store + "/meta");
  stdfs::copy(theirs + "/meta", store + "/meta");
  r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_TRUE(says(r, "not bound to this host")) << r.output;
}

// Where the objects are is the store's word only as far as this host's binding agrees: a store
// that moves them into a cluster of the attacker's naming, or back into its own directory (where
// copies could be planted), is refused before any object is read.
TEST_F(AttackTest, ObjectsMovedByTheStoreAreRefused) {
  init();
  mount();
  write_file(at("f"), "mine");
  umount();
  edit_superblock([&](json& j) { j["objects"] = {{"kind", "rados"}, {"pool", "theirs"}, {"namespace", "x"}, {"object_size", 4 << 20}, {"layout", 1}}; });
  auto r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_TRUE(says(r, "says its objects are in rados://theirs/x")) << r.output;
  r = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(r.rc, 11) << r.output;

  // The binding of a store whose objects are in a cluster; the store now claims its directory.
  edit_superblock([&](json& j) { j.erase("objects"); });
  ASSERT_EQ(std::distance(stdfs::directory_iterator(host + "/stores"), stdfs::directory_iterator()), 1);
  std::string binding = stdfs::directory_iterator(host + "/stores")->path();
  json b = json::parse(read_file(binding));
  b["objects"] = {{"kind", "rados"}, {"pool", "cmkfs"}, {"namespace", "ns"}, {"object_size", 4 << 20}, {"layout", 1}, {"conf", "/nonexistent"}, {"user", "admin"}};
  write_file(binding, b.dump());
  r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_TRUE(says(r, "this host's binding says rados://cmkfs/ns")) << r.output;
}

TEST_F(AttackTest, ADataKeyOfTheAttackersChoiceIsRefused) {
  init_vault(key_url);
  // Anyone may wrap under the vault key's public half: the attacker wraps a key they know...
  std::vector<uint8_t> theirs(32, 0x41);
  std::string kid = show()["keyVaultProperties"]["versionedKeyIdentifier"];
  std::string token = vault_json("token --client-id " + client_id)["access_token"];
  auto http = keyclient::make_curl_transport({.ca_file = vault_dir + "/ca.pem", .timeout_seconds = 10});
  auto w = http->send({"POST", kid + "/wrapkey?api-version=7.4",
                       {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}},
                       json{{"alg", "RSA-OAEP-256"}, {"value", keyclient::base64url_encode(theirs)}}.dump()});
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->status, 200) << w->body;
  auto blob = keyclient::base64url_decode(json::parse(w->body)["value"].get<std::string>());
  edit_wrapped_key([&](json& j) { j["blob"] = to_hex(*blob); });
  // ... and seals the superblock with it, so that everything the store says checks out.
  auto dek = crypto::SecretBytes::copy_of(theirs);
  auto keys = crypto::derive_store_keys(dek);
  poke_lmdb(store + "/meta", "super", "superblock", [&](std::string& v) {
    auto sb = meta::Superblock::from_json(v);
    ASSERT_TRUE(sb.ok());
    sb->seal(keys->super_mac.bytes());
    v = sb->to_json();
  });
  auto r = try_mount();
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_TRUE(says(r, "not the one this host bound")) << r.output;
  r = run(cmkfs_binary() + " inspect " + store);
  EXPECT_EQ(r.rc, 11) << r.output;
}

TEST_F(AttackTest, LinksPlantedInTheStoreAreNotFollowed) {
  init();
  std::string victim = dir + "/victim";
  write_file(victim, "precious");
  // LMDB's lock file pointed at a file the daemon (root) could write.
  stdfs::remove(store + "/meta/lock.mdb");
  stdfs::create_symlink(victim, store + "/meta/lock.mdb");
  auto r = try_mount();
  EXPECT_EQ(r.rc, 10) << r.output;
  EXPECT_TRUE(says(r, "symbolic link")) << r.output;
  EXPECT_EQ(read_file(victim), "precious");
  stdfs::remove(store + "/meta/lock.mdb");
  // A dangling link for the store lock, which would create its target.
  stdfs::remove(store + "/lock");
  stdfs::create_symlink(dir + "/created", store + "/lock");
  r = try_mount();
  EXPECT_EQ(r.rc, 10) << r.output;
  EXPECT_FALSE(stdfs::exists(dir + "/created"));
  stdfs::remove(store + "/lock");
  // An objects directory pointed elsewhere.
  stdfs::create_directories(dir + "/elsewhere");
  stdfs::remove(store + "/objects/00");
  stdfs::create_directory_symlink(dir + "/elsewhere", store + "/objects/00");
  r = try_mount();
  EXPECT_EQ(r.rc, 10) << r.output;
  stdfs::remove(store + "/objects/00");
  stdfs::create_directory(store + "/objects/00");
  ::chmod((store + "/objects/00").c_str(), 0700);
  mount();  // and with the links gone, it mounts
}

// A FIFO (whose open could wait for a writer) or a hard link to a file elsewhere planted in the
// store: refused with the reason, by the mount and by fsck, and nothing hangs.
TEST_F(AttackTest, AFifoOrAHardLinkPlantedInTheStoreIsRefused) {
  init();
  mount();
  write_file(at("f"), "mine");
  umount();
  std::string object;
  for (const auto& e : stdfs::recursive_directory_iterator(store + "/objects")) {
    if (e.is_regular_file()) object = e.path();
  }
  ASSERT_FALSE(object.empty());
  std::string victim = dir + "/victim";
  write_file(victim, "precious");
  struct Case {
    std::function<void()> plant;
    std::string says;
  };
  for (const Case& c : {Case{[&] { EXPECT_EQ(::mkfifo(object.c_str(), 0600), 0); }, "not a regular file"},
                        Case{[&] { stdfs::create_hard_link(victim, object); }, "other names"}}) {
    stdfs::remove(object);
    c.plant();
    mount();
    int fd = ::open(at("f").c_str(), O_RDONLY);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
      char b[16];
      err = ::read(fd, b, sizeof b) < 0 ? errno : 0;
      ::close(fd);
    }
    EXPECT_EQ(err, EIO) << c.says;
    EXPECT_TRUE(wait_for_text(log, c.says, 5)) << read_file(log);
    umount();
    auto r = run("timeout 60 " + cmkfs_binary() + " fsck " + store);
    EXPECT_NE(r.rc, 0) << r.output;
    EXPECT_NE(r.rc, 124) << "fsck hung on the planted object";
    EXPECT_TRUE(says(r, c.says)) << r.output;
  }
  EXPECT_EQ(read_file(victim), "precious");
  // Objects are opened for reading and writing, which a FIFO never blocks; the metadata is
  // opened for reading only, which would wait for a writer forever.
  std::string data = store + "/meta/data.mdb";
  stdfs::rename(data, data + ".saved");
  ASSERT_EQ(::mkfifo(data.c_str(), 0600), 0);
  auto r = run("timeout 60 " + cmkfs_binary() + " mount " + store + " " + mnt + " --log-file " + log);
  EXPECT_NE(r.rc, 124) << "the mount hung on the planted FIFO";
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_TRUE(says(r, "not a regular file")) << r.output;
  stdfs::remove(data);
  stdfs::rename(data + ".saved", data);
  mount();  // and with the FIFO gone, it mounts
}

// LMDB opens its files by name and follows links: a lock file swapped for a link to another file
// between cmkfs's check and LMDB's open (a remote store's server can swap names at will) must not
// have LMDB write its lock table into that file. Raced for real: a thread exchanges the lock file
// with such a link as fast as it can while cmkfs opens the store again and again.
TEST_F(AttackTest, AMetadataFileSwappedForALinkWhileOpeningIsNotFollowed) {
  init();
  std::string victim = dir + "/victim";
  write_file(victim, "precious");
  std::string meta = store + "/meta";
  stdfs::create_symlink(victim, meta + "/swap");
  int meta_fd = ::open(meta.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(meta_fd, 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> swaps{0};
  std::thread swapper([&] {
    while (!stop.load()) {
      if (::renameat2(meta_fd, "lock.mdb", meta_fd, "swap", RENAME_EXCHANGE) == 0) swaps.fetch_add(1);
    }
  });
  int opened = 0;
  for (int i = 0; i < 40; ++i) opened += run(cmkfs_binary() + " fsck " + store).rc == 0;
  stop = true;
  swapper.join();
  if (stdfs::is_symlink(meta + "/lock.mdb")) {
    ASSERT_EQ(::renameat2(meta_fd, "lock.mdb", meta_fd, "swap", RENAME_EXCHANGE), 0);
  }
  ::close(meta_fd);
  stdfs::remove(meta + "/swap");
  EXPECT_GT(swaps.load(), 1000u);
  EXPECT_EQ(read_file(victim), "precious");
  EXPECT_GT(opened, 0) << "no open got past the check: the race was never run";
  mount();  // the store is intact
  EXPECT_TRUE(stdfs::exists(meta + "/lock.mdb") && !stdfs::is_symlink(meta + "/lock.mdb"));
}

// The directory of links through which LMDB opens the metadata is made in TMPDIR, which others
// may be able to write (a shared directory without the sticky bit): a directory of theirs
// exchanged for it while LMDB opens its files must not have LMDB follow their link (the lock
// table written into another file). Raced for real: a thread exchanges every such directory with
// one whose lock.mdb links to a victim, as fast as it can, while cmkfs opens the store. (The
// attacker here is the same user, so only the attack on the open is run: another user's
// directory put in place before it is opened is refused as not the user's own.)
TEST_F(AttackTest, ALinkDirectoryExchangedInTmpdirIsNotFollowed) {
  init();
  std::string victim = dir + "/victim";
  write_file(victim, "precious");
  std::string tmp = dir + "/tmp";
  stdfs::create_directory(tmp);
  ::chmod(tmp.c_str(), 0777);  // writable by all, and no sticky bit
  Fd tmp_fd(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_GE(tmp_fd.get(), 0);
  std::string data = store + "/meta/data.mdb";
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> live_swaps{0};
  std::thread swapper([&] {
    std::string evil;
    Fd evil_fd;
    for (int made = 0; !stop.load();) {
      // The code before removed the links, and then the directory, of whichever directory had
      // its name when it was done: then the attacker makes another.
      struct stat st;
      if (evil_fd.get() < 0 || ::fstat(evil_fd.get(), &st) != 0 || st.st_nlink == 0) {
        evil = "evil" + std::to_string(made++);
        ::mkdirat(tmp_fd.get(), evil.c_str(), 0700);
        evil_fd.reset(::openat(tmp_fd.get(), evil.c_str(), O_RDONLY | O_DIRECTORY));
      }
      ::symlinkat(data.c_str(), evil_fd.get(), "data.mdb");
      ::symlinkat(victim.c_str(), evil_fd.get(), "lock.mdb");
      for (const auto& e : stdfs::directory_iterator(tmp, stdfs::directory_options::skip_permission_denied)) {
        std::string name = e.path().filename();
        if (name.rfind("cmkfs-links-", 0) != 0) continue;
        if (::renameat2(tmp_fd.get(), name.c_str(), tmp_fd.get(), evil.c_str(), RENAME_EXCHANGE) != 0) continue;
        // Counted when what was exchanged was cmkfs's, its links still there (not a leftover).
        char target[64];
        ssize_t n = ::readlinkat(tmp_fd.get(), (evil + "/lock.mdb").c_str(), target, sizeof target);
        if (n > 0 && std::string(target, static_cast<size_t>(n)).rfind("/proc/", 0) == 0) live_swaps.fetch_add(1);
      }
    }
  });
  int opened = 0;
  for (int i = 0; i < 40; ++i) opened += run("TMPDIR=" + tmp + " " + cmkfs_binary() + " fsck " + store).rc == 0;
  stop = true;
  swapper.join();
  EXPECT_GT(live_swaps.load(), 10u);
  EXPECT_TRUE(read_file(victim) == "precious") << "LMDB wrote its lock table into the victim";
  EXPECT_GT(opened, 0) << "no open got past the check: the race was never run";
  mount();  // the store is intact
}

// The one file's inode number and object (a store written with nothing else).
std::pair<uint64_t, std::string> only_file(const std::string& path, const std::string& store) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  std::vector<std::string> objects;
  for (const auto& e : stdfs::recursive_directory_iterator(store + "/objects")) {
    if (e.is_regular_file()) objects.push_back(e.path());
  }
  EXPECT_EQ(objects.size(), 1u);
  return {st.st_ino, objects.empty() ? "" : objects[0]};
}

std::string id_bytes(const std::string& object_path) {
  auto b = from_hex(stdfs::path(object_path).filename().string());
  return b ? std::string(b->begin(), b->end()) : "";
}

// What a crash leaves for the next mount to repair is noted in the metadata's recovery table;
// a note planted there used to be acted on. "This file was being written" had the mount cut a
// file whose object the attacker had cut to what still authenticates, and seal that size: a
// truncation made silent (before: EIO). "This object's file was deleted" had it remove a live
// file's object; so did "this object's create never committed" in the creation log.
TEST_F(AttackTest, RecoveryNotesPlantedInTheStoreAreNotActedOn) {
  init();
  mount();
  std::string data(20000, 'd');
  write_file(at("cut"), data);
  auto [ino, object] = only_file(at("cut"), store);
  umount();
  ::truncate(object.c_str(), 0);
  put_lmdb(store + "/meta", "recovery", "w" + be64(ino), "");
  mount();
  int fd = ::open(at("cut").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[16];
  errno = 0;
  EXPECT_EQ(::pread(fd, buf, sizeof buf, 0), -1) << "the file was cut to what its object holds";
  EXPECT_EQ(errno, EIO);
  ::close(fd);
  struct stat st;
  ASSERT_EQ(::stat(at("cut").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 20000);
  EXPECT_NE(read_file(log).find("do not authenticate"), std::string::npos) << read_file(log);
  ::unlink(at("cut").c_str());
  umount();

  mount();
  write_file(at("live"), "a live file");
  auto [ino2, object2] = only_file(at("live"), store);
  umount();
  put_lmdb(store + "/meta", "recovery", "p" + id_bytes(object2), "");
  auto r = run(cmkfs_binary() + " fsck " + store);
  EXPECT_NE(r.output.find("crash-recovery notes do not authenticate"), std::string::npos) << r.output;
  mount();
  EXPECT_TRUE(stdfs::exists(object2)) << "the mount removed a live file's object";
  EXPECT_EQ(read_file(at("live")), "a live file");
  umount();
  r = run(cmkfs_binary() + " fsck " + store);
  EXPECT_EQ(r.rc, 0) << "the mount removed the planted note: " << r.output;
  put_lmdb(store + "/meta", "recovery", "w" + be64(ino2), "");
  r = run(cmkfs_binary() + " fsck --repair " + store);
  EXPECT_EQ(r.rc, 0) << "fsck --repair removes a planted note as a mount would: " << r.output;

  // The creation log: "inode 999's create never committed; it made this object".
  std::string note = be64(999) + id_bytes(object2) + std::string(16, 'x');
  int fd2 = ::open((store + "/meta/created.0").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd2, 0);
  ASSERT_EQ(::write(fd2, note.data(), note.size()), static_cast<ssize_t>(note.size()));
  ::close(fd2);
  mount();
  EXPECT_TRUE(stdfs::exists(object2)) << "the mount removed a live file's object";
  EXPECT_EQ(read_file(at("live")), "a live file");
  (void)ino2;
}

// A record changed or deleted reads EIO; its file's object is still whole and still opens under
// the key. `fsck --repair` counted that object as leaked and deleted it: the damage made
// permanent, and a record restored from a backup left without its data.
TEST_F(AttackTest, FsckRepairKeepsTheObjectsOfDamagedRecords) {
  init();
  mount();
  write_file(at("f"), "restore me");
  auto [ino, object] = only_file(at("f"), store);
  umount();
  poke_lmdb(store + "/meta", "inodes", be64(ino), [](std::string& v) { v[v.size() / 2] ^= 1; });
  auto r = run(cmkfs_binary() + " fsck --repair " + store);
  EXPECT_NE(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("kept, since"), std::string::npos) << r.output;
  EXPECT_TRUE(stdfs::exists(object)) << r.output;
}

// The store's path goes into the mount's option list (fsname=cmkfs:PATH): a directory named
// "store,allow_other" added allow_other, without default_permissions, so every user of the host
// could read every file of the mount whatever its mode.
TEST_F(AttackTest, AStorePathCannotAddMountOptions) {
  store = dir + "/store,allow_other";
  init();
  mount();
  std::string view = dir + "/view";
  stdfs::create_directory(view);
  auto v = run(cmkfs_binary() + " view " + mnt + " " + view);
  ASSERT_EQ(v.rc, 0) << v.output;
  int seen = 0;
  for (const auto& m : fs::current_mounts()) {
    if (m.target != mnt && m.target != view) continue;
    ++seen;
    EXPECT_EQ(m.source.substr(m.source.find(':') + 1), store) << m.target;
    EXPECT_EQ(m.options.find("allow_other"), std::string::npos) << m.target << ": " << m.options;
  }
  EXPECT_EQ(seen, 2);
  EXPECT_EQ(run(cmkfs_binary() + " umount " + view).rc, 0);
}

// cmkfs init makes the store's files by name in a directory that a remote store's server can
// write: a link planted in one of those names before init creates it must not have init create
// or write the file it points at (LMDB creates its two files by name, following links). Raced
// for real: a thread plants a link in one name per round as fast as it can while init runs.
TEST_F(AttackTest, ALinkPlantedWhileInitMakesTheStoreIsNotFollowed) {
  std::string victim = dir + "/victim";
  write_file(victim, "precious");
  // What each round's link names, below the store: a new file, or the victim (LMDB's lock table).
  const std::vector<std::pair<std::string, std::string>> plants = {
      {"meta/data.mdb", dir + "/made-by-data"}, {"meta/lock.mdb", victim}, {"lock", dir + "/made-by-lock"}};
  const int rounds = 12;
  std::atomic<int> round{-1};
  std::atomic<int> planted[3] = {0, 0, 0};
  std::thread planter([&] {
    for (int r; (r = round.load()) < rounds;) {
      if (r < 0) continue;
      const auto& [name, target] = plants[r % plants.size()];
      std::string at = dir + "/s" + std::to_string(r) + "/" + name;
      if (::symlink(target.c_str(), at.c_str()) == 0) planted[r % plants.size()].fetch_add(1);
    }
  });
  int refused[3] = {0, 0, 0};
  for (int r = 0; r < rounds; ++r) {
    round = r;
    auto res = run(cmkfs_binary() + " init " + dir + "/s" + std::to_string(r) + " --local-key-file " + key);
    if (res.rc != 0) {
      EXPECT_TRUE(says(res, plants[r % plants.size()].first + " already exists")) << res.output;
      ++refused[r % plants.size()];
    }
  }
  round = rounds;
  planter.join();
  for (size_t k = 0; k < plants.size(); ++k) {
    EXPECT_GT(planted[k].load(), 0) << "no link planted as " << plants[k].first << ": that race was never run";
    EXPECT_GT(refused[k], 0) << "no init refused a link planted as " << plants[k].first;
  }
  EXPECT_FALSE(stdfs::exists(dir + "/made-by-data"));
  EXPECT_FALSE(stdfs::exists(dir + "/made-by-lock"));
  EXPECT_TRUE(read_file(victim) == "precious") << "LMDB wrote its lock table into the victim";
}

TEST_F(AttackTest, AStoreOthersCanWriteIsRefusedWithTheFix) {
  init();
  ::chmod(store.c_str(), 0777);
  auto r = try_mount();
  EXPECT_EQ(r.rc, 10) << r.output;
  EXPECT_TRUE(says(r, "chmod go-w " + store)) << r.output;
  ::chmod(store.c_str(), 0755);
  mount();
}

TEST_F(AttackTest, TrustBindsNoDataKeyGenerationThisHostNeverSaw) {
  init();
  // A generation with no fingerprint here, for the admin's next routine `trust` to bind.
  edit_superblock([](json& j) { j["dek_generation"] = 7; });
  auto r = run(cmkfs_binary() + " trust " + store + " --local-key-file " + key);
  EXPECT_EQ(r.rc, 11) << r.output;
  EXPECT_TRUE(says(r, "generation 7")) << r.output;
}

TEST_F(AttackTest, AnUnprivilegedUserGetsNoToken) {
  std::string query = url + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://127.0.0.1&client_id=" +
                      client_id;
  auto nobody = run("setpriv --reuid=65534 --regid=65534 --clear-groups curl -sk -H 'Metadata: true' '" + query + "'");
  EXPECT_EQ(nobody.output.find("access_token"), std::string::npos) << nobody.output;
  EXPECT_TRUE(says(nobody, "may not get tokens")) << nobody.output;
  auto root = run("curl -sk -H 'Metadata: true' '" + query + "'");
  EXPECT_TRUE(says(root, "access_token")) << root.output;
}

}  // namespace
}  // namespace cmkfs::testing
