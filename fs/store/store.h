// fs/store: a store on disk (STORE/meta (LMDB), STORE/objects/xx/<file id>, STORE/lock) and its
// keys. init_store() creates one, open_store() opens one, unlock() gets its data key from the key
// provider its superblock names: the one place a data key is unwrapped and audited. Also the
// pieces every layer above shares: object I/O (object_store.h), the key gate (keyring.h), the
// key audit log (audit.h) and the exit codes of the commands.
#pragma once

#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "crypto/crypto.h"
#include "fs/store/audit.h"
#include "fs/store/creation_log.h"
#include "fs/store/host.h"
#include "fs/store/keyring.h"
#include "fs/store/object_store.h"
#include "keyclient/call_watch.h"
#include "keyclient/keyclient.h"
#include "meta/meta.h"

namespace cmkfs::fs {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,       // anything not listed below
  kExitUsage = 2,       // bad command line
  kExitNotAStore = 10,  // the directory is not a store, or is damaged
  kExitKey = 11,        // the key is missing, wrong, or refused
  kExitMount = 12,      // the mountpoint is missing, busy or the mount failed
  kExitBusy = 13,       // the store is in use by another cmkfs
};

// Maps the Status of a failed command to its exit code.
int exit_code_for(const Status& s);

// How long one request to a key provider may take in this process's commands: 10 s unless the
// command was told otherwise (--vault-timeout).
double default_provider_timeout();
void override_default_provider_timeout(double seconds);

struct StorePaths {
  std::string root, meta, objects, lock;
  static StorePaths of(const std::string& root);
};

struct InitOptions {
  std::string store;
  uint32_t chunk_size = 4 << 10;
  keyclient::KekConfig kek;  // provider "local": key_file may be empty (default path)
  std::string audit_log;     // where the first wrap is audited; empty: default_audit_path(store id)
  ObjectsConfig objects;     // rados: an empty namespace becomes the store id's hex
  MetaConfig meta;           // postgres: an empty schema becomes MetaConfig::default_schema
};

// Creates a store in an empty (or missing) directory, its objects there or in the cluster
// opts.objects names (whose namespace must hold no object yet). Prints what it made to `out`.
Status init_store(const InitOptions& opts, std::ostream& out);

struct OpenStore {
  StorePaths paths;
  int lock_fd = -1;      // flock held for the lifetime of a mount
  int meta_dir_fd = -1;  // STORE/meta, opened without following links; LMDB works in it
  MetaConfig meta_config;  // where the metadata is (postgres: the binding's settings)
  std::unique_ptr<meta::MetaStore> meta;
  std::unique_ptr<ObjectStore> objects;
  meta::Superblock super;  // unauthenticated until unlock()
  keyclient::KekConfig kek;  // the superblock's key settings: unauthenticated until unlock()
  std::unique_ptr<CreationLog> creations;  // objects being created (creation_log.h); null when read-only
  std::optional<HostBinding> binding;  // this host's binding of the store (host.h), if it has one
  Status binding_error;                // why there is none
  ~OpenStore();
};

// Opens the store at `root`. exclusive: take the store lock (EBUSY when mounted elsewhere).
// Nothing inside the store is followed (private_fs.h); each part must be the user's own.
// meta: where the metadata is when this host's binding does not say yet (`cmkfs trust --meta`).
Result<std::unique_ptr<OpenStore>> open_store(const std::string& root, bool exclusive, bool read_only,
                                              const MetaConfig* meta = nullptr);
// Makes `root` (missing or empty) this host's directory of the store whose metadata `meta` names:
// meta/engine.json naming the store its superblock says, the lock, and the objects directory of
// a store that keeps them there. Nothing is authenticated yet: `cmkfs trust` does that next.
Status make_store_directory(const std::string& root, const MetaConfig& meta);
// The exit code for a failed open_store(): busy, the store disagreeing with the host's binding
// (kExitKey), or not a store.
int open_store_exit_code(const Status& s);

// (Re)opens the store's LMDB environment after checking its files (store.meta_dir_fd open).
Result<std::unique_ptr<meta::MetaStore>> open_checked_meta(OpenStore& store, bool read_only);

// A command's key provider (init, trust, the offline commands, a key change, the console's, a
// daemon's start). A PKCS#11 module runs in the process and its calls cannot be timed out, so
// they are watched: one (or making the provider) that has not returned after kProviderHungAfter
// request timeouts ends the process with kExitKey, saying so on stderr, unless `watchdog` says
// otherwise (command_watchdog); ending is all that is left, the call holding the module. Other
// providers bound their own requests. The daemon's key monitor watches its own calls
// (fs/daemon/key_monitor.h).
inline constexpr int kProviderHungAfter = 4;
Result<std::unique_ptr<keyclient::KeyProvider>> command_provider(
    const keyclient::KekConfig& config, const Id128& store_id, double timeout_seconds = default_provider_timeout(),
    std::shared_ptr<keyclient::CallWatchdog> watchdog = nullptr);
