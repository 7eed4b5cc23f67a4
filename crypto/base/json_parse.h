// Parsing JSON that may be hostile (a manifest, a layout's index, a vault's reply). Depth costs
// memory: nlohmann keeps a value, and an array or object, per level, so 4 MiB of "[[[[" took
// 156 MB to parse. Nothing cmkfs reads nests more than a few levels.
#pragma once

#include <nlohmann/json.hpp>

#include <string_view>

namespace cmkfs {

inline constexpr int kMaxJsonDepth = 64;

// `text` parsed, or a discarded value (is_discarded()) when it is not JSON or nests deeper than
// `max_depth`. Never throws.
inline nlohmann::json parse_untrusted_json(std::string_view text, int max_depth = kMaxJsonDepth) {
  bool too_deep = false;
  // Values past the depth are not built (the callback drops them); the parse still reads on.
  auto cb = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    too_deep = too_deep || depth > max_depth;
    return !too_deep;
  };
  nlohmann::json j = nlohmann::json::parse(text, cb, /*allow_exceptions=*/false);
  if (too_deep) return nlohmann::json(nlohmann::json::value_t::discarded);
  return j;
}

}  // namespace cmkfs
