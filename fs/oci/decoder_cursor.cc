#include "fs/oci/decoder_cursor.h"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace cmkfs::oci {
namespace {
std::atomic<size_t> held_slots{0};
}  // namespace

void RecentOutput::append(const uint8_t* p, size_t k) {
  size_t r = ring_.size();
  uint64_t end = pos_ + k;
  if (r > 0) {
    uint64_t at = pos_;
    if (k > r) p += k - r, at += k - r, k = r;
    while (k > 0) {
      size_t i = static_cast<size_t>(at % r), m = std::min(k, r - i);
      std::memcpy(ring_.data() + i, p, m);
      p += m, at += m, k -= m;
    }
  }
  kept_ = std::min<uint64_t>(r, kept_ + (end - pos_));
  pos_ = end;
}

size_t RecentOutput::recall(uint64_t offset, uint8_t* out, size_t len) const {
  if (offset >= pos_ || offset < pos_ - kept_) return 0;
  size_t r = ring_.size(), total = static_cast<size_t>(std::min<uint64_t>(len, pos_ - offset)), done = 0;
  while (done < total) {
    size_t i = static_cast<size_t>((offset + done) % r), m = std::min(total - done, r - i);
    std::memcpy(out + done, ring_.data() + i, m);
    done += m;
  }
  return total;
}

bool DecoderSlot::acquire() {
  if (held_) return true;
  if (held_slots.fetch_add(1) < kMaxDecoders) return held_ = true;
  --held_slots;
  return false;
}

void DecoderSlot::release() {
  if (held_) --held_slots;
  held_ = false;
}

}  // namespace cmkfs::oci
