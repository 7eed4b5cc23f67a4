// Random access into a gzip stream (an image layer), after one pass over it: an access point every
// `span` bytes of output holds the inflater's state there (bit offset and the 32 KiB window), so a
// read inflates at most `span` bytes it does not return. The zran technique of zlib's examples,
// extended to streams of several gzip members. Pure over a read callback: no store, no FUSE.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "crypto/base/status.h"
#include "fs/oci/decoder_cursor.h"

namespace cmkfs::oci {

// Reads up to `len` bytes at `offset` of the compressed stream; *n == 0 at its end.
using ReadAt = std::function<Status(uint64_t offset, uint8_t* buf, size_t len, size_t* n)>;
// Receives bytes in stream order; an error stops the pass.
using Sink = std::function<Status(const uint8_t* data, size_t n)>;

class GzipIndex {
 public:
  static constexpr uint64_t kDefaultSpan = 1 << 20;
  // At most this many access points (32 KiB each) are kept: past it every other one is dropped
  // and the span doubles, so a huge or hostile stream costs at most 128 MiB of windows.
  static constexpr size_t kMaxPoints = 4096;
  static constexpr uint64_t kDefaultMaxOutput = uint64_t{64} << 30;

  // Inflates the whole stream once, passing every compressed byte to `compressed` and every
  // decompressed byte to `decompressed`. EIO when it is not gzip, is corrupt (CRC, length) or ends
  // early, or when more than `max_output` bytes come out of it.
  static Result<GzipIndex> build(const ReadAt& read, const Sink& compressed, const Sink& decompressed,
                                 uint64_t span = kDefaultSpan, uint64_t max_output = kDefaultMaxOutput,
                                 size_t max_points = kMaxPoints);
  // A reader's inflater where its last read stopped, with the last bytes it made
  // (fs/oci/decoder_cursor.h): a read within those is copied, one past them before the next
  // access point goes on from there. Without it, each 128 KiB request inflated on average half a
  // span it did not return.
  using Cursor = DecoderCursor;

  // Reads decompressed bytes [offset, offset + len); fewer at the end of the stream. With a
  // cursor, from where it stopped when that is nearer, and leaves it where this read stops.
  Status read(const ReadAt& read, uint64_t offset, uint8_t* out, size_t len, size_t* n, Cursor* cursor = nullptr) const;

  uint64_t size() const { return size_; }  // decompressed
  size_t points() const { return points_.size(); }
  size_t memory() const;  // bytes held

 private:
  struct Point {
    uint64_t out = 0;      // decompressed offset
    uint64_t in = 0;       // compressed offset of the first byte to feed
    int bits = 0;          // bits of the byte before `in` still to use
    bool member = false;   // a gzip member starts at `in`: no window, a header to read
    std::unique_ptr<uint8_t[]> window;  // the 32 KiB of output before `out` (not for members)
  };
  std::vector<Point> points_;
  uint64_t size_ = 0;
};

}  // namespace cmkfs::oci
