// The commands that change how a store's data key is protected: `cmkfs encryption enable` and
// `cmkfs encryption rotate-key`. Both rewrap the one data key; no data is re-encrypted.
#include "fs/admin/admin.h"
#include "fs/admin/rekey.h"

#include <filesystem>
#include <ostream>

#include "crypto/base/hex.h"
#include "fs/store/store.h"
#include "keyclient/credential.h"
#include "keyclient/pkcs11_uri.h"
#include "keyclient/vault_client.h"

namespace cmkfs::fs {

keyclient::KekConfig LocalKeyOptions::kek() const {
  keyclient::KekConfig k;
  k.key_file = file.empty() ? "" : std::filesystem::absolute(file).string();
  k.key_command = command;
  return k;
}

Status check_key_identifier(const std::string& id) {
  if (keyclient::Pkcs11Uri::looks_like(id)) return keyclient::Pkcs11Uri::parse(id).status();
  if (id.rfind("kms2:", 0) == 0) return keyclient::kms2_socket_path(id).status();
  if (keyclient::KeyId::parse(id)) return Status::Ok();
  if (id.rfind("http://", 0) == 0) return Status::InvalidArgument("'" + id + "': a key vault is reached over https only");
  return Status::InvalidArgument("'" + id + "' is not a key identifier: https://VAULT/keys/NAME[/VERSION], "
                                 "a pkcs11: URI, or kms2:///path/plugin.sock");
}

Result<keyclient::KekConfig> customer_kek(const VaultKeyOptions& v) {
  keyclient::KekConfig k;
  bool pkcs11 = keyclient::Pkcs11Uri::looks_like(v.key_encryption_key);
  bool kms2 = v.key_encryption_key.rfind("kms2:", 0) == 0;
  if ((pkcs11 || kms2) && v.any_vault_option()) {
    return Status::InvalidArgument("--credential, --identity and the other identity options apply to vault keys only");
  }
  if (kms2) {
    auto path = keyclient::kms2_socket_path(v.key_encryption_key);
    if (!path.ok()) return path.status();
    k.provider = keyclient::ProviderKind::kKms2;
    k.key_identifier = "kms2://" + *path;
    return k;
  }
  if (pkcs11) {
    auto uri = keyclient::Pkcs11Uri::parse(v.key_encryption_key);
    if (!uri.ok()) return uri.status();
    k.provider = keyclient::ProviderKind::kPkcs11;
    k.key_identifier = uri->str();
    return k;
  }
  k.provider = keyclient::ProviderKind::kVault;
  k.key_identifier = v.key_encryption_key;
  while (k.key_identifier.size() > 1 && k.key_identifier.back() == '/') k.key_identifier.pop_back();
  k.vault_ca = v.vault_ca.empty() ? "" : std::filesystem::absolute(v.vault_ca).string();
  auto kind = keyclient::credential_kind(v.credential.empty() ? "managed-identity" : v.credential);
  if (!kind) {
    return Status::InvalidArgument("--credential " + v.credential + ": one of managed-identity, app-service, "
                                   "workload-identity, client-secret, client-certificate");
  }
  // What azure-identity reads from the environment, taken once here and pinned with the settings.
  auto env = [](const char* name) { const char* e = std::getenv(name); return std::string(e ? e : ""); };
  auto absolute = [](const std::string& p) { return p.empty() ? p : std::filesystem::absolute(p).string(); };
  keyclient::Credential c{*kind, v.identity, v.identity_endpoint, v.tenant_id, absolute(v.credential_file)};
  if (c.entra()) {
    if (c.client_id.empty()) c.client_id = env("AZURE_CLIENT_ID");
    if (c.tenant_id.empty()) c.tenant_id = env("AZURE_TENANT_ID");
    c.endpoint = !v.authority_host.empty() ? v.authority_host : env("AZURE_AUTHORITY_HOST");
    if (c.endpoint.empty()) c.endpoint = keyclient::kAzureAuthorityHost;
    if (c.kind == keyclient::CredentialKind::kWorkloadIdentity && c.file.empty()) {
      c.file = env("AZURE_FEDERATED_TOKEN_FILE");
    }
  } else {
    if (!v.authority_host.empty() || !v.tenant_id.empty()) {
      return Status::InvalidArgument("--authority-host and --tenant-id apply to Entra credentials (workload-identity, "
                                     "client-secret, client-certificate)");
    }
    if (c.endpoint.empty()) {
      c.endpoint = c.kind == keyclient::CredentialKind::kAppService ? env("IDENTITY_ENDPOINT") : keyclient::kAzureImdsEndpoint;
    }
  }
  if (c.client_id.empty()) {
    return Status::InvalidArgument(c.entra() ? "a vault key with " + std::string(keyclient::to_string(c.kind)) +
                                                   " needs the app's client id: --identity CLIENT_ID (or AZURE_CLIENT_ID)"
                                             : "a vault key needs --identity CLIENT_ID or '[system]'");
  }
  CMKFS_RETURN_IF_ERROR(c.check());
  k.credential = keyclient::to_string(c.kind);
  k.identity = c.client_id;
  k.identity_endpoint = c.endpoint;
  k.tenant_id = c.tenant_id;
  k.credential_file = c.file;
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
  if (!unlocked->older.empty()) {
    return Status(EBUSY, "a data-key rotation is in progress; change the key once it has finished "
                         "(cmkfs encryption show), or finish it with encryption rotate-data-key on the unmounted store");
  }
  const std::string& old_id = unlocked->wrapped.key_id;
  auto provider = command_provider(next, st.super.store_id);
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
  (void)out;
  return Status::Ok();
}

// Whether another store bound on this host uses local key file `path`.
bool key_file_in_use(const std::string& path, const Id128& except) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(host_config_dir() + "/stores", ec)) {
    auto id = from_hex(e.path().stem().string());
    if (!id || id->size() != except.size() || std::equal(id->begin(), id->end(), except.begin())) continue;
    Id128 other{};
    std::copy(id->begin(), id->end(), other.begin());
    auto b = load_binding(other);
    if (!b.ok() || (b->kek.provider == keyclient::ProviderKind::kLocal && b->kek.key_file == path)) return true;
  }
  return false;
}

}  // namespace

