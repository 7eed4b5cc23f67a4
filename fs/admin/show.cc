// cmkfs encryption show: the store's key settings in the shape of `az acr encryption show`, and
// the live key state a running mount publishes.
#include <signal.h>

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "crypto/base/hex.h"
#include "fs/admin/admin.h"
#include "fs/store/store.h"

namespace cmkfs::fs {

std::string iso8601(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

const char* key_source(keyclient::ProviderKind k) {
  switch (k) {
    case keyclient::ProviderKind::kVault: return "Microsoft.KeyVault";
    case keyclient::ProviderKind::kPkcs11: return "PKCS#11";
    case keyclient::ProviderKind::kKms2: return "KMSv2";
    case keyclient::ProviderKind::kLocal: break;
  }
  return "cmkfs.local";
}

}  // namespace

Result<nlohmann::json> encryption_settings(const std::string& store_dir) {
  auto store = open_store(store_dir, /*exclusive=*/false, /*read_only=*/true);
  if (!store.ok()) return store.status();
  const OpenStore& st = **store;
  using nlohmann::json;
  const keyclient::KekConfig& k = st.kek;
  bool vault = k.customer_managed();
  json props = json::object();
  bool azure = k.provider == keyclient::ProviderKind::kVault;
  props["identity"] = azure ? json(k.identity) : json(nullptr);
  props["credential"] = azure ? json(k.credential) : json(nullptr);
  if (azure && !k.tenant_id.empty()) props["tenantId"] = k.tenant_id;
  props["keyIdentifier"] = vault ? json(k.key_identifier) : json(nullptr);
  props["keyRotationEnabled"] = vault ? json(k.rotation_enabled()) : json(nullptr);
  props["lastKeyRotationTimestamp"] = vault && k.last_rotation != 0 ? json(iso8601(k.last_rotation)) : json(nullptr);
  props["versionedKeyIdentifier"] = vault ? json(k.versioned_key_identifier) : json(nullptr);
  json j{{"status", vault ? "enabled" : "disabled"},
         {"keyVaultProperties", props},
         {"keySource", key_source(k.provider)},
         {"formatVersion", st.super.format_version},
         {"cipher", "AES-256-GCM"},
         {"chunkSize", st.super.chunk_size},
         {"storeId", to_hex(st.super.store_id)}};
  if (!vault && k.key_command.empty()) j["localKeyFile"] = k.key_file;
  if (!vault && !k.key_command.empty()) j["localKeyCommand"] = k.key_command;
  j["dataKeyGeneration"] = st.super.dek_generation;
  // Where the sealed records and the sealed chunks are kept; how this host reaches a cluster.
  json objects{{"kind", "local"}, {"path", st.paths.objects}};
  if (!st.super.objects.empty()) objects = json::parse(st.super.objects, nullptr, false);
  if (st.binding && st.binding->objects.kind == "rados") {
    objects["cephConf"] = st.binding->objects.conf;
    objects["cephUser"] = st.binding->objects.user;
  }
  if (st.binding && st.binding->objects.kind == "s3") {
    objects["endpoint"] = st.binding->objects.endpoint;
    objects["region"] = st.binding->objects.region;
    objects["credentials"] = st.binding->objects.credentials;
    if (!st.binding->objects.ca.empty()) objects["ca"] = st.binding->objects.ca;
  }
  json metadata = st.meta_config.lmdb() ? json{{"kind", "lmdb"}, {"path", st.paths.meta}}
                                        : json{{"kind", st.meta_config.engine},
                                               {"schema", st.meta_config.schema},
                                               {"connection", st.meta_config.conninfo_file}};
  j["engines"] = json{{"metadata", metadata}, {"objects", objects}};
  // This host's binding: where it is and the fingerprint it holds, to compare across hosts.
  json binding{{"path", binding_path(st.super.store_id)}};
  if (st.binding) {
    auto fp = st.binding->fingerprints.find(st.super.dek_generation);
    binding["dataKeyFingerprint"] = fp == st.binding->fingerprints.end() ? json(nullptr) : json(fp->second);
    binding["matchesStore"] = st.kek.differences(st.binding->kek).empty();
  } else {
    binding["error"] = st.binding_error.message();
  }
  j["hostBinding"] = binding;
  // A mounted store publishes its live key state; a stale file (daemon gone) is ignored.
  std::ifstream status(status_path(st.super.store_id, st.paths.root));
  json live = json::parse(status, nullptr, false);
  if (status && live.is_object() && live.contains("pid") && live["pid"].is_number_integer() &&
      ::kill(live["pid"].get<int>(), 0) == 0) {
    auto when = [&](const char* key) { return live[key].is_number_integer() ? json(iso8601(live[key].get<int64_t>())) : json(nullptr); };
    j["liveKeyState"] = json{{"state", live["state"]},
                             {"since", when("since")},
                             {"lastSuccessfulCheck", when("lastSuccessfulCheck")},
                             {"mountpoint", live["mountpoint"]},
                             {"pid", live["pid"]},
                             {"dataKeyGeneration", live.value("dataKeyGeneration", 0)}};
    if (live.contains("dataKeyRotation")) j["liveKeyState"]["dataKeyRotation"] = live["dataKeyRotation"];
    if (live.contains("auditLog") && live["auditLog"].is_string()) j["liveKeyState"]["auditLog"] = live["auditLog"];
  }
  return j;
}

Status show_encryption(const std::string& store_dir, std::ostream& out) {
  auto j = encryption_settings(store_dir);
  if (!j.ok()) return j.status();
  // ensure_ascii: a hostile store's strings may hold C1 controls, which dump() leaves raw.
  out << j->dump(2, ' ', /*ensure_ascii=*/true, nlohmann::json::error_handler_t::replace) << "\n";
  return Status::Ok();
}

}  // namespace cmkfs::fs
