#include "fs/oci/gzip_index.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace cmkfs::oci {
namespace {

constexpr size_t kWindow = 32768;
constexpr size_t kChunk = 64 << 10;  // compressed bytes read at a time

// A z_stream that ends itself.
struct Inflater {
  z_stream s{};
  bool live = false;
  int init(int window_bits) {
    end();
    std::memset(&s, 0, sizeof s);
    int rc = inflateInit2(&s, window_bits);
    live = rc == Z_OK;
    return rc;
  }
  void end() {
    if (live) inflateEnd(&s);
    live = false;
  }
  ~Inflater() { end(); }
};

constexpr int kGzip = 16 + 15;  // a gzip header and trailer, checked
constexpr int kRaw = -15;       // bare deflate, from an access point
constexpr size_t kMaxMembers = 1 << 16;  // layers have one, or a few from parallel compressors

Status corrupt(const char* what) { return Status(EIO, std::string("gzip: ") + what); }

}  // namespace

size_t GzipIndex::memory() const {
  size_t n = points_.capacity() * sizeof(Point);
  for (const auto& p : points_) n += p.window ? kWindow : 0;
  return n;
}

Result<GzipIndex> GzipIndex::build(const ReadAt& read, const Sink& compressed, const Sink& decompressed, uint64_t span,
                                   uint64_t max_output, size_t max_points) {
  GzipIndex index;
  Inflater z;
  if (z.init(kGzip) != Z_OK) return Status(ENOMEM, "inflateInit2 failed");
  std::vector<uint8_t> in(kChunk);
  std::unique_ptr<uint8_t[]> window(new uint8_t[kWindow]);
  uint64_t in_off = 0, total_in = 0, total_out = 0, last = 0;
  bool member_start = true, stream_end = false;
  size_t members = 0;
  for (;;) {
    if (z.s.avail_in == 0) {
      size_t n = 0;
      if (Status s = read(in_off, in.data(), in.size(), &n); !s.ok()) return s;
      if (n == 0) break;
      if (Status s = compressed(in.data(), n); !s.ok()) return s;
      in_off += n;
      z.s.next_in = in.data();
      z.s.avail_in = static_cast<uInt>(n);
    }
    if (member_start) {  // every member starts with an access point: its header is read from there
      if (++members > kMaxMembers) return corrupt("too many gzip members");
      index.points_.push_back(Point{total_out, total_in, 0, true, nullptr});
      last = total_out;
      member_start = false;
      stream_end = false;
    }
    if (z.s.avail_out == 0) {
      z.s.next_out = window.get();
      z.s.avail_out = kWindow;
    }
    uint8_t* out_start = z.s.next_out;
    uInt before_in = z.s.avail_in, before_out = z.s.avail_out;
    int rc = inflate(&z.s, Z_BLOCK);
    total_in += before_in - z.s.avail_in;
    size_t produced = before_out - z.s.avail_out;
    total_out += produced;
    if (total_out > max_output) return corrupt("more output than allowed (a decompression bomb?)");
    if (produced > 0) {
      if (Status s = decompressed(out_start, produced); !s.ok()) return s;
    }
    if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR) return corrupt("corrupt stream");
    if (rc == Z_MEM_ERROR) return Status(ENOMEM, "gzip: out of memory");
    if (rc == Z_STREAM_END) {
      // Another member may follow, and its first bytes may be in `in` already.
      Bytef* next = z.s.next_in;
      uInt avail = z.s.avail_in;
      if (z.init(kGzip) != Z_OK) return Status(ENOMEM, "inflateInit2 failed");
      z.s.next_in = next;
      z.s.avail_in = avail;
      member_start = true;
      stream_end = true;
      continue;
    }
    if (rc == Z_BUF_ERROR && z.s.avail_in != 0) return corrupt("no progress");
    // At the end of a deflate block, past `span` bytes since the last point: a new point.
    if ((z.s.data_type & 128) && !(z.s.data_type & 64) && total_out - last >= span) {
      Point p{total_out, total_in, z.s.data_type & 7, false, std::unique_ptr<uint8_t[]>(new uint8_t[kWindow])};
      size_t left = z.s.avail_out;  // the window is circular: its oldest bytes are at the write position
      if (left) std::memcpy(p.window.get(), window.get() + kWindow - left, left);
      if (left < kWindow) std::memcpy(p.window.get() + left, window.get(), kWindow - left);
      index.points_.push_back(std::move(p));
      last = total_out;
      if (index.points_.size() > max_points) {  // thin out: every other point (member starts stay)
        std::vector<Point> kept;
        for (size_t i = 0; i < index.points_.size(); ++i) {
          if (i % 2 == 0 || index.points_[i].member) kept.push_back(std::move(index.points_[i]));
        }
        index.points_ = std::move(kept);
        span *= 2;
      }
    }
  }
  if (!stream_end) return corrupt("the stream ends early");
  // The member start recorded for input that never came.
  if (!index.points_.empty() && index.points_.back().member && index.points_.back().in == total_in) {
    index.points_.pop_back();
  }
  if (index.points_.empty()) return corrupt("empty stream");
  index.size_ = total_out;
  return index;
}

