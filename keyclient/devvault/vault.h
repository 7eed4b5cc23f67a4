// The state of the local development vault: keys with versions and soft delete, identities and
// access policies, persisted in DIR/state.json. Private keys are never stored in the clear: each
// version's PEM is sealed (AES-256-GCM, AAD = name and version) under DIR/master.key, or, for
// RSA-HSM and EC-HSM keys, under a master key of their own, DIR/hsm.key (cmkfs-vault has no
// hardware: these keys are software keys kept apart, protected by that file's permissions). Operations answer in the Azure Key Vault keys
// REST shapes (KeyBundle, error JSON); the HTTP layer (server.cc) adds auth and routing.
//
// Thread-safety: none; the server serialises every call with one mutex.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "crypto/base/status.h"
#include "crypto/crypto.h"
#include "keyclient/devvault/apps.h"
#include "keyclient/devvault/network.h"
#include "keyclient/devvault/principal.h"

namespace cmkfs::devvault {

using nlohmann::json;

// An HTTP answer: status and JSON body (error bodies in Azure's {"error":{code,message,innererror}}).
struct Reply {
  int status = 200;
  json body = json::object();
  static Reply error(int status, std::string code, std::string message, std::string inner = "");
};


class Vault {
 public:
  // Loads DIR/state.json, or starts an empty vault with a system-assigned identity.
  static Result<std::unique_ptr<Vault>> open(const std::string& dir, bool purge_protection);
  void set_base_url(std::string url) { base_url_ = std::move(url); }
  const std::string& base_url() const { return base_url_; }

  Principal create_identity(const std::string& name);
  std::optional<Principal> identity_by_client_id(const std::string& client_id) const;
  const Principal& system_identity() const { return system_; }
  std::vector<Principal> identities() const;
  // App registrations (apps.h); changes are kept with save_apps().
  AppRegistry& apps() { return apps_; }
  const AppRegistry& apps() const { return apps_; }
  Status save_apps() const { return save(); }
  void set_policy(const std::string& principal_id, const std::set<std::string>& permissions);
  bool delete_policy(const std::string& principal_id);
  bool allowed(const std::string& principal_id, const std::string& permission) const;
  // The firewall (network.h); set_network keeps the change.
  const NetworkAcls& network() const { return network_; }
  Status set_network(NetworkAcls acls);

  Reply create_key(const std::string& name, const json& body);
  Reply get_key(const std::string& name, const std::string& version) const;
  Reply list_versions(const std::string& name, size_t max_results, size_t skip) const;
  Reply rotate_key(const std::string& name);
  Reply update_key(const std::string& name, const std::string& version, const json& body);
  Reply delete_key(const std::string& name);
  Reply get_deleted_key(const std::string& name) const;
  Reply recover_key(const std::string& name);
  Reply purge_key(const std::string& name);
  // wrapkey / unwrapkey with RSA-OAEP-256 or RSA-OAEP. `version` empty means the latest.
  Reply wrap(const std::string& name, const std::string& version, const json& body, bool unwrap) const;

  // For the console: every key, live or soft-deleted, as {name, kty, versions: [{version,
  // enabled, created}], deleted, deletedDate, scheduledPurgeDate} (versions oldest first).
  json key_list() const;
  const std::map<std::string, std::set<std::string>>& policies() const { return policies_; }
  bool purge_protection() const { return purge_protection_; }

  // The key version a request names, for the audit log ("" when unknown).
  std::string resolve_version(const std::string& name, const std::string& version) const;

 private:
  struct KeyVersion {
    std::string version, kty, pem;
    std::vector<std::string> key_ops;
    bool enabled = true;
    int64_t created = 0, updated = 0, nbf = 0, exp = 0;
  };
  struct Key {
    std::vector<KeyVersion> versions;  // oldest first
    bool deleted = false;
    int64_t deleted_date = 0, scheduled_purge = 0;
  };

  Vault(std::string dir, bool purge_protection) : dir_(std::move(dir)), purge_protection_(purge_protection) {}
  const crypto::SecretBytes& master_for(const std::string& kty) const;
  Result<std::string> seal_pem(const std::string& name, const KeyVersion& v) const;
  Result<std::string> open_pem(const std::string& name, const std::string& version, const std::string& kty,
                               const std::string& sealed) const;
  Status save() const;
  json to_json() const;
  Status load(const json& j);
  Result<KeyVersion> new_version(const std::string& kty, int size, const std::string& crv, const json& body) const;
  json bundle(const std::string& name, const KeyVersion& v) const;
  json attributes(const KeyVersion& v) const;
  const Key* live_key(const std::string& name) const;
  const KeyVersion* find_version(const Key& k, const std::string& version) const;
  std::string kid(const std::string& name, const std::string& version) const;
  Reply not_found(const std::string& name) const;

  std::string dir_;
  bool purge_protection_;
  crypto::SecretBytes master_, hsm_master_;
  std::string base_url_;
  Principal system_;
  std::vector<Principal> identities_;
  AppRegistry apps_;
  std::map<std::string, std::set<std::string>> policies_;
  NetworkAcls network_;
  std::map<std::string, Key> keys_;
};

// Names as Key Vault takes them: a key's 1 to 127 of 0-9, a-z, A-Z and -; an identity's 1 to 64
// of those and _ (what the console and templates accept).
bool valid_key_name(const std::string& name);
bool valid_identity_name(const std::string& name);

int64_t unix_now();
std::string random_hex(size_t bytes);
std::string random_guid();

}  // namespace cmkfs::devvault
