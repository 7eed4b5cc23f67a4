// Id128: the 128-bit random ids of stores and files (object names, AAD, audit lines).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace cmkfs {

using Id128 = std::array<uint8_t, 16>;

// For hash tables of ids cmkfs drew at random (never of ids an attacker chooses): their first
// bytes are already a hash.
struct Id128Hash {
  size_t operator()(const Id128& id) const {
    size_t h;
    std::memcpy(&h, id.data(), sizeof h);
    return h;
  }
};

}  // namespace cmkfs