namespace {

// An inflater and the compressed bytes it was given.
struct GzipState : DecoderState {
  Inflater z;
  bool ended = false;  // its member's end was reached: the next member has its own point
  std::vector<uint8_t> in = std::vector<uint8_t>(kChunk);
  uint64_t in_off = 0;  // the compressed offset to read next

  Status fail(Status s) {  // what it had is lost: the next read starts afresh
    z.end();
    return s;
  }
};

}  // namespace

Status GzipIndex::read(const ReadAt& read, uint64_t offset, uint8_t* out, size_t len, size_t* n, Cursor* cursor) const {
  *n = 0;
  if (offset >= size_ || len == 0) return Status::Ok();
  GzipState local;
  std::optional<Cursor::Hold> held;
  GzipState* st = DecoderCursor::use(cursor, local, held);
  // Sets `st` to inflate from `p`.
  auto start = [&](const Point& p) {
    if (st->z.init(p.member ? kGzip : kRaw) != Z_OK) return Status(ENOMEM, "inflateInit2 failed");
    st->ended = false;
    st->in_off = p.in;
    st->recent.restart(p.out);
    if (!p.member) {
      if (p.bits) {
        uint8_t byte = 0;
        size_t got = 0;
        if (Status s = read(p.in - 1, &byte, 1, &got); !s.ok()) return st->fail(s);
        if (got != 1) return st->fail(corrupt("the stream ends early"));
        inflatePrime(&st->z.s, p.bits, byte >> (8 - p.bits));
      }
      inflateSetDictionary(&st->z.s, p.window.get(), kWindow);
    }
    return Status::Ok();
  };
  size_t recalled = st->z.live ? st->recent.recall(offset, out, len) : 0;
  *n += recalled, out += recalled, offset += recalled, len -= recalled;
  std::vector<uint8_t> discard;
  const Point* last_point = nullptr;
  size_t last_n = 0;
  while (len > 0 && offset < size_) {
    // The last point at or before `offset`.
    auto it = std::upper_bound(points_.begin(), points_.end(), offset, [](uint64_t off, const Point& p) { return off < p.out; });
    if (it == points_.begin()) return st->fail(corrupt("no access point"));
    const Point& p = *std::prev(it);
    // Go on from where the inflater stopped when that is between the point and `offset`.
    uint64_t at = st->recent.pos();
    if (!st->z.live || st->ended || at > offset || at < p.out) {
      // The same point again with nothing read since: the stream is not the one indexed.
      if (&p == last_point && *n == last_n) return st->fail(corrupt("the stream differs from its index"));
      last_point = &p;
      last_n = *n;
      CMKFS_RETURN_IF_ERROR(start(p));
    }
    while (len > 0 && !st->ended) {
      if (st->z.s.avail_in == 0) {
        size_t got = 0;
        if (Status s = read(st->in_off, st->in.data(), st->in.size(), &got); !s.ok()) return st->fail(s);
        if (got == 0) return st->fail(corrupt("the stream ends early"));
        st->in_off += got;
        st->z.s.next_in = st->in.data();
        st->z.s.avail_in = static_cast<uInt>(got);
      }
      // Inflate into the caller's buffer once at `offset`; before it, into a scratch buffer.
      uint64_t pos = st->recent.pos();
      uint8_t* dst = out;
      size_t room = len;
      if (pos < offset) {
        discard.resize(std::min<uint64_t>(offset - pos, 256 << 10));
        dst = discard.data();
        room = discard.size();
      }
      st->z.s.next_out = dst;
      st->z.s.avail_out = static_cast<uInt>(std::min<size_t>(room, 1u << 30));
      uInt before = st->z.s.avail_out;
      int rc = inflate(&st->z.s, Z_NO_FLUSH);
      size_t produced = before - st->z.s.avail_out;
      if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR) return st->fail(corrupt("corrupt stream"));
      if (rc == Z_MEM_ERROR) return st->fail(Status(ENOMEM, "gzip: out of memory"));
      st->recent.append(dst, produced);
      if (pos >= offset) *n += produced, out += produced, len -= produced, offset += produced;
      if (rc == Z_STREAM_END) st->ended = true;  // the next member has its own point
      if (rc == Z_BUF_ERROR && st->z.s.avail_in != 0 && produced == 0) return st->fail(corrupt("no progress"));
    }
  }
  return Status::Ok();
}

}  // namespace cmkfs::oci
