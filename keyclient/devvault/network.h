// The vault's firewall, as Key Vault's networkAcls: a default action, IP rules (CIDR ranges,
// IPv4 or IPv6) that are always let in, and whether trusted callers bypass the rest. Which
// callers are trusted is the server's to say (the vault's own system-assigned identity).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crypto/base/status.h"

namespace cmkfs::devvault {

// An address range: 16 bytes (IPv4 as ::ffff:a.b.c.d) and how many leading bits count.
struct Cidr {
  unsigned char addr[16] = {};
  int bits = 0;
  // "10.0.0.0/8", "2001:db8::/32", or a bare address (/32, /128). The canonical form back.
  static Result<Cidr> parse(const std::string& text);
  std::string to_string() const;
  bool contains(const std::string& address) const;  // false for anything not an address
};

struct NetworkAcls {
  bool deny_by_default = false;  // defaultAction Deny (Azure's default is Allow)
  bool trusted_bypass = true;    // bypass AzureServices
  std::vector<Cidr> ip_rules;

  // Sets defaultAction (Allow or Deny) and bypass (AzureServices or None) where `j` names them;
  // EINVAL naming the field when a value is none of those (nothing changed then).
  Status update(const nlohmann::json& j);
  // Whether a request from `address` may reach the keys, before any bypass.
  bool admits(const std::string& address) const;
  // Key Vault's shape: {defaultAction, bypass, ipRules: [{value}]}.
  nlohmann::json to_json() const;
  static Result<NetworkAcls> from_json(const nlohmann::json& j);
};

}  // namespace cmkfs::devvault
