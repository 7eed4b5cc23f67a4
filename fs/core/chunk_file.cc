#include "fs/core/chunk_file.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "fs/core/parallel.h"

namespace cmkfs::fs {
namespace {

using crypto::kChunkOverhead;

// Large requests split across cores in pieces of at least this many bytes: below that the
// handoff costs more than the crypto it would share.
constexpr size_t kParallelBytes = 256 << 10;

size_t chunks_per_task(const crypto::ChunkLayout& L) {
  return std::max<size_t>(1, kParallelBytes / L.chunk_size());
}

// The first error any piece of a parallel loop met.
class FirstError {
 public:
  void set(Status s) {
    std::lock_guard<std::mutex> g(mu_);
    if (status_.ok()) status_ = std::move(s);
  }
  Status take() { return std::move(status_); }

 private:
  std::mutex mu_;
  Status status_;
};

// Staging buffers reused per thread: at most one request (1 MiB + overhead) and one chunk each.
std::vector<uint8_t>& staging() {
  thread_local std::vector<uint8_t> buf;
  return buf;
}

std::string where(uint64_t index) { return "chunk " + std::to_string(index); }

// Opens chunk `index` from its sealed bytes. A hole reads as zeros in a file that may have holes.
Status open_chunk(const ChunkFile& f, crypto::ChunkOpener& opener, uint64_t index, crypto::Bytes phys,
                  crypto::MutableBytes plain) {
  Status s = opener.open(index, phys, plain);
  if (s.ok()) return s;
  if (s.code() == EBADMSG && f.may_be_sparse && crypto::is_all_zero(phys)) {
    std::memset(plain.data(), 0, phys.size() - kChunkOverhead);
    return Status::Ok();
  }
  return Status::Corruption(where(index) + " does not authenticate (tampered, moved or damaged)");
}

// Reads and opens chunk `index` of a file of `size` bytes into `plain` (length(index, size) bytes).
Status load_chunk(const ChunkFile& f, crypto::ChunkOpener& opener, uint64_t index, uint64_t size,
                  crypto::PlainBuffer& plain) {
  uint32_t len = f.layout.length(index, size);
  std::vector<uint8_t> phys(len + kChunkOverhead);
  auto got = f.object.read_at(f.layout.phys_offset(index), phys);
  if (!got.ok()) return got.status();
  if (*got != phys.size()) return Status::Corruption(where(index) + " is missing: the object is truncated");
  plain.resize(len);
  return open_chunk(f, opener, index, phys, plain);
}

// Reseals chunk `index` with `plain` and writes it on its own.
Status store_chunk(const ChunkFile& f, uint64_t index, crypto::Bytes plain) {
  std::vector<uint8_t> phys(plain.size() + kChunkOverhead);
  crypto::ChunkSealer sealer(f.key, f.binding);
  CMKFS_RETURN_IF_ERROR(sealer.seal(index, plain, phys));
  return f.object.write_at(f.layout.phys_offset(index), phys);
}

// Rewrites the last chunk of a file of `size` bytes so that it holds `new_len` bytes: cut, or
// extended with zeros.
Status reseal_last_chunk(const ChunkFile& f, uint64_t size, uint32_t new_len) {
  uint64_t index = f.layout.index_of(size - 1);
  crypto::PlainBuffer plain;
  crypto::ChunkOpener opener(f.key, f.binding);
  CMKFS_RETURN_IF_ERROR(load_chunk(f, opener, index, size, plain));
  plain.resize(new_len, 0);
  return store_chunk(f, index, plain);
}

}  // namespace

Result<size_t> read_chunks(const ChunkFile& f, uint64_t size, uint64_t offset, crypto::MutableBytes out) {
  if (offset >= size || out.empty()) return size_t{0};
  const auto& L = f.layout;
  uint64_t end = std::min<uint64_t>(size, offset + out.size());
  uint64_t first = L.index_of(offset), last = L.index_of(end - 1);
  uint64_t phys_begin = L.phys_offset(first);
  uint64_t phys_end = L.phys_end(last, size);

  std::vector<uint8_t>& phys = staging();
  phys.resize(phys_end - phys_begin);

  // Each part reads its own byte range and opens its chunks: the copies run in parallel too.
  FirstError error;
  parallel_for(last - first + 1, chunks_per_task(L), [&](size_t b, size_t e) {
    uint64_t lo = L.phys_offset(first + b);
    uint64_t hi = L.phys_end(first + e - 1, size);
    auto got = f.object.read_at(lo, {phys.data() + (lo - phys_begin), hi - lo});
    if (!got.ok()) return error.set(got.status());
    crypto::ChunkOpener opener(f.key, f.binding);
    crypto::PlainBuffer partial;
    for (uint64_t i = first + b; i < first + e; ++i) {
      uint32_t len = L.length(i, size);
      uint64_t at = L.phys_offset(i) - lo;
      if (at + len + kChunkOverhead > *got) {
        return error.set(Status::Corruption(where(i) + " is missing: the object is truncated"));
      }
      crypto::Bytes sealed(phys.data() + (lo - phys_begin) + at, len + kChunkOverhead);
      uint64_t start = L.start_of(i);
      uint64_t a = std::max(offset, start) - start, z = std::min(end, start + len) - start;
      size_t dst = std::max(offset, start) - offset;
      Status s;
      if (a == 0 && z == len) {  // the whole chunk is wanted: open it in place
        s = open_chunk(f, opener, i, sealed, out.subspan(dst, len));
      } else {
        partial.resize(len);
        s = open_chunk(f, opener, i, sealed, partial);
        if (s.ok()) std::memcpy(out.data() + dst, partial.data() + a, z - a);
      }
      if (!s.ok()) return error.set(std::move(s));
    }
  });
  CMKFS_RETURN_IF_ERROR(error.take());
  return static_cast<size_t>(end - offset);
}

Result<ChunkWrite> write_chunks(const ChunkFile& f, uint64_t size, uint64_t offset, crypto::Bytes data) {
  const auto& L = f.layout;
  ChunkWrite w;
  w.new_size = size;
  if (data.empty()) return w;
  uint64_t end = offset + data.size();
  if (end > L.max_file_size() || end < offset) return Status(EFBIG, "write beyond the largest file size");
  w.new_size = std::max(size, end);
  uint64_t first = L.index_of(offset), last = L.index_of(end - 1);

  // A partial last chunk before the write becomes a full one, zero-filled up to the write.
  if (size % L.chunk_size() != 0 && L.index_of(size - 1) < first) {
    CMKFS_RETURN_IF_ERROR(reseal_last_chunk(f, size, L.chunk_size()));
    ++w.chunks_sealed;
  }
  w.made_hole = first > L.count(size);

  // Partial chunks at either end of the write keep the bytes the write does not cover.
  auto covers_whole = [&](uint64_t i) {
    uint64_t start = L.start_of(i);
    return offset <= start && end >= start + L.length(i, w.new_size);
  };
  auto needs_old = [&](uint64_t i) { return !covers_whole(i) && L.length(i, size) > 0; };
  crypto::PlainBuffer head, tail;
  {
    crypto::ChunkOpener opener(f.key, f.binding);
    if (needs_old(first)) CMKFS_RETURN_IF_ERROR(load_chunk(f, opener, first, size, head));
    if (last != first && needs_old(last)) CMKFS_RETURN_IF_ERROR(load_chunk(f, opener, last, size, tail));
  }

  uint64_t phys_begin = L.phys_offset(first);
  std::vector<uint8_t>& phys = staging();
  phys.resize(L.phys_end(last, w.new_size) - phys_begin);
  // Each part seals its chunks and writes them; ranges of parts are disjoint. Parts are no
  // smaller than the object's write unit: two parts of one S3 stripe would each read, change
  // and put back the whole stripe.
  FirstError error;
  size_t per_task = std::max<size_t>(chunks_per_task(L), f.object.write_unit() / L.phys_stride());
  parallel_for(last - first + 1, per_task, [&](size_t b, size_t e) {
    crypto::ChunkSealer sealer(f.key, f.binding);
    for (uint64_t i = first + b; i < first + e; ++i) {
      uint64_t start = L.start_of(i);
      uint32_t len = L.length(i, w.new_size);
      crypto::MutableBytes dst(phys.data() + (L.phys_offset(i) - phys_begin), len + kChunkOverhead);
      Status s;
      if (covers_whole(i)) {
        s = sealer.seal(i, data.subspan(start - offset, len), dst);
      } else {
        crypto::PlainBuffer& plain = i == first ? head : tail;  // only the ends are partial
        plain.resize(len, 0);  // bytes past the old end read as zeros
        uint64_t a = std::max(offset, start), z = std::min(end, start + len);
        std::memcpy(plain.data() + (a - start), data.data() + (a - offset), z - a);
        s = sealer.seal(i, plain, dst);
      }
      if (!s.ok()) return error.set(std::move(s));
    }
    // Each part writes its own contiguous byte range: the copies run in parallel too.
    uint64_t lo = L.phys_offset(first + b);
    uint64_t hi = L.phys_end(first + e - 1, w.new_size);
    Status s = f.object.write_at(lo, {phys.data() + (lo - phys_begin), hi - lo});
    if (!s.ok()) error.set(std::move(s));
  });
  CMKFS_RETURN_IF_ERROR(error.take());
  w.chunks_sealed += last - first + 1;
  return w;
}

Result<ChunkWrite> resize_chunks(const ChunkFile& f, uint64_t size, uint64_t new_size) {
  const auto& L = f.layout;
  ChunkWrite w;
  w.new_size = new_size;
  if (new_size == size) return w;
  if (new_size > L.max_file_size()) return Status(EFBIG, "size beyond the largest file size");
  if (new_size < size) {
    if (new_size % L.chunk_size() != 0) {
      // The chunk that becomes the last one is cut; read it under the old size.
      uint64_t index = L.index_of(new_size - 1);
      crypto::PlainBuffer plain;
      crypto::ChunkOpener opener(f.key, f.binding);
      CMKFS_RETURN_IF_ERROR(load_chunk(f, opener, index, size, plain));
      plain.resize(L.length(index, new_size));
      CMKFS_RETURN_IF_ERROR(store_chunk(f, index, plain));
      ++w.chunks_sealed;
    }
  } else {
    if (size % L.chunk_size() != 0) {
      CMKFS_RETURN_IF_ERROR(reseal_last_chunk(f, size, L.length(L.index_of(size - 1), new_size)));
      ++w.chunks_sealed;
    }
    w.made_hole = L.count(new_size) > L.count(size);
  }
  CMKFS_RETURN_IF_ERROR(f.object.truncate(L.phys_size(new_size)));
  return w;
}

Result<uint64_t> recoverable_size(const ChunkFile& f, uint64_t saved, uint64_t object_length) {
  const auto& L = f.layout;
  uint64_t stride = L.phys_stride(), cs = L.chunk_size();
  uint64_t full = object_length / stride, rest = object_length % stride;
  uint64_t present = full + (rest > kChunkOverhead ? 1 : 0);  // chunks with at least one byte of data
  uint64_t start = saved == 0 ? 0 : L.index_of(saved - 1);
  if (present == 0) return uint64_t{0};
  start = std::min(start, present - 1);  // a cut file: its last chunk left is where to look
  uint64_t size = start * cs;
  crypto::ChunkOpener opener(f.key, f.binding);
  crypto::PlainBuffer plain;
  std::vector<uint8_t> phys;
  for (uint64_t i = start; i < present; ++i) {
    std::vector<uint64_t> lengths;
    if (i < full) lengths.push_back(cs);
    if (i == full && rest > kChunkOverhead) lengths.push_back(rest - kChunkOverhead);
    if (saved > 0 && i == L.index_of(saved - 1)) lengths.push_back(saved - i * cs);
    bool opened = false;
    for (uint64_t len : lengths) {
      phys.resize(len + kChunkOverhead);
      auto got = f.object.read_at(L.phys_offset(i), phys);
      if (!got.ok()) return got.status();
      if (*got != phys.size()) continue;
      plain.resize(len);
      if (open_chunk(f, opener, i, phys, plain).ok()) {
        size = i * cs + len;
        opened = true;
        break;
      }
    }
    if (!opened || size % cs != 0) break;  // a partial chunk is the last one
  }
  return size;
}

}  // namespace cmkfs::fs
