#include "keyclient/devvault/network.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace cmkfs::devvault {
namespace {

// An address as 16 bytes, IPv4 mapped into IPv6 (so "::ffff:10.1.2.3" and "10.1.2.3" are one).
bool parse_address(const std::string& text, unsigned char out[16]) {
  in_addr a4{};
  if (::inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    std::memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    std::memcpy(out + 12, &a4, 4);
    return true;
  }
  in6_addr a6{};
  if (::inet_pton(AF_INET6, text.c_str(), &a6) != 1) return false;
  std::memcpy(out, &a6, 16);
  return true;
}

bool is_v4(const unsigned char a[16]) {
  static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, prefix, 12) == 0;
}

}  // namespace

Result<Cidr> Cidr::parse(const std::string& text) {
  Cidr c;
  size_t slash = text.find('/');
  std::string address = text.substr(0, slash);
  if (text.size() > 64 || !parse_address(address, c.addr)) {
    return Status::InvalidArgument("'" + text.substr(0, 64) + "' is not an IP address or CIDR range");
  }
  bool v4 = address.find(':') == std::string::npos;
  int max = v4 ? 32 : 128;
  int bits = max;
  if (slash != std::string::npos) {
    std::string n = text.substr(slash + 1);
    if (n.empty() || n.size() > 3 || n.find_first_not_of("0123456789") != std::string::npos || std::stoi(n) > max) {
      return Status::InvalidArgument("'" + text + "': the prefix length must be 0 to " + std::to_string(max));
    }
    bits = std::stoi(n);
  }
  // An IPv4 address written as IPv6 ("::ffff:10.0.0.0/8") with a prefix short of its IPv4 part
  // would be the IPv6 range ::/8, which holds every IPv4 address.
  if (!v4 && is_v4(c.addr) && bits < 96) {
    return Status::InvalidArgument("'" + text + "': an IPv4 address in IPv6 form needs a prefix of 96 to 128; write " +
                                   "the IPv4 range instead");
  }
  c.bits = v4 ? bits + 96 : bits;
  // Host bits cleared, so that one range has one spelling.
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(c.bits - i * 8, 0, 8);
    c.addr[i] &= static_cast<unsigned char>(0xff00 >> keep);
  }
  return c;
}

std::string Cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4(addr) && bits >= 96) {
    ::inet_ntop(AF_INET, addr + 12, buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(bits - 96);
  }
  ::inet_ntop(AF_INET6, addr, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(bits);
}

bool Cidr::contains(const std::string& address) const {
  unsigned char a[16];
  if (!parse_address(address, a)) return false;
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(bits - i * 8, 0, 8);
    auto mask = static_cast<unsigned char>(0xff00 >> keep);
    if ((a[i] & mask) != addr[i]) return false;
  }
  return true;
}

bool NetworkAcls::admits(const std::string& address) const {
  if (!deny_by_default) return true;
  for (const auto& r : ip_rules) {
    if (r.contains(address)) return true;
  }
  return false;
}

nlohmann::json NetworkAcls::to_json() const {
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& r : ip_rules) rules.push_back({{"value", r.to_string()}});
  return {{"defaultAction", deny_by_default ? "Deny" : "Allow"},
          {"bypass", trusted_bypass ? "AzureServices" : "None"},
          {"ipRules", rules}};
}

Status NetworkAcls::update(const nlohmann::json& j) {
  auto word = [&](const char* key, const char* yes, const char* no, bool* out) -> Status {
    if (!j.contains(key)) return Status::Ok();
    const auto& v = j[key];
    if (!v.is_string() || (v != yes && v != no)) {
      return Status::InvalidArgument(std::string(key) + ": " + yes + " or " + no);
    }
    *out = v == yes;
    return Status::Ok();
  };
  bool deny = deny_by_default, bypass = trusted_bypass;
  CMKFS_RETURN_IF_ERROR(word("defaultAction", "Deny", "Allow", &deny));
  CMKFS_RETURN_IF_ERROR(word("bypass", "AzureServices", "None", &bypass));
  deny_by_default = deny;
  trusted_bypass = bypass;
  return Status::Ok();
}

Result<NetworkAcls> NetworkAcls::from_json(const nlohmann::json& j) {
  NetworkAcls n;
  if (!j.is_object()) return Status::Corruption("networkAcls is not an object");
  CMKFS_RETURN_IF_ERROR(n.update(j));
  if (j.contains("ipRules")) {
    for (const auto& r : j.at("ipRules")) {
      auto c = Cidr::parse(r.at("value").get<std::string>());
      if (!c.ok()) return c.status();
      n.ip_rules.push_back(*c);
    }
  }
  return n;
}

}  // namespace cmkfs::devvault
