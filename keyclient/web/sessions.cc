#include "keyclient/web/sessions.h"

#include <algorithm>
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

bool Sessions::throttled(const Client& client, int64_t now) const {
  if (!client.local && everyone_.count >= kEveryone && now - everyone_.first < 60) return true;
  auto it = failures_.find(client.name);
  return it != failures_.end() && it->second.count >= kPerClient && now - it->second.first < 60;
}

void Sessions::failed(const Client& client, int64_t now) {
  if (!client.local) {
    if (now - everyone_.first >= 60) everyone_ = Failures{0, now};
    ++everyone_.count;
  }
  if (failures_.size() >= kMaxTracked && !failures_.contains(client.name)) {
    auto oldest = std::min_element(failures_.begin(), failures_.end(),
                                   [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
    failures_.erase(oldest);
  }
  Failures& f = failures_[client.name];
  if (now - f.first >= 60) f = Failures{0, now};
  ++f.count;
}

}  // namespace cmkfs::web
