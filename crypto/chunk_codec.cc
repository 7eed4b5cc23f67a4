#include "crypto/chunk_codec.h"

#include <openssl/crypto.h>

#include <cstring>

#include "crypto/base/coding.h"

namespace cmkfs::crypto {

std::array<uint8_t, kChunkAadSize> chunk_aad(const ChunkBinding& b, uint64_t index) {
  std::array<uint8_t, kChunkAadSize> aad{};
  uint8_t* p = aad.data();
  p = put_be32(p, b.format_version);
  p = std::copy(b.store_id.begin(), b.store_id.end(), p);
  p = std::copy(b.file_id.begin(), b.file_id.end(), p);
  p = put_be64(p, index);
  put_be32(p, b.dek_generation);
  return aad;
}

Status ChunkSealer::next_nonce(MutableBytes out) {
  // An all-zero chunk means "hole"; a zero nonce would make that ambiguous, so it is never used.
  do {
    if (nonces_left_ == 0) {
      CMKFS_RETURN_IF_ERROR(random_bytes(nonces_));
      nonces_left_ = kNonceBatch;
    }
    --nonces_left_;
    std::memcpy(out.data(), nonces_.data() + nonces_left_ * kNonceSize, kNonceSize);
    OPENSSL_cleanse(nonces_.data() + nonces_left_ * kNonceSize, kNonceSize);  // used once, then gone
  } while (is_all_zero(out.first(kNonceSize)));
  return Status::Ok();
}

Status ChunkSealer::seal(uint64_t index, Bytes plain, MutableBytes phys) {
  if (phys.size() < plain.size() + kChunkOverhead) return Status::InvalidArgument("chunk buffer too small");
  MutableBytes nonce = phys.first(kNonceSize);
  CMKFS_RETURN_IF_ERROR(next_nonce(nonce));
  auto aad = chunk_aad(binding_, index);
  return session_.seal(nonce, aad, plain, phys.subspan(kNonceSize, plain.size()),
                       phys.subspan(kNonceSize + plain.size(), kTagSize));
}

Status ChunkOpener::open(uint64_t index, Bytes phys, MutableBytes plain) {
  if (phys.size() < kChunkOverhead) return Status(EBADMSG, "chunk shorter than its overhead");
  size_t n = phys.size() - kChunkOverhead;
  auto aad = chunk_aad(binding_, index);
  return session_.open(phys.first(kNonceSize), aad, phys.subspan(kNonceSize, n), phys.subspan(kNonceSize + n, kTagSize),
                       plain.first(n));
}

bool is_all_zero(Bytes b) {
  // Compare 8 bytes at a time; this runs only on the failure path.
  size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    if (w != 0) return false;
  }
  for (; i < b.size(); ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

}  // namespace cmkfs::crypto
