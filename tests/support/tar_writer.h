// Tar archives as tar writes them (ustar headers, data padded to 512 bytes), for tests that build
// image layers, well-formed or not.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace cmkfs::testing {

// One ustar header (and data).
inline void tar_entry(std::vector<uint8_t>* out, const std::string& name, char type, const std::string& data = "",
                      const std::string& link = "", uint32_t mode = 0644) {
  uint8_t h[512] = {0};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(reinterpret_cast<char*>(h + 100), 8, "%07o", mode);
  std::snprintf(reinterpret_cast<char*>(h + 108), 8, "%07o", 1000);
  std::snprintf(reinterpret_cast<char*>(h + 116), 8, "%07o", 1000);
  std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011o", static_cast<unsigned>(data.size()));
  std::snprintf(reinterpret_cast<char*>(h + 136), 12, "%011o", 1700000000u);
  h[156] = static_cast<uint8_t>(type);
  std::memcpy(h + 157, link.data(), std::min<size_t>(link.size(), 100));
  std::memcpy(h + 257, "ustar\0" "00", 8);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (uint8_t c : h) sum += c;
  std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum);
  out->insert(out->end(), h, h + 512);
  out->insert(out->end(), data.begin(), data.end());
  out->resize(out->size() + (512 - data.size() % 512) % 512, 0);
}

// The two zero blocks that end an archive.
inline void tar_end(std::vector<uint8_t>* out) { out->resize(out->size() + 1024, 0); }

}  // namespace cmkfs::testing
