// Id128: the 128-bit random ids of stores and files (object names, AAD, audit lines).
#pragma once

#include <array>
#include <cstdint>

namespace cmkfs {

using Id128 = std::array<uint8_t, 16>;

}  // namespace cmkfs
