#include "fs/oci/layer.h"

#include <algorithm>

#include "crypto/base/hex.h"
#include "crypto/crypto.h"

namespace cmkfs::oci {

Result<std::shared_ptr<LayerIndex>> LayerIndex::build(const ReadAt& read, const Digest& digest) {
  auto index = std::make_shared<LayerIndex>();
  uint8_t magic[4] = {0};
  size_t got = 0;
  if (Status s = read(0, magic, sizeof magic, &got); !s.ok()) return s;
  crypto::Sha256 sha;
  TarReader tar;
  auto hash = [&](const uint8_t* p, size_t n) {
    sha.update(crypto::Bytes(p, n));
    index->blob_size += n;
    return Status::Ok();
  };
  auto parse = [&](const uint8_t* p, size_t n) { return tar.feed(p, n); };
  if (got >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
    auto z = ZstdIndex::build(read, hash, parse);
    if (!z.ok()) return Status(z.status().code(), "layer " + digest.str() + ": " + z.status().message());
    index->zstd = std::move(*z);
  } else if (got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    auto gz = GzipIndex::build(read, hash, parse);
    if (!gz.ok()) return Status(gz.status().code(), "layer " + digest.str() + ": " + gz.status().message());
    index->gzip = std::move(*gz);
  } else {
    std::vector<uint8_t> buf(1 << 20);
    for (uint64_t off = 0;;) {
      size_t n = 0;
      if (Status s = read(off, buf.data(), buf.size(), &n); !s.ok()) return s;
      if (n == 0) break;
      (void)hash(buf.data(), n);
      if (Status s = parse(buf.data(), n); !s.ok()) return Status(EIO, "layer " + digest.str() + ": " + s.message());
      off += n;
    }
  }
  if (to_hex(sha.finish()) != digest.hex) return Status(EIO, "layer " + digest.str() + " does not match its digest");
  if (Status s = tar.finish(); !s.ok()) return Status(EIO, "layer " + digest.str() + ": " + s.message());
  index->entries = std::move(tar.entries());
  return index;
}

Status LayerIndex::read(const ReadAt& read, uint64_t offset, uint8_t* out, size_t len, size_t* n,
                        DecoderCursor* cursor) const {
  if (gzip) return gzip->read(read, offset, out, len, n, cursor);
  if (zstd) return zstd->read(read, offset, out, len, n, cursor);
  *n = 0;
  while (len > 0) {
    size_t got = 0;
    if (Status s = read(offset, out + *n, len, &got); !s.ok()) return s;
    if (got == 0) break;
    *n += got, offset += got, len -= got;
  }
  return Status::Ok();
}

size_t LayerIndex::memory() const {
  size_t n = sizeof *this + (gzip ? gzip->memory() : 0) + (zstd ? zstd->memory() : 0);
  for (const auto& e : entries) n += sizeof e + e.path.capacity() + e.link.capacity();
  return n;
}

}  // namespace cmkfs::oci
