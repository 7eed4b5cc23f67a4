// Where a file's bytes live in its object file: offset arithmetic only, no crypto.
//
// An object file is a run of chunks. Chunk i holds the plaintext bytes
// [i * chunk_size, min((i + 1) * chunk_size, file_size)) stored as nonce | ciphertext | tag at
// physical offset i * (chunk_size + kChunkOverhead). Only the last chunk may be shorter.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>

namespace cmkfs::crypto {

inline constexpr uint32_t kChunkOverhead = 12 + 16;  // GCM nonce + tag
inline constexpr uint32_t kMinChunkSize = 4 << 10;
inline constexpr uint32_t kMaxChunkSize = 1 << 20;

class ChunkLayout {
 public:
  // REQUIRES: valid_chunk_size(chunk_size)
  explicit constexpr ChunkLayout(uint32_t chunk_size) : cs_(chunk_size) { assert(valid_chunk_size(chunk_size)); }

  static constexpr bool valid_chunk_size(uint64_t cs) {
    return cs >= kMinChunkSize && cs <= kMaxChunkSize && (cs & (cs - 1)) == 0;
  }

  constexpr uint32_t chunk_size() const { return cs_; }
  constexpr uint64_t phys_stride() const { return uint64_t{cs_} + kChunkOverhead; }
  constexpr uint64_t index_of(uint64_t offset) const { return offset / cs_; }
  constexpr uint64_t start_of(uint64_t index) const { return index * cs_; }
  constexpr uint64_t phys_offset(uint64_t index) const { return index * phys_stride(); }
  constexpr uint64_t count(uint64_t file_size) const { return (file_size + cs_ - 1) / cs_; }

  // Plaintext bytes chunk `index` holds in a file of `file_size` bytes; 0 past the end.
  constexpr uint32_t length(uint64_t index, uint64_t file_size) const {
    uint64_t start = start_of(index);
    if (start >= file_size) return 0;
    return static_cast<uint32_t>(std::min<uint64_t>(cs_, file_size - start));
  }

  // One past the sealed bytes of chunk `index` in a file of `file_size` bytes.
  constexpr uint64_t phys_end(uint64_t index, uint64_t file_size) const {
    return phys_offset(index) + length(index, file_size) + kChunkOverhead;
  }

  // Length of the object file for a file of `file_size` bytes.
  constexpr uint64_t phys_size(uint64_t file_size) const {
    uint64_t n = count(file_size);
    return n == 0 ? 0 : phys_end(n - 1, file_size);
  }

  // The largest file: 2^32 chunks (the random-nonce budget of one key), within off_t.
  constexpr uint64_t max_file_size() const { return std::min<uint64_t>(uint64_t{cs_} << 32, uint64_t{1} << 62); }

 private:
  uint32_t cs_;
};

}  // namespace cmkfs::crypto