// The watchdog of a command's provider: past the bound, `report` gets why, then the process ends
// with kExitKey (the call still holds its thread and the module).
std::shared_ptr<keyclient::CallWatchdog> command_watchdog(double timeout_seconds,
                                                          std::function<void(const std::string& why)> report);

// The key provider this host's binding names (a command's, as above), once the store's own key
// settings are found to agree with it: no request ever goes where the host did not say. ENOKEY
// when the store is not bound to this host; EUCLEAN (tampering) saying what differs.
Result<std::unique_ptr<keyclient::KeyProvider>> bound_provider(const OpenStore& store,
                                                               double timeout_seconds = default_provider_timeout(),
                                                               std::shared_ptr<keyclient::CallWatchdog> watchdog = nullptr);

// Unwraps the store's current data key with `provider` (from bound_provider), then checks it
// against the host's binding before anything else is read: the wrapped key must name the bound
// key, the data key must have the bound fingerprint (EUCLEAN otherwise: a swapped or forged
// store), and the superblock's MAC must verify (EIO). Audits the unwrap with the key id that
// wrapped it, `reason` and the outcome (ok, refused, unreachable, failed). Provider errors keep
// their code (keyclient.h).
struct Unlocked {
  crypto::SecretBytes dek;                        // the current generation's
  keyclient::WrappedKey wrapped;                  // what was unwrapped
  std::map<uint32_t, crypto::SecretBytes> older;  // older generations' (a data-key rotation)
  crypto::SecretBytes name_key;                   // the carried name key; empty: derive it
};
Result<Unlocked> unlock(OpenStore& store, keyclient::KeyProvider& provider, AuditLog& audit, std::string_view reason);
// The same with settings the caller vouches for instead of the binding (`cmkfs trust`, binding a
// store to this host): the wrapped key must name `settings`' key, and the DEK must have
// `*fingerprint` when one is given.
Result<Unlocked> unwrap_with(OpenStore& store, const keyclient::KekConfig& settings, keyclient::KeyProvider& provider,
                             const std::string* fingerprint, AuditLog& audit, std::string_view reason);
// Installs what unlock() gave in `keyring`, `current` being the generation new files use.
Status install_keys(Keyring& keyring, uint32_t current, Unlocked unlocked);

// The exit code for a failed unlock: a damaged store (EIO) or a key problem.
int unlock_exit_code(const Status& s);

// Binds the store to this host with `kek` and the fingerprint of `dek` (its current generation),
// keeping the fingerprints of other generations: what init, `cmkfs trust`, `encryption enable`
// and `encryption rotate-key` do once the store holds the new settings.
Status bind_store(OpenStore& store, const keyclient::KekConfig& kek, const crypto::SecretBytes& dek);
// Before a key command changes the store's settings to `next`: the binding then accepts either
// until bind_store() records the outcome.
Status bind_next(OpenStore& store, const keyclient::KekConfig& next);

// Wraps `dek` with `provider` (whose settings are `kek`) and stores the result and the new key
// settings in one durable commit: until it lands the old wrapped key stays valid. Updates
// store.super and store.kek. Used by `encryption enable`, `encryption rotate-key` and the key
// monitor's automatic rotation.
Result<keyclient::WrappedKey> rewrap(OpenStore& store, const crypto::SecretBytes& dek, keyclient::KekConfig kek,
                                     keyclient::KeyProvider& provider);

// Data-key rotation (rotation.cc). start_dek_rotation() begins generation current+1: a new DEK
// wrapped by `provider`, its fingerprint bound first, then in one durable commit its wrapped key,
// the name key carried forward under it, and the superblock naming it (sealed with it). From then
// on new files and records use it; files and records under older generations are moved by
// Filesystem::rekey_step(); finish_dek_rotation() then forgets the older generations (wrapped
// keys, name keys, fingerprints) and marks the metadata for compaction, which compact_metadata()
// does with the store locked, so that no older wrapped key survives in LMDB's free pages.
Result<uint32_t> start_dek_rotation(OpenStore& store, keyclient::KeyProvider& provider, const Unlocked& current,
                                    AuditLog& audit);
Status finish_dek_rotation(OpenStore& store, AuditLog& audit);
bool compaction_pending(OpenStore& store);
// REQUIRES: the store opened exclusively, no transaction open.
Status compact_metadata(OpenStore& store);

}  // namespace cmkfs::fs
