#include "fs/oci/zstd_index.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>

namespace cmkfs::oci {
namespace {

constexpr size_t kChunk = 64 << 10;

struct DStreamFree {
  void operator()(ZSTD_DStream* d) const { ZSTD_freeDStream(d); }
};
using DStream = std::unique_ptr<ZSTD_DStream, DStreamFree>;

Status corrupt(const std::string& what) { return Status(EIO, "zstd: " + what); }

}  // namespace

Result<ZstdIndex> ZstdIndex::build(const ReadAt& read, const Sink& compressed, const Sink& decompressed,
                                   uint64_t max_output) {
  ZstdIndex index;
  DStream ds(ZSTD_createDStream());
  if (!ds || ZSTD_isError(ZSTD_initDStream(ds.get()))) return Status(ENOMEM, "zstd: cannot make a decoder");
  std::vector<uint8_t> in(kChunk), out(ZSTD_DStreamOutSize());
  uint64_t in_off = 0, total_in = 0, total_out = 0;
  bool frame_start = true, in_frame = false;
  for (;;) {
    size_t got = 0;
    if (Status s = read(in_off, in.data(), in.size(), &got); !s.ok()) return s;
    if (got == 0) break;
    if (Status s = compressed(in.data(), got); !s.ok()) return s;
    in_off += got;
    ZSTD_inBuffer input{in.data(), got, 0};
    while (input.pos < input.size) {
      if (frame_start) {
        index.frames_.push_back(Frame{total_out, total_in + input.pos});
        frame_start = false;
        if (index.frames_.size() > kMaxFrames) {  // thin out: every other frame stays a point
          std::vector<Frame> kept;
          for (size_t i = 0; i < index.frames_.size(); i += 2) kept.push_back(index.frames_[i]);
          index.frames_ = std::move(kept);
        }
      }
      ZSTD_outBuffer output{out.data(), out.size(), 0};
      size_t before = input.pos;
      size_t rc = ZSTD_decompressStream(ds.get(), &output, &input);
      if (ZSTD_isError(rc)) return corrupt(ZSTD_getErrorName(rc));
      in_frame = rc != 0;
      total_out += output.pos;
      if (total_out > max_output) return corrupt("more output than allowed (a decompression bomb?)");
      if (output.pos > 0) {
        if (Status s = decompressed(out.data(), output.pos); !s.ok()) return s;
      }
      if (rc == 0) frame_start = true;  // the next byte starts a frame
      if (input.pos == before && output.pos == 0 && rc != 0 && input.pos < input.size) return corrupt("no progress");
    }
    total_in += got;
  }
  if (in_frame || index.frames_.empty()) return corrupt("the stream ends early");
  index.size_ = total_out;
  return index;
}

namespace {

// A decoder and the compressed bytes it was given but has not used yet.
struct ZstdState : DecoderState {
  DStream ds;
  std::vector<uint8_t> in = std::vector<uint8_t>(kChunk);
  size_t in_pos = 0, in_len = 0;  // in[in_pos, in_len): read, not yet decoded
  uint64_t in_off = 0;            // the compressed offset to read next
};

}  // namespace

Status ZstdIndex::read(const ReadAt& read, uint64_t offset, uint8_t* out, size_t len, size_t* n, Cursor* cursor) const {
  *n = 0;
  if (offset >= size_ || len == 0) return Status::Ok();
  ZstdState local;
  std::optional<Cursor::Hold> held;
  ZstdState* st = DecoderCursor::use(cursor, local, held);
  size_t recalled = st->ds ? st->recent.recall(offset, out, len) : 0;
  *n += recalled, out += recalled, offset += recalled, len -= recalled;
  if (len == 0 || offset >= size_) return Status::Ok();
  auto it = std::upper_bound(frames_.begin(), frames_.end(), offset, [](uint64_t off, const Frame& f) { return off < f.out; });
  if (it == frames_.begin()) return corrupt("no access point");
  const Frame& f = *std::prev(it);
  // Go on from the cursor when it stopped between the frame's start and `offset`; else start
  // the frame afresh (a seek back, another frame, or no cursor).
  if (!st->ds || st->recent.pos() > offset || st->recent.pos() < f.out) {
    if (!st->ds) {
      st->ds.reset(ZSTD_createDStream());
      // Windows past 128 MiB (zstd --long=28 and up) are refused, not allocated per reader.
      if (!st->ds || ZSTD_isError(ZSTD_DCtx_setParameter(st->ds.get(), ZSTD_d_windowLogMax, 27))) {
        st->ds.reset();
        return Status(ENOMEM, "zstd: cannot make a decoder");
      }
    }
    if (ZSTD_isError(ZSTD_DCtx_reset(st->ds.get(), ZSTD_reset_session_only))) return corrupt("cannot reset the decoder");
    st->in_pos = st->in_len = 0, st->in_off = f.in;
    st->recent.restart(f.out);
  }
  std::vector<uint8_t> scratch(ZSTD_DStreamOutSize());
  while (len > 0) {
    if (st->in_pos == st->in_len) {
      size_t got = 0;
      if (Status s = read(st->in_off, st->in.data(), st->in.size(), &got); !s.ok()) {
        st->ds.reset();  // what it had is lost with the buffer: the next read starts afresh
        return s;
      }
      if (got == 0) return st->recent.pos() >= size_ ? Status::Ok() : corrupt("the stream ends early");
      st->in_off += got, st->in_pos = 0, st->in_len = got;
    }
    ZSTD_inBuffer input{st->in.data(), st->in_len, st->in_pos};
    // Into the caller's buffer once at `offset`; before it, into scratch.
    uint64_t pos = st->recent.pos();
    ZSTD_outBuffer output = pos < offset
                                ? ZSTD_outBuffer{scratch.data(), static_cast<size_t>(std::min<uint64_t>(scratch.size(), offset - pos)), 0}
                                : ZSTD_outBuffer{out, len, 0};
    size_t rc = ZSTD_decompressStream(st->ds.get(), &output, &input);
    if (ZSTD_isError(rc)) {
      st->ds.reset();
      return corrupt(ZSTD_getErrorName(rc));
    }
    bool progress = input.pos != st->in_pos || output.pos != 0;
    st->in_pos = input.pos;
    st->recent.append(static_cast<const uint8_t*>(output.dst), output.pos);
    if (pos >= offset) *n += output.pos, out += output.pos, len -= output.pos;
    if (!progress && rc != 0) {
      st->ds.reset();
      return corrupt("no progress");
    }
  }
  return Status::Ok();
}

}  // namespace cmkfs::oci
