// What the readers of compressed layers keep between reads (fs/oci/gzip_index.h, zstd_index.h):
// the last bytes their decoder made, and a claim on one of the decoders kept at once. A file read
// in requests of 128 KiB otherwise decodes from the access point before each request again; the
// kernel's readahead sends them out of order within its window, which the recent bytes serve.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cmkfs::oci {

// The last bytes a decoder made, up to pos(), in a ring (decompressed offset x at x % capacity).
// With no capacity it only counts: pos() still moves.
class RecentOutput {
 public:
  explicit RecentOutput(size_t capacity = 0) : ring_(capacity) {}
  uint64_t pos() const { return pos_; }
  void restart(uint64_t pos) { pos_ = pos, kept_ = 0; }
  // `k` bytes decoded at pos(); pos() moves past them.
  void append(const uint8_t* p, size_t k);
  // Copies what it holds of [offset, offset + len), from offset on; returns how much.
  size_t recall(uint64_t offset, uint8_t* out, size_t len) const;

 private:
  std::vector<uint8_t> ring_;
  uint64_t pos_ = 0, kept_ = 0;  // it holds [pos_ - kept_, pos_)
};

// A reader's claim on one of kMaxDecoders decoders kept at once, process-wide (each holds up to
// its window and kRecentBytes); the others decode afresh at every read, as without a cursor.
class DecoderSlot {
 public:
  static constexpr size_t kMaxDecoders = 16;
  static constexpr size_t kRecentBytes = 8 << 20;
  DecoderSlot() = default;
  ~DecoderSlot() { release(); }
  DecoderSlot(const DecoderSlot&) = delete;
  DecoderSlot& operator=(const DecoderSlot&) = delete;
  bool acquire();  // whether it is held (now, or already)
  void release();

 private:
  bool held_ = false;
};

}  // namespace cmkfs::oci