// The local key protected the data key the store had until now: a new data key, under the vault
// key alone, replaces it (every file re-encrypted, the metadata compacted), and then the local key
// file, which nothing needs any more, is deleted.
Status enable_vault_key(const std::string& store, const VaultKeyOptions& v, std::ostream& out) {
  auto st = open_store(store, /*exclusive=*/true, /*read_only=*/false);
  if (!st.ok() && st.status().code() == EBUSY) {
    return Status(EBUSY, "unmount the store first: enabling a vault key re-encrypts it under a new data key");
  }
  if (!st.ok()) return st.status();
  if ((*st)->kek.customer_managed()) {
    return Status::InvalidArgument(std::string("the store already uses a ") + keyclient::to_string((*st)->kek.provider) +
                                   " key; change it with cmkfs encryption rotate-key");
  }
  auto next = customer_kek(v);
  if (!next.ok()) return next.status();
  std::string key_file = (*st)->binding ? (*st)->binding->kek.key_file : "";
  CMKFS_RETURN_IF_ERROR(move_to(**st, *next, out));
  CMKFS_RETURN_IF_ERROR(rotate_data_key_offline(**st, out));
  if (!key_file.empty() && !key_file_in_use(key_file, (*st)->super.store_id)) {
    std::error_code ec;
    std::filesystem::remove(key_file, ec);
    if (ec) out << "the local key file " << key_file << " is no longer needed; delete it (" << ec.message() << ")\n";
    else out << "deleted the local key file " << key_file << ": nothing needs it any more\n";
  }
  return show_encryption(store, out);
}

namespace {

// A local-key store moved to another key file or command; the old file is named as no longer needed.
Status rotate_local_key(OpenStore& st, const LocalKeyOptions& local, std::ostream& out) {
  if (st.kek.customer_managed()) {
    return Status::InvalidArgument("the store uses a customer-managed key; --local-key-file applies to local-key stores");
  }
  keyclient::KekConfig next = local.kek();
  std::string old = st.binding ? st.binding->kek.key_file : "";
  bool created = false;
  if (!next.key_file.empty() && !std::filesystem::exists(next.key_file)) {
    CMKFS_RETURN_IF_ERROR(keyclient::create_local_key_file(next.key_file));
    created = true;
  }
  Status s = move_to(st, next, out);
  if (!s.ok()) {
    if (created) std::filesystem::remove(next.key_file);
    return s;
  }
  out << "the data key is now wrapped by "
      << (next.key_command.empty() ? "local key file " + next.key_file + (created ? " (created, mode 0600)" : "")
                                   : std::string("the key the local key command prints"))
      << "\n";
  if (!old.empty() && old != next.key_file && !key_file_in_use(old, st.super.store_id)) {
    out << "the old key file " << old << " is no longer needed: delete it when you no longer need older backups\n";
  }
  return Status::Ok();
}

}  // namespace

Status rotate_key(const std::string& store, VaultKeyOptions v, const LocalKeyOptions& local, std::ostream& out) {
  auto st = open_store(store, /*exclusive=*/false, /*read_only=*/false);
  if (!st.ok()) return st.status();
  if (local.given()) {
    if (!v.key_encryption_key.empty()) return Status::InvalidArgument("give a local key or a --key-encryption-key, not both");
    CMKFS_RETURN_IF_ERROR(rotate_local_key(**st, local, out));
    return show_encryption(store, out);
  }
  if (v.key_encryption_key.empty()) return Status::InvalidArgument("rotate-key needs --key-encryption-key or --local-key-file");
  const keyclient::KekConfig& cur = (*st)->kek;
  if (!cur.customer_managed()) {
    return Status::InvalidArgument("the store uses the local key: rotate it with --local-key-file NEW, or move it to a "
                                   "customer-managed key with cmkfs encryption enable");
  }
  // A vault key keeps the identity and endpoints in use unless new ones are given.
  if (cur.provider == keyclient::ProviderKind::kVault && v.key_encryption_key.rfind("https:", 0) == 0) {
    if (v.credential.empty()) {  // the same credential, unless another is named
      v.credential = cur.credential;
      if (v.identity.empty()) v.identity = cur.identity;
      bool entra = keyclient::credential_kind(cur.credential) >= keyclient::CredentialKind::kWorkloadIdentity;
      if (entra && v.authority_host.empty()) v.authority_host = cur.identity_endpoint;
      if (!entra && v.identity_endpoint.empty()) v.identity_endpoint = cur.identity_endpoint;
      if (v.tenant_id.empty()) v.tenant_id = cur.tenant_id;
      if (v.credential_file.empty()) v.credential_file = cur.credential_file;
    }
    if (v.vault_ca.empty()) v.vault_ca = cur.vault_ca;
  }
  auto next = customer_kek(v);
  if (!next.ok()) return next.status();
  CMKFS_RETURN_IF_ERROR(move_to(**st, *next, out));
  return show_encryption(store, out);
}

}  // namespace cmkfs::fs
