#include "fs/cli/init_template.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>

namespace cmkfs::fs {

bool read_init_template(const std::string& path, Command* cmd, std::string* chunk_size, bool chunk_given,
                        std::ostream& err) {
  std::ifstream in(path);
  nlohmann::json j = in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
  if (!j.is_object()) {
    err << "cmkfs: " << path << " is not a JSON object (init --from-file)\n";
    return false;
  }
  std::string ignored;
  const std::map<std::string, std::string*> top = {
      {"store", &cmd->init.store},       {"chunkSize", chunk_given ? &ignored : chunk_size},
      {"auditLog", &cmd->init.audit_log}, {"localKeyFile", &cmd->init.kek.key_file},
      {"localKeyCommand", &cmd->init.kek.key_command}};
  VaultKeyOptions& v = cmd->vault;
  const std::map<std::string, std::string*> vault = {
      {"keyIdentifier", &v.key_encryption_key}, {"identity", &v.identity},
      {"credential", &v.credential},            {"identityEndpoint", &v.identity_endpoint},
      {"authorityHost", &v.authority_host},     {"tenantId", &v.tenant_id},
      {"credentialFile", &v.credential_file},   {"vaultCa", &v.vault_ca}};
  // Strings only, every field known: a typo must not silently become a default.
  auto fill = [&](const nlohmann::json& o, const std::map<std::string, std::string*>& fields, const std::string& where) {
    for (const auto& [key, value] : o.items()) {
      auto it = fields.find(key);
      if (it == fields.end() || !value.is_string()) {
        err << "cmkfs: " << path << ": " << (it == fields.end() ? "unknown field " : "not a string: ") << where << key
            << "\n";
        return false;
      }
      if (it->second->empty() || it->second == chunk_size) *it->second = value.get<std::string>();
    }
    return true;
  };
  nlohmann::json rest = j;
  rest.erase("keyVaultProperties");
  if (!fill(rest, top, "")) return false;
  if (j.contains("keyVaultProperties")) {
    if (!j["keyVaultProperties"].is_object()) {
      err << "cmkfs: " << path << ": keyVaultProperties is not an object\n";
      return false;
    }
    if (!fill(j["keyVaultProperties"], vault, "keyVaultProperties.")) return false;
  }
  if (!v.key_encryption_key.empty() && (!cmd->init.kek.key_file.empty() || !cmd->init.kek.key_command.empty())) {
    err << "cmkfs: a store has a vault key or a local key, not both (" << path << " and the options)\n";
    return false;
  }
  return true;
}

}  // namespace cmkfs::fs
