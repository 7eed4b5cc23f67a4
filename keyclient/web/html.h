// Building HTML by hand, safely: every piece of text goes through esc(). For the web consoles
// (cmkfs-vault's and cmkfs's), which render small server-side pages and no scripts.
#pragma once

#include <string>
#include <string_view>

namespace cmkfs::html {

inline std::string esc(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// A hidden field with the session's CSRF token: every form carries one.
inline std::string csrf_field(std::string_view token) {
  return "<input type=\"hidden\" name=\"csrf\" value=\"" + esc(token) + "\">";
}

// A form of one button that POSTs to `action` with hidden fields `hidden` (already HTML).
inline std::string button_form(std::string_view action, std::string_view label, std::string_view csrf,
                               std::string_view hidden = "", std::string_view cls = "") {
  return "<form method=\"post\" action=\"" + esc(action) + "\" class=\"inline\">" + csrf_field(csrf) +
         std::string(hidden) + "<button type=\"submit\"" + (cls.empty() ? "" : " class=\"" + esc(cls) + "\"") + ">" +
         esc(label) + "</button></form>";
}

inline std::string hidden(std::string_view name, std::string_view value) {
  return "<input type=\"hidden\" name=\"" + esc(name) + "\" value=\"" + esc(value) + "\">";
}

// The response headers every console page carries: no scripts at all, no framing, no caching.
inline constexpr const char* kContentSecurityPolicy =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'";

// The shared stylesheet (served at <console>/style.css).
inline constexpr const char* kStyle = R"(body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1b1b}
header{background:#0b3d66;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header a{color:#dce9f5;text-decoration:none}header a.on{color:#fff;font-weight:600;border-bottom:2px solid #fff}
header .who{margin-left:auto}main{padding:16px 24px;max-width:1100px}
table{border-collapse:collapse;width:100%;margin:8px 0 16px}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #ddd}
th{background:#f3f5f7}code{font-size:12px}.inline{display:inline}fieldset{border:1px solid #ccc;margin:12px 0;padding:10px}
.flash{background:#e7f4e4;border:1px solid #9c9;padding:8px;margin:8px 0}.error{background:#fbe9e9;border-color:#d99}
.state-available{color:#187a2f;font-weight:600}.state-revoked,.state-vault-unreachable-failed-closed,.state-key-tampered{color:#b3261e;font-weight:600}
.state-vault-unreachable{color:#a15c00;font-weight:600}button{margin:2px}label{margin-right:10px}
)";

}  // namespace cmkfs::html
