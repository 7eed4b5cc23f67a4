// cmkfs encryption rotate-data-key: a new data key, and everything moved under it.
#include <ostream>

#include "crypto/base/hex.h"
#include "fs/admin/admin.h"
#include "fs/admin/rekey.h"
#include "fs/core/filesystem.h"
#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

// Re-encrypts an unmounted store (opened exclusively, rotation started) through the mount's own
// code, then forgets the old generations and compacts the metadata.
Status rekey_offline(OpenStore& st, keyclient::KeyProvider& provider, AuditLog& audit, std::ostream& out) {
  Keyring keyring;
  {
    auto unlocked = unlock(st, provider, audit, "data-key rotation");
    if (!unlocked.ok()) return unlocked.status();
    CMKFS_RETURN_IF_ERROR(install_keys(keyring, st.super.dek_generation, std::move(*unlocked)));
  }
  Filesystem fsys(st, keyring);
  CMKFS_RETURN_IF_ERROR(fsys.start());
  uint64_t files = 0, records = 0;
  for (;;) {
    auto step = fsys.rekey_step(64, 4096);
    if (!step.ok()) {
      (void)fsys.shutdown();
      return step.status();
    }
    files += step->files_moved;
    records += step->records_resealed;
    if (step->files_moved > 0) out << "  re-encrypted " << files << " files, " << step->files_left << " to go\n";
    if (step->done) break;
  }
  CMKFS_RETURN_IF_ERROR(fsys.shutdown());
  {
    auto txn = st.meta->begin(true);  // what resealing spent of the new meta key's nonce budget
    if (txn.ok() && txn->put_seal_count(st.super.dek_generation, st.meta->seals()).ok()) (void)txn->commit();
  }
  CMKFS_RETURN_IF_ERROR(finish_dek_rotation(st, audit));
  CMKFS_RETURN_IF_ERROR(compact_metadata(st));
  out << "data key generation " << st.super.dek_generation << ": " << files << " files re-encrypted, " << records
      << " records resealed; older generations forgotten, metadata compacted\n";
  return Status::Ok();
}

}  // namespace

Status rotate_data_key_offline(OpenStore& s, std::ostream& out) {
  AuditLog audit(default_audit_path(s.super.store_id), to_hex(s.super.store_id));
  auto provider = bound_provider(s);
  if (!provider.ok()) return provider.status();
  auto unlocked = unlock(s, **provider, audit, "data-key rotation");
  if (!unlocked.ok()) return unlocked.status();
  if (unlocked->older.empty()) {
    auto to = start_dek_rotation(s, **provider, *unlocked, audit);
    if (!to.ok()) return to.status();
  }
  return rekey_offline(s, **provider, audit, out);
}

Status rotate_data_key(const std::string& store, std::ostream& out) {
  auto st = open_store(store, /*exclusive=*/true, /*read_only=*/false);
  bool mounted = !st.ok() && st.status().code() == EBUSY;
  if (mounted) st = open_store(store, /*exclusive=*/false, /*read_only=*/false);
  if (!st.ok()) return st.status();
  OpenStore& s = **st;
  AuditLog audit(default_audit_path(s.super.store_id), to_hex(s.super.store_id));
  auto provider = bound_provider(s);
  if (!provider.ok()) return provider.status();
  auto unlocked = unlock(s, **provider, audit, "data-key rotation");
  if (!unlocked.ok()) return unlocked.status();
  if (!unlocked->older.empty()) {
    if (mounted) return Status(EBUSY, "a data-key rotation is already in progress; cmkfs encryption show follows it");
    out << "finishing the data-key rotation to generation " << s.super.dek_generation << "\n";
    return rekey_offline(s, **provider, audit, out);
  }
  auto to = start_dek_rotation(s, **provider, *unlocked, audit);
  if (!to.ok()) return to.status();
  out << "data key generation " << *to << " started for store " << to_hex(s.super.store_id) << "\n";
  if (mounted) {
    out << "the mount takes it at its next key check and re-encrypts the store in the background "
           "(cmkfs encryption show: dataKeyRotation)\n";
    return Status::Ok();
  }
  return rekey_offline(s, **provider, audit, out);
}

}  // namespace cmkfs::fs
