// Data-key rotation: the store's side (new generation, forgetting old ones, compaction). Moving
// files and records to the new generation is the core's (Filesystem::rekey_step).
#include <fcntl.h>
#include <sys/file.h>

#include "crypto/base/hex.h"
#include "crypto/keys.h"
#include "fs/store/private_fs.h"
#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

// A plaintext marker in the superblock table: the metadata holds deleted key material in free
// pages until compacted. Losing it only delays compaction to the next rotation.
constexpr std::string_view kCompactKey = "compact-pending";

}  // namespace

Result<uint32_t> start_dek_rotation(OpenStore& store, keyclient::KeyProvider& provider, const Unlocked& current,
                                    AuditLog& audit) {
  if (!store.binding) return Status(ENOKEY, "store " + to_hex(store.super.store_id) + " is not bound to this host");
  uint32_t from = store.super.dek_generation, to = from + 1;
  auto dek = crypto::random_key();
  if (!dek.ok()) return dek.status();
  auto wrapped = provider.wrap(*dek);
  audit.record("wrap", wrapped.ok() ? wrapped->key_id : store.kek.versioned_key_identifier, wrapped.ok() ? "ok" : "failed",
               {{"reason", "data-key rotation"}, {"generation", to}});
  if (!wrapped.ok()) return wrapped.status();
  // The name key stays the store's first: carried forward sealed under the new meta key.
  crypto::SecretBytes name = current.name_key.clone();
  if (name.empty()) {
    auto derived = crypto::derive_name_key(current.dek);
    if (!derived.ok()) return derived.status();
    name = std::move(*derived);
  }
  auto keys = crypto::derive_store_keys(*dek, name.bytes());
  if (!keys.ok()) return keys.status();
  // Bound first: a crash after the commit must find the new generation's fingerprint.
  auto fp = crypto::dek_fingerprint(*dek);
  if (!fp.ok()) return fp.status();
  auto bound = update_binding(store.super.store_id, [&](HostBinding& b) {
    b.fingerprints[to] = *fp;
    return Status::Ok();
  });
  if (!bound.ok()) return bound.status();
  store.binding = std::move(*bound);

  meta::Superblock sb = store.super;
  sb.dek_generation = to;
  sb.seal(keys->super_mac.bytes());
  auto txn = store.meta->begin(true);
  if (!txn.ok()) return txn.status();
  CMKFS_RETURN_IF_ERROR(txn->put_wrapped_dek(to, wrapped->to_json()));
  CMKFS_RETURN_IF_ERROR(txn->put_name_key(to, keys->meta, name.bytes()));
  CMKFS_RETURN_IF_ERROR(txn->put_superblock(sb));
  CMKFS_RETURN_IF_ERROR(txn->commit());
  CMKFS_RETURN_IF_ERROR(store.meta->sync());
  store.super = std::move(sb);
  // Committed: from now on a store showing an older generation has been rolled back.
  auto committed = update_binding(store.super.store_id, [&](HostBinding& b) {
    b.generation = std::max(b.generation, to);
    return Status::Ok();
  });
  if (!committed.ok()) return committed.status();
  store.binding = std::move(*committed);
  audit.record("rotate-data-key", wrapped->key_id, "started", {{"from", from}, {"to", to}});
  return to;
}

Status finish_dek_rotation(OpenStore& store, AuditLog& audit) {
  uint32_t current = store.super.dek_generation;
  std::vector<uint32_t> older;
  {
    auto txn = store.meta->begin(true);
    if (!txn.ok()) return txn.status();
    auto gens = txn->wrapped_generations();
    if (!gens.ok()) return gens.status();
    for (uint32_t g : *gens) {
      if (g >= current) continue;  // a newer one: a rotation started since
      CMKFS_RETURN_IF_ERROR(txn->delete_wrapped_dek(g));
      CMKFS_RETURN_IF_ERROR(txn->delete_name_key(g));
      older.push_back(g);
    }
    CMKFS_RETURN_IF_ERROR(txn->put_raw_marker(kCompactKey, "1"));
    CMKFS_RETURN_IF_ERROR(txn->commit());
  }
  CMKFS_RETURN_IF_ERROR(store.meta->sync());
  auto bound = update_binding(store.super.store_id, [&](HostBinding& b) {
    for (auto it = b.fingerprints.begin(); it != b.fingerprints.end();) {
      it = it->first >= current ? std::next(it) : b.fingerprints.erase(it);
    }
    return Status::Ok();
  });
  if (!bound.ok()) return bound.status();
  store.binding = std::move(*bound);
  audit.record("rotate-data-key", store.kek.versioned_key_identifier, "finished",
               {{"generation", current}, {"forgotten", older}});
  return Status::Ok();
}

bool compaction_pending(OpenStore& store) {
  auto txn = store.meta->begin(false);
  return txn.ok() && txn->raw_marker(kCompactKey).ok();
}

Status compact_metadata(OpenStore& store) {
  if (!store.meta_config.lmdb()) {  // compacted in place (VACUUM FULL)
    CMKFS_RETURN_IF_ERROR(store.meta->compact_in_place());
    auto txn = store.meta->begin(true);
    if (!txn.ok()) return txn.status();
    CMKFS_RETURN_IF_ERROR(txn->delete_raw_marker(kCompactKey));
    return txn->commit();
  }
  // Nobody may have the metadata open meanwhile (commands beside a mount hold this shared).
  if (::flock(store.meta_dir_fd, LOCK_EX | LOCK_NB) != 0) {
    return Status(EBUSY, "another cmkfs command has the store's metadata open; the old data keys' wrapped copies "
                         "stay in it until the next unmount compacts it");
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::flock(fd, LOCK_UN); }
  } unlock_guard{store.meta_dir_fd};
  const std::string tmp = "data.mdb.compact";
  ::unlinkat(store.meta_dir_fd, tmp.c_str(), 0);
  {
    auto fd = open_private_file(store.meta_dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL, store.paths.meta + "/" + tmp);
    if (!fd.ok()) return fd.status();
    CMKFS_RETURN_IF_ERROR(store.meta->copy_compacted(fd->get()));
    if (::fsync(fd->get()) != 0) return Status::IOError(errno, "syncing the compacted metadata");
  }
  bool read_only = store.meta->read_only();
  store.meta.reset();
  if (::renameat(store.meta_dir_fd, tmp.c_str(), store.meta_dir_fd, "data.mdb") != 0) {
    return Status::IOError(errno, "replacing the metadata with its compacted copy");
  }
  ::fsync(store.meta_dir_fd);
  auto meta = open_checked_meta(store, read_only);
  if (!meta.ok()) return meta.status();
  store.meta = std::move(*meta);
  auto txn = store.meta->begin(true);
  if (!txn.ok()) return txn.status();
  CMKFS_RETURN_IF_ERROR(txn->delete_raw_marker(kCompactKey));
  CMKFS_RETURN_IF_ERROR(txn->commit());
  return store.meta->sync();
}

}  // namespace cmkfs::fs
