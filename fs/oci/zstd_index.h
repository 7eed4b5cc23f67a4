// Random access into a zstd stream (an image layer), after one pass over it: every frame decodes
// on its own, so each frame's start is an access point. Seekable layers (many frames) read from
// the frame holding the offset; a stream of one frame is read from its start.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fs/oci/decoder_cursor.h"
#include "fs/oci/gzip_index.h"

namespace cmkfs::oci {

class ZstdIndex {
 public:
  static constexpr size_t kMaxFrames = 1 << 16;  // past it every other one is dropped

  // Decompresses the whole stream once, like GzipIndex::build. EIO when it is not zstd, is
  // corrupt or ends early, or when more than `max_output` bytes come out of it.
  static Result<ZstdIndex> build(const ReadAt& read, const Sink& compressed, const Sink& decompressed,
                                 uint64_t max_output = GzipIndex::kDefaultMaxOutput);
  // A reader's decoder where its last read stopped, with the last bytes it decoded
  // (fs/oci/decoder_cursor.h). A read within those is copied; one past them, before the next
  // access point, goes on from there instead of decoding from the frame's start (a file read in
  // requests of 128 KiB near the end of a one-frame layer of a gigabyte otherwise decodes the
  // layer from its start at every request).
  using Cursor = DecoderCursor;

  // Reads decompressed bytes [offset, offset + len); fewer at the end of the stream. With a
  // cursor, from where it stopped when that is nearer, and leaves it where this read stops.
  Status read(const ReadAt& read, uint64_t offset, uint8_t* out, size_t len, size_t* n, Cursor* cursor = nullptr) const;

  uint64_t size() const { return size_; }
  size_t frames() const { return frames_.size(); }
  size_t memory() const { return frames_.capacity() * sizeof(Frame); }

 private:
  struct Frame {
    uint64_t out = 0, in = 0;  // where it starts, decompressed and compressed
  };
  std::vector<Frame> frames_;
  uint64_t size_ = 0;
};

}  // namespace cmkfs::oci
