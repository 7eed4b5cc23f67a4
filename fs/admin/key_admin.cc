// The commands that change how a store's data key is protected: `cmkfs encryption enable` and
// `cmkfs encryption rotate-key`. Both rewrap the one data key; no data is re-encrypted.
#include "fs/admin/admin.h"

#include <filesystem>
#include <ostream>

#include "crypto/base/hex.h"
#include "fs/store/store.h"

namespace cmkfs::fs {

keyclient::KekConfig vault_kek(const VaultKeyOptions& v) {
  keyclient::KekConfig k;
  k.provider = keyclient::ProviderKind::kVault;
  k.key_identifier = v.key_encryption_key;
  while (k.key_identifier.size() > 1 && k.key_identifier.back() == '/') k.key_identifier.pop_back();
  k.identity = v.identity;
  k.identity_endpoint = v.identity_endpoint.empty() ? keyclient::kAzureImdsEndpoint : v.identity_endpoint;
  k.vault_ca = v.vault_ca.empty() ? "" : std::filesystem::absolute(v.vault_ca).string();
  return k;
}

namespace {

// Unwraps with the store's current key, then rewraps under `next`; audits both steps.
Status move_to(OpenStore& st, const keyclient::KekConfig& next, std::ostream& out) {
  AuditLog audit(default_audit_path(st.super.store_id), to_hex(st.super.store_id));
  auto current = bound_provider(st);
  if (!current.ok()) return current.status();
  auto unlocked = unlock(st, **current, audit, "rewrap");
  if (!unlocked.ok()) {
    return Status(unlocked.status().code(), "cannot unwrap the data key with the current key: " + unlocked.status().message());
  }
  const std::string& old_id = unlocked->wrapped.key_id;
  auto provider = keyclient::make_provider(next, st.super.store_id);
  if (!provider.ok()) return provider.status();
  CMKFS_RETURN_IF_ERROR((*provider)->validate());
  CMKFS_RETURN_IF_ERROR(bind_next(st, next));
  auto w = rewrap(st, unlocked->dek, next, **provider);
  audit.record("wrap", w.ok() ? w->key_id : next.key_identifier, w.ok() ? "ok" : "failed", {{"reason", "rewrap"}});
  if (!w.ok()) return w.status();
  audit.record("rotate", w->key_id, "ok", {{"from", old_id}});
  keyclient::KekConfig bound = next;
  bound.versioned_key_identifier = w->key_id;
  Status s = bind_store(st, bound, unlocked->dek);
  if (!s.ok()) {
    return Status(s.code(), "the store now uses " + w->key_id + ", but this host's binding could not be updated (" +
                                s.message() + "); bind it with cmkfs trust");
  }
  return show_encryption(st.paths.root, out);
}

}  // namespace

Status enable_vault_key(const std::string& store, const VaultKeyOptions& v, std::ostream& out) {
  auto st = open_store(store, /*exclusive=*/false, /*read_only=*/false);
  if (!st.ok()) return st.status();
  if ((*st)->kek.provider == keyclient::ProviderKind::kVault) {
    return Status::InvalidArgument("the store already uses a vault key; change it with cmkfs encryption rotate-key");
  }
  if (v.identity.empty()) return Status::InvalidArgument("--identity CLIENT_ID or [system] is required");
  return move_to(**st, vault_kek(v), out);
}

Status rotate_key(const std::string& store, VaultKeyOptions v, std::ostream& out) {
  auto st = open_store(store, /*exclusive=*/false, /*read_only=*/false);
  if (!st.ok()) return st.status();
  const keyclient::KekConfig& cur = (*st)->kek;
  if (cur.provider != keyclient::ProviderKind::kVault) {
    return Status::InvalidArgument("the store uses the local key; move it to a vault key with cmkfs encryption enable");
  }
  if (v.identity.empty()) v.identity = cur.identity;
  if (v.identity_endpoint.empty()) v.identity_endpoint = cur.identity_endpoint;
  if (v.vault_ca.empty()) v.vault_ca = cur.vault_ca;
  return move_to(**st, vault_kek(v), out);
}

}  // namespace cmkfs::fs
