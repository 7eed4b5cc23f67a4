// The nearest of some words to a mistyped one, for "did you mean" in the command lines.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace cmkfs {

// The choice within two edits (insert, delete, substitute) of `word`, the closest first; "" if none.
inline std::string nearest(std::string_view word, const std::vector<std::string>& choices) {
  std::string best;
  size_t best_distance = 3;
  for (const auto& c : choices) {
    std::vector<size_t> row(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        size_t above = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (word[i - 1] == c[j - 1] ? 0 : 1)});
        diagonal = above;
      }
    }
    if (row[c.size()] < best_distance) best_distance = row[c.size()], best = c;
  }
  return best;
}

}  // namespace cmkfs
