// The key audit log: one JSON line per wrap, unwrap, rotation, revocation and restore of a
// store's data key. Never holds key material or tokens: key ids, identities, outcomes.
//
// Thread-safety: record() may be called from any thread.
#pragma once

#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "crypto/chunk_codec.h"

namespace cmkfs::fs {

class AuditLog {
 public:
  // Appends to `path` (created with its directory); an empty path disables the log.
  AuditLog(std::string path, std::string store_id);
  // event: "unwrap", "wrap", "rotate", "revoke", "restore", "unreachable", "fail-closed", ...
  void record(const std::string& event, const std::string& key_id, const std::string& result,
              const nlohmann::json& extra = nlohmann::json::object());
  const std::string& path() const { return path_; }

 private:
  std::mutex mu_;
  std::string path_, store_id_;
};

std::string default_audit_path(const Id128& store_id);
// Where a mounted store's live key state is published for `cmkfs encryption show`: by store id
// and directory, so that a copy of a store (same id) neither shows nor removes the original's.
std::string status_path(const Id128& store_id, const std::string& store_root);

}  // namespace cmkfs::fs
