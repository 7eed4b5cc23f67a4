#include "keyclient/web/sessions.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <iterator>
#include <vector>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"

namespace cmkfs::web {
std::string random_token() {
  std::vector<uint8_t> b(32);
  if (!crypto::random_bytes(b).ok()) std::abort();  // never hand out a guessable id
  return to_hex(b);
}


std::string Sessions::open(const std::string& who, int64_t now, int64_t until) {
  // Expired sessions go when a new one comes: the map stays as small as the live ones.
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    it = dead(it->second, now) ? sessions_.erase(it) : std::next(it);
  }
  std::string id = random_token();
  Session& s = sessions_[id];
  s.who = who;
  s.csrf = random_token();
  s.created = s.last_seen = now;
  s.expires = std::min(until, now + max_seconds);
  return id;
}

Session* Sessions::find(const std::string& id, int64_t now) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  if (dead(it->second, now)) {
    sessions_.erase(it);
    return nullptr;
  }
  it->second.last_seen = now;
  return &it->second;
}

std::string Sessions::client_of(const std::string& raw) {
  // fe80::1%eth0: the scope names the link, not the host; each link's /64 is a client of its own.
  size_t percent = raw.find('%');
  std::string address = raw.substr(0, percent), scope = percent == std::string::npos ? "" : raw.substr(percent);
  in_addr v4;
  in6_addr v6;
  if (::inet_pton(AF_INET, address.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127 ? kLoopback : address;
  }
  if (::inet_pton(AF_INET6, address.c_str(), &v6) != 1) return address;
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    char text[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &v6.s6_addr[12], text, sizeof text);
    return client_of(text);
  }
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return kLoopback;  // the same host as 127/8
  std::memset(&v6.s6_addr[8], 0, 8);
  char text[INET6_ADDRSTRLEN];
  ::inet_ntop(AF_INET6, &v6, text, sizeof text);
  return std::string(text) + "/64" + scope;
}

bool Sessions::throttled(const std::string& address, int64_t now) const {
  std::string client = client_of(address);
  // This host's own admin is never locked out by others: loopback has only its own count.
  if (client != kLoopback && everyone_.count >= kEveryone && now - everyone_.first < 60) return true;
  auto it = failures_.find(client);
  return it != failures_.end() && it->second.count >= kPerClient && now - it->second.first < 60;
}

void Sessions::failed(const std::string& raw_address, int64_t now) {
  std::string address = client_of(raw_address);
  if (address != kLoopback) {
    if (now - everyone_.first >= 60) everyone_ = Failures{0, now};
    ++everyone_.count;
  }
  if (failures_.size() >= kMaxTracked && !failures_.contains(address)) {
    auto oldest = std::min_element(failures_.begin(), failures_.end(),
                                   [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
    failures_.erase(oldest);
  }
  Failures& f = failures_[address];
  if (now - f.first >= 60) f = Failures{0, now};
  ++f.count;
}

}  // namespace cmkfs::web
