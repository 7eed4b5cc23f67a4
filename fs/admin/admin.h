// fs/admin: the commands that act on a store without serving it: fsck and inspect (offline, with
// the key), encryption show, and the changes to how the data key is protected (encryption enable,
// encryption rotate-key), which also work while the store is mounted.
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crypto/base/status.h"
#include "fs/store/store.h"
#include "keyclient/keyclient.h"

namespace cmkfs::fs {

// The customer-managed key options shared by init, trust, encryption enable and rotate-key.
struct VaultKeyOptions {
  std::string key_encryption_key;  // https://VAULT/keys/NAME[/VERSION], or a pkcs11: URI
  // A vault key only:
  std::string credential;          // managed-identity (default), app-service, workload-identity, client-secret,
                                   // client-certificate
  std::string identity;            // client id of the identity or app, or [system]
  std::string identity_endpoint;   // managed identity: default the Azure IMDS address
  std::string authority_host;      // Entra credentials: default $AZURE_AUTHORITY_HOST, else login.microsoftonline.com
  std::string tenant_id;           // Entra credentials: default $AZURE_TENANT_ID
  std::string credential_file;     // the secret, certificate or federated token (default $AZURE_FEDERATED_TOKEN_FILE)
  std::string vault_ca;            // CA file for the vault's and identity endpoint's TLS

  bool any_vault_option() const {
    return !credential.empty() || !identity.empty() || !identity_endpoint.empty() || !authority_host.empty() ||
           !tenant_id.empty() || !credential_file.empty() || !vault_ca.empty();
  }
};

// The local key options of rotate-key and trust: a key file, or a program that prints the key.
struct LocalKeyOptions {
  std::string file;
  std::string command;
  bool given() const { return !file.empty() || !command.empty(); }
  keyclient::KekConfig kek() const;  // the file's path made absolute
};

// The key settings the options describe: the provider named by the key identifier's scheme, a
// pkcs11: URI in its canonical form, a vault's relative CA path made absolute and IMDS by
// default. EINVAL when a required option is missing or one does not apply to the key.
Result<keyclient::KekConfig> customer_kek(const VaultKeyOptions& v);
// Whether `id` is a key identifier at all (https://VAULT/keys/NAME[/VERSION], pkcs11:, kms2://):
// EINVAL with the reason, a usage error.
Status check_key_identifier(const std::string& id);

// Unix seconds as the JSON output shows times, ISO 8601 in UTC as `az` prints them.
std::string iso8601(int64_t unix_seconds);

// Checks an unmounted store: every record, link count and chunk (fsck.h), naming the path of
// each problem (and in a registry its repository and blob); progress on a terminal. Returns the
// exit code: 0 when clean, kExitNotAStore when problems were found (after --repair: remain).
struct FsckOptions {
  bool json = false;    // the report as JSON
  bool repair = false;  // fix what is safe: leaked objects, objects longer than their file, crash leftovers
};
int run_fsck(const std::string& store, const FsckOptions& opts, std::ostream& out, std::ostream& err);

// What a store holds, as JSON: read with its key when unmounted, through `mountpoint` when
// mounted there (`store` is then its directory). Returns the exit code.
int run_inspect(const std::string& store, const std::string& mountpoint, const std::string& registry_root,
                std::ostream& out, std::ostream& err);

// cmkfs inspect --image REF: one image's manifest, config and layers, as `skopeo inspect` shows
// them, with the data-key generation of each blob; human-readable, or JSON. `mountpoint`: where
// the store is mounted, to read through it ("" reads the unmounted store with its key).
int run_inspect_image(const std::string& target, const std::string& mountpoint, const std::string& registry_root,
                      const std::string& ref, bool as_json, std::ostream& out, std::ostream& err);

// cmkfs cat: one file's bytes to `out`. cmkfs export: a file or a subtree copied to DEST (which
// must not exist) with modes, owners (as root), times, symlinks and hard links.
int run_cat(const std::string& target, const std::string& mountpoint, const std::string& path, std::ostream& out,
            std::ostream& err);
int run_export(const std::string& target, const std::string& mountpoint, const std::string& path,
               const std::string& dest, std::ostream& out, std::ostream& err);

// cmkfs status: every cmkfs mount and view on the host (the caller reads the mount table), with
// its store, daemon, key state and uptime; a table, or JSON.
struct StatusEntry {
  std::string store, mountpoint;
  bool view = false;
};
int run_status(const std::vector<StatusEntry>& mounts, bool as_json, std::ostream& out, std::ostream& err);

// The store's encryption settings in the shape of `az acr encryption show`, with the live key
// state when it is mounted; show_encryption prints them.
Result<nlohmann::json> encryption_settings(const std::string& store);
Status show_encryption(const std::string& store, std::ostream& out);

// Moves a local-key store to a vault key. A vault-key store never goes back to the local key.
Status enable_vault_key(const std::string& store, const VaultKeyOptions& v, std::ostream& out);

// Rewraps a vault-key store's data key under another key or version (and identity). Works while
// the store is mounted: the mount follows within one key-check interval.
// With `local` given: a local-key store rewrapped under another key file (made when missing) or
// key command; the old key is no longer needed.
Status rotate_key(const std::string& store, VaultKeyOptions v, const LocalKeyOptions& local, std::ostream& out);

// Starts a new data-key generation. An unmounted store is re-encrypted here and now (every file
// and record moved to the new key, the old wrapped keys deleted and the metadata compacted, so
// that no old wrapped key survives in it), printing progress; a mounted store is re-encrypted by
// its daemon in the background, which `encryption show` follows. `store` is the store directory.
Status rotate_data_key(const std::string& store, std::ostream& out);

// cmkfs trust: binds a store to this host (a store made elsewhere, or moved here), or re-points
// this host's binding of it (a new identity endpoint, CA, identity or key-file path), always with
// key settings the admin gives, never ones read from the store. The data key must unwrap with
// them, have the fingerprint already bound (or `fingerprint`, when given) and verify the
// superblock; the store's own settings are then rewritten to match, sealed with the data key.
struct TrustOptions {
  std::string store;
  LocalKeyOptions local;       // a local-key store: its key file or command
  VaultKeyOptions vault;       // a vault-key store
  std::string fingerprint;     // the data key's fingerprint, as `encryption show` printed it elsewhere
  ObjectsConfig objects;       // a store with objects in RADOS: conf and user, how this host reaches them
  MetaConfig meta;             // a store with metadata in PostgreSQL: schema and connection file
};
Status trust_store(const TrustOptions& o, std::ostream& out);

}  // namespace cmkfs::fs
