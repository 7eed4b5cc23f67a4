// The host's side of a store: what this machine trusts, kept outside the store, where a storage
// attacker cannot write. Part of fs/store (include fs/store/store.h).
//
// A binding says which key opens which store: the key settings (provider, key file, vault key,
// identity, endpoints, CA), the fingerprint of each data-key generation, and for a store whose
// objects are in a cluster, how to reach it (its config file and client name). `init` writes it;
// `mount`, the offline commands, key administration and the key monitor take the key settings
// from it, never from the store, and refuse a store whose settings or data key differ. Changing
// it is an explicit command (`cmkfs trust`, `encryption enable`, `encryption rotate-key`).
//
// Files: host_config_dir()/stores/<store id hex>.json, written 0600 in a directory made 0700,
// owned by the user running cmkfs (root for system mounts); one that others could write, or that
// is a link, is refused. A binding holds no secret (the fingerprint reveals nothing of the key).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "crypto/base/id128.h"
#include "crypto/base/status.h"
#include "fs/store/meta_config.h"
#include "fs/store/object_store.h"
#include "keyclient/keyclient.h"

namespace cmkfs::fs {

// $CMKFS_CONFIG_DIR if set; else /etc/cmkfs for root, $XDG_CONFIG_HOME/cmkfs or ~/.config/cmkfs
// for other users. Local key files default to its keys/ directory, bindings live in stores/.
std::string host_config_dir();

struct HostBinding {
  Id128 store_id{};
  keyclient::KekConfig kek;  // the key settings this host trusts
  // Settings a key command is switching the store to (written before the store changes, cleared
  // after): while set, the store may hold either, so a crash in between locks nobody out.
  std::optional<keyclient::KekConfig> next;
  std::map<uint32_t, std::string> fingerprints;  // data-key generation -> crypto::dek_fingerprint
  // The newest data-key generation the store is known to have committed: a store that shows an
  // older one has been rolled back (0: not recorded, a binding from before rotations).
  uint32_t generation = 0;
  // Where the store's objects are and how this host reaches them (local: in the store directory).
  ObjectsConfig objects;
  // Where the store's metadata is and how this host reaches it (lmdb: in the store directory).
  MetaConfig meta;

  // The bound settings `store_kek` agrees with (kek, else next), or what differs from kek.
  Result<keyclient::KekConfig> match(const keyclient::KekConfig& store_kek) const;

  std::string to_json() const;
  static Result<HostBinding> from_json(std::string_view json);  // EIO when malformed
};

std::string binding_path(const Id128& store_id);
// ENOENT when this host has no binding for the store; EACCES when the file or its directory is
// not the caller's alone (with the chmod/chown to run); EIO when it is damaged.
Result<HostBinding> load_binding(const Id128& store_id);
// Writes the binding atomically and durably, creating the directory (0700) if need be.
Status save_binding(const HostBinding& binding);
// Changes the binding of `store_id` as it is on disk now (a fresh one if there is none), under a
// lock that serialises every cmkfs process on the host: a command and a daemon changing the same
// binding never write stale copies over each other. Returns what was saved.
Result<HostBinding> update_binding(const Id128& store_id, const std::function<Status(HostBinding&)>& change);

}  // namespace cmkfs::fs
