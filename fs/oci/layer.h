// An image layer made readable at random: its tar entries, and where each file's bytes are in the
// decompressed stream (fs/oci/gzip_index.h for gzip layers; plain tar as it is). Built in one pass
// over the blob, which also checks the blob against its digest.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "fs/oci/gzip_index.h"
#include "fs/oci/manifest.h"
#include "fs/oci/tar.h"
#include "fs/oci/zstd_index.h"

namespace cmkfs::oci {

struct LayerIndex {
  std::vector<TarEntry> entries;
  std::optional<GzipIndex> gzip;  // none (nor zstd): the blob is the tar itself
  std::optional<ZstdIndex> zstd;
  uint64_t blob_size = 0;

  // Reads the blob `digest` once through `read`. EIO when it does not match the digest or is not
  // a tar, plain or compressed with gzip or zstd.
  static Result<std::shared_ptr<LayerIndex>> build(const ReadAt& read, const Digest& digest);
  // Reads decompressed bytes [offset, offset + len). `cursor` lets a reader's sequential reads
  // of a compressed layer go on from where the last stopped.
  Status read(const ReadAt& read, uint64_t offset, uint8_t* out, size_t len, size_t* n,
              DecoderCursor* cursor = nullptr) const;
  size_t memory() const;
};

}  // namespace cmkfs::oci
