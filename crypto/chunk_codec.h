// Seals and opens the chunks of one file (layout in chunk_layout.h).
//
// A sealed chunk is nonce(12) | ciphertext | tag(16) under the file's key, with a fresh random
// nonce per write and the AAD from chunk_aad(), which binds format version, store, file, chunk
// index and data-key generation: a chunk moved to another position or file fails to open.
#pragma once

#include <array>
#include <cstdint>

#include "crypto/base/id128.h"
#include "crypto/chunk_layout.h"
#include "crypto/crypto.h"

namespace cmkfs::crypto {

struct ChunkBinding {
  uint32_t format_version = 0;
  Id128 store_id{};
  Id128 file_id{};
  uint32_t dek_generation = 0;
};

inline constexpr size_t kChunkAadSize = 4 + 16 + 16 + 8 + 4;
// The only place the chunk AAD is built.
std::array<uint8_t, kChunkAadSize> chunk_aad(const ChunkBinding& b, uint64_t index);

// Seals chunks under one key. One per request and thread; the key schedule is wiped on destruction.
class ChunkSealer {
 public:
  ChunkSealer(Bytes file_key, const ChunkBinding& binding) : session_(file_key, true), binding_(binding) {}
  // phys must hold plain.size() + kChunkOverhead bytes.
  Status seal(uint64_t index, Bytes plain, MutableBytes phys);

 private:
  Status next_nonce(MutableBytes out);

  GcmSession session_;
  const ChunkBinding& binding_;
  // Nonces are drawn from the RNG in batches: one call per 32 chunks, not one per chunk.
  static constexpr size_t kNonceBatch = 32;
  std::array<uint8_t, kNonceBatch * kNonceSize> nonces_{};
  size_t nonces_left_ = 0;
};

// Opens chunks under one key. EBADMSG when a chunk does not authenticate.
class ChunkOpener {
 public:
  ChunkOpener(Bytes file_key, const ChunkBinding& binding) : session_(file_key, false), binding_(binding) {}
  // REQUIRES: phys.size() >= kChunkOverhead; plain holds phys.size() - kChunkOverhead bytes.
  Status open(uint64_t index, Bytes phys, MutableBytes plain);

 private:
  GcmSession session_;
  const ChunkBinding& binding_;
};

bool is_all_zero(Bytes b);

}  // namespace cmkfs::crypto
