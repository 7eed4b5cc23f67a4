// Who is signed in to a web console: sessions (a random id in a cookie, a CSRF token of their
// own, an idle and an absolute lifetime) and sign-in throttling per client.
// Thread-safety: none; the server calls it under its one lock.
#pragma once

#include <cstdint>
#include <climits>
#include <map>
#include <string>

#include "keyclient/web/peer.h"

namespace cmkfs::web {

// 32 random bytes as hex: session ids and CSRF tokens.
std::string random_token();

struct Session {
  std::string who;   // the signed-in admin
  std::string csrf;  // every form must carry it back
  int64_t created = 0, last_seen = 0;
  int64_t expires = 0;  // unix seconds: max_seconds after created, or sooner if what signed in expires sooner
  // What the last action said, shown once on the next page: kept here, never taken from a link.
  std::string flash;
  bool flash_error = false;
};

class Sessions {
 public:
  int64_t idle_seconds = 15 * 60;
  int64_t max_seconds = 8 * 3600;

  // A new session for `who`, ending at `until` at the latest (the expiry of a token used to sign
  // in: a session outlives nothing it was opened with); its id (the cookie's value).
  std::string open(const std::string& who, int64_t now, int64_t until = INT64_MAX);
  // The live session with this id (touched), or null: unknown, idle too long or too old.
  Session* find(const std::string& id, int64_t now);
  void close(const std::string& id) { sessions_.erase(id); }

  // Five failed sign-ins from one client (peer.h: an address, an IPv6 /64, a local user) within a
  // minute shut it out for that minute; sixty from clients not of this host shut everyone but
  // this host's users out for that minute (the host's own admin can always sign in, and another
  // local user's guesses count against that user alone). At most kMaxTracked clients are
  // remembered (the oldest forgotten first).
  bool throttled(const Client& client, int64_t now) const;
  void failed(const Client& client, int64_t now);
  void succeeded(const Client& client) { failures_.erase(client.name); }

 private:
  bool dead(const Session& s, int64_t now) const { return now - s.last_seen > idle_seconds || now >= s.expires; }
  struct Failures {
    int count = 0;
    int64_t first = 0;
  };
  std::map<std::string, Session> sessions_;
  static constexpr size_t kMaxTracked = 4096;
  static constexpr int kPerClient = 5, kEveryone = 60;
  Failures everyone_;
  std::map<std::string, Failures> failures_;
};

}  // namespace cmkfs::web
