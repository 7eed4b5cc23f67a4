// The key audit log: one JSON line per wrap, unwrap, rotation, revocation and restore of a
// store's data key. Never holds key material or tokens: key ids, identities, outcomes.
//
// Thread-safety: record() may be called from any thread.
#pragma once

#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "crypto/chunk_codec.h"

namespace cmkfs::fs {

// Routine key checks that succeed (an unwrap whose reason is "key check") are counted, not
// written: a "checks" line says how many, from when to when, once an hour, before any other
// line, and when the log is closed. Every other event is a line of its own (2,880 lines a day
// per store at the default interval would bury them).
class AuditLog {
 public:
  // Appends to `path` (created with its directory); an empty path disables the log.
  AuditLog(std::string path, std::string store_id, std::chrono::seconds summary_every = std::chrono::hours(1));
  ~AuditLog();
  // event: "unwrap", "wrap", "rotate", "revoke", "restore", "unreachable", "fail-closed", ...
  void record(const std::string& event, const std::string& key_id, const std::string& result,
              const nlohmann::json& extra = nlohmann::json::object());
  const std::string& path() const { return path_; }

 private:
  void append(const nlohmann::json& line);  // REQUIRES: mu_ held
  void write_summary();                     // REQUIRES: mu_ held

  std::mutex mu_;
  std::string path_, store_id_;
  std::chrono::seconds summary_every_;
  uint64_t checks_ = 0;  // routine checks not yet written
  std::string checks_since_, checks_key_;
  std::chrono::steady_clock::time_point last_summary_ = std::chrono::steady_clock::now();
};

// The key audit log of a store: /var/log/cmkfs/<store id>.audit.jsonl for root, unless this
// process was told otherwise (`--audit-log` of the offline commands).
std::string default_audit_path(const Id128& store_id);
void override_default_audit_path(std::string path);
// Where a mounted store's live key state is published for `cmkfs encryption show`: by store id
// and directory, so that a copy of a store (same id) neither shows nor removes the original's.
std::string status_path(const Id128& store_id, const std::string& store_root);

}  // namespace cmkfs::fs
