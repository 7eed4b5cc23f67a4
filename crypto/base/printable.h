// Text from outside (a store's settings, a plugin's reply, a path in the mount table) as a
// terminal may be shown it: control characters (C0, DEL, and C1 as UTF-8 encodes them) and bytes
// that are not UTF-8 as \xNN, so that an escape sequence in a hostile store cannot rewrite the
// admin's screen or clipboard; a backslash as \x5c, so no text can pass for such an escape; and
// the invisible characters that make a terminal show text other than it is (bidirectional
// overrides and isolates, as in "Trojan Source", and line separators), each byte as \xNN.
// Printable ASCII and other UTF-8 pass unchanged.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace cmkfs {

// U+061C, U+200E-U+200F, U+2028-U+202E and U+2066-U+2069: marks and embeddings that reorder
// what follows them, or break a line where none shows.
inline bool reorders_display(char32_t cp) {
  return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

inline std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto escape = [&out](unsigned char c) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", c);
    out += hex;
  };
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {  // a backslash too: "\x1b" must not be the store's own text
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A whole UTF-8 sequence, not overlong, not a surrogate, not past U+10FFFF, not C1.
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok) {
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      if ((c == 0xc2 && c1 < 0xa0) || (c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0) ||
          (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 >= 0x90)) {
        ok = false;
      }
    }
    if (!ok) {
      escape(c);
      ++i;
      continue;
    }
    char32_t cp = c & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    if (reorders_display(cp)) {
      for (size_t k = 0; k < n; ++k) escape(static_cast<unsigned char>(s[i + k]));
      i += n;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace cmkfs
