// cmkfs trust: binding a store to this host with key settings the admin gives.
#include <filesystem>
#include <ostream>

#include "crypto/base/hex.h"
#include "crypto/keys.h"
#include "fs/admin/admin.h"
#include "fs/store/store.h"

namespace cmkfs::fs {
namespace {

// A store whose objects are in a cluster: where they are is the store's word (its superblock,
// authenticated by now); how this host reaches them is the admin's (`given`), or what the binding
// already said.
Status bind_objects(OpenStore& store, const ObjectsConfig& given) {
  auto place = ObjectsConfig::from_json(store.super.objects);
  if (!place.ok()) return place.status();
  const ObjectsConfig* known = store.binding && store.binding->objects.same_place(*place) ? &store.binding->objects : nullptr;
  // Each setting: the admin's, else the binding's, else the default.
  auto pick = [&](std::string ObjectsConfig::*field, const char* fallback) {
    const std::string& g = given.*field;
    (*place).*field = !g.empty() ? g : known ? (*known).*field : fallback;
  };
  if (place->kind == "rados") {
    pick(&ObjectsConfig::conf, "/etc/ceph/ceph.conf");
    pick(&ObjectsConfig::user, "admin");
  } else {
    pick(&ObjectsConfig::endpoint, "");
    pick(&ObjectsConfig::region, "us-east-1");
    pick(&ObjectsConfig::credentials, "");
    pick(&ObjectsConfig::ca, "");
  }
  place->make_paths_absolute();
  CMKFS_RETURN_IF_ERROR(place->check_host_part());
  auto reached = open_object_store(*place, -1);
  if (!reached.ok()) return Status(reached.status().code(), "cannot reach the store's objects: " + reached.status().message());
  auto b = update_binding(store.super.store_id, [&](HostBinding& b) {
    b.objects = *place;
    return Status::Ok();
  });
  if (!b.ok()) return b.status();
  store.binding = std::move(*b);
  return Status::Ok();
}

}  // namespace

Status trust_store(const TrustOptions& o, std::ostream& out) {
  if (o.local.given() == !o.vault.key_encryption_key.empty()) {
    return Status::InvalidArgument("cmkfs trust needs the store's key: --local-key-file PATH (or --local-key-command "
                                   "CMD), or --key-encryption-key ID --identity CLIENT_ID|[system]");
  }
  keyclient::KekConfig settings;
  if (o.local.given()) {
    settings = o.local.kek();
  } else {
    auto kek = customer_kek(o.vault);
    if (!kek.ok()) return kek.status();
    settings = std::move(*kek);
  }
  // A store whose metadata is in PostgreSQL: this host's directory of it, made if need be.
  const MetaConfig* meta = o.meta.lmdb() ? nullptr : &o.meta;
  if (meta != nullptr && !std::filesystem::exists(o.store + "/meta")) {
    CMKFS_RETURN_IF_ERROR(make_store_directory(o.store, o.meta));
  }
  auto st = open_store(o.store, /*exclusive=*/false, /*read_only=*/false, meta);
  if (!st.ok()) return st.status();
  OpenStore& store = **st;
  const std::string* expected = nullptr;
  if (store.binding) {
    auto fp = store.binding->fingerprints.find(store.super.dek_generation);
    if (fp != store.binding->fingerprints.end()) expected = &fp->second;
  }
  if (!o.fingerprint.empty()) {
    if (expected != nullptr && *expected != o.fingerprint) {
      return Status(EUCLEAN, "--fingerprint differs from the one this host already bound to the store");
    }
    expected = &o.fingerprint;
  }
  // The generation is the store's word: one this host never bound is no first use, but a data
  // key nobody here has seen.
  if (store.binding && expected == nullptr) {
    return Status(EUCLEAN, "this host's binding has no fingerprint for the store's data-key generation " +
                               std::to_string(store.super.dek_generation) +
                               "; give the one `encryption show` printed where it was made (--fingerprint)");
  }
  auto provider = command_provider(settings, store.super.store_id);
  if (!provider.ok()) return provider.status();
  AuditLog audit(default_audit_path(store.super.store_id), to_hex(store.super.store_id));
  auto unlocked = unwrap_with(store, settings, **provider, expected, audit, "trust");
  if (!unlocked.ok()) {
    return Status(unlocked.status().code(), "cannot bind the store: " + unlocked.status().message());
  }
  settings.versioned_key_identifier = settings.customer_managed() ? unlocked->wrapped.key_id : "";
  settings.last_rotation = store.kek.last_rotation;
  // The store's copy of the settings follows the host's (it is what `encryption show` prints).
  if (!store.kek.differences(settings).empty()) {
    auto keys = crypto::derive_store_keys(unlocked->dek);
    if (!keys.ok()) return keys.status();
    meta::Superblock sb = store.super;
    sb.kek = settings.to_json();
    sb.seal(keys->super_mac.bytes());
    auto txn = store.meta->begin(true);
    if (!txn.ok()) return txn.status();
    CMKFS_RETURN_IF_ERROR(txn->put_superblock(sb));
    CMKFS_RETURN_IF_ERROR(txn->commit());
    CMKFS_RETURN_IF_ERROR(store.meta->sync());
    store.super = std::move(sb);
    store.kek = settings;
  }
  bool first = expected == nullptr;
  CMKFS_RETURN_IF_ERROR(bind_store(store, settings, unlocked->dek));
  if (!store.meta_config.lmdb()) {
    MetaConfig given = store.meta_config;
    given.conninfo_file = std::filesystem::absolute(given.conninfo_file).string();
    auto b = update_binding(store.super.store_id, [&](HostBinding& b) {
      b.meta = given;
      return Status::Ok();
    });
    if (!b.ok()) return b.status();
    store.binding = std::move(*b);
  }
  if (!store.super.objects.empty()) CMKFS_RETURN_IF_ERROR(bind_objects(store, o.objects));
  audit.record("trust", unlocked->wrapped.key_id, "ok", {{"binding", binding_path(store.super.store_id)}});
  auto fp = crypto::dek_fingerprint(unlocked->dek);
  out << "store " << to_hex(store.super.store_id) << " (" << store.paths.root << ") is bound to this host in "
      << binding_path(store.super.store_id) << "\n"
      << "  key:         " << (settings.customer_managed() ? unlocked->wrapped.key_id : settings.key_file)
      << "\n  fingerprint: " << (fp.ok() ? *fp : "?") << (first ? " (first binding: compare it with the host the store came from)" : " (unchanged)")
      << "\n";
  return Status::Ok();
}

}  // namespace cmkfs::fs
