#include "fs/admin/offline.h"

#include <ostream>

#include "crypto/base/hex.h"

namespace cmkfs::fs {

std::unique_ptr<OfflineStore> open_offline(const std::string& path, const char* reason, std::ostream& err,
                                           int* exit_code, bool writable) {
  auto fail = [&](const Status& s, int code) {
    err << "cmkfs: " << s.message() << "\n";
    *exit_code = code;
    return nullptr;
  };
  auto st = open_store(path, /*exclusive=*/true, /*read_only=*/!writable);
  if (!st.ok()) return fail(st.status(), open_store_exit_code(st.status()));
  OpenStore& s = **st;
  AuditLog audit(default_audit_path(s.super.store_id), to_hex(s.super.store_id));
  auto provider = bound_provider(s);
  if (!provider.ok()) return fail(provider.status(), kExitKey);
  auto unlocked = unlock(s, **provider, audit, reason);
  if (!unlocked.ok()) {
    Status why(unlocked.status().code(), "cannot unlock the store's data key: " + unlocked.status().message());
    return fail(why, unlock_exit_code(why));
  }
  auto o = std::make_unique<OfflineStore>();
  o->store = std::move(*st);
  Status installed = install_keys(o->keyring, o->store->super.dek_generation, std::move(*unlocked));
  if (!installed.ok()) return fail(installed, kExitKey);
  return o;
}

}  // namespace cmkfs::fs
