// Reads, writes and resizes one file's content as sealed chunks in its object (layout in
// crypto/chunk_layout.h). Knows nothing of FUSE or inodes: callers pass the file's size and get
// the new one back.
//
// Invariant kept by every call: the object is exactly layout.phys_size(size) bytes long, and
// chunk i holds layout.length(i, size) bytes of plaintext. Holes (chunks never written inside the
// size) are all-zero bytes; they read as zeros only when `may_be_sparse` is set, otherwise an
// all-zero chunk is tampering and reads as EIO like any chunk that does not authenticate.
//
// Thread-safety: none; the caller serialises writes and resizes against everything else on the file.
#pragma once

#include <cstdint>

#include "crypto/chunk_codec.h"
#include "crypto/chunk_layout.h"
#include "fs/store/store.h"

namespace cmkfs::fs {

struct ChunkFile {
  ObjectFile& object;
  const crypto::ChunkLayout& layout;
  const crypto::ChunkBinding& binding;  // store, file and data-key generation of the AAD
  crypto::Bytes key;                    // the file's key
  bool may_be_sparse;
};

struct ChunkWrite {
  uint64_t new_size = 0;
  uint64_t chunks_sealed = 0;  // counts against the file key's random-nonce budget
  bool made_hole = false;      // the file now has chunks that were never written
};

// Reads [offset, offset + out.size()) clipped to `size`; returns the bytes read (0 at or past
// the end). EIO when a chunk does not authenticate or the object is shorter than the size says.
Result<size_t> read_chunks(const ChunkFile& f, uint64_t size, uint64_t offset, crypto::MutableBytes out);

// Writes `data` at `offset` into a file of `size` bytes: full chunks are sealed straight from
// `data`, partial ones are read, patched and resealed; all of them go out in one write.
// EFBIG past layout.max_file_size().
Result<ChunkWrite> write_chunks(const ChunkFile& f, uint64_t size, uint64_t offset, crypto::Bytes data);

// Changes the size: shrinking reseals the new last chunk, growing zero-fills the old last chunk
// and leaves holes after it.
Result<ChunkWrite> resize_chunks(const ChunkFile& f, uint64_t size, uint64_t new_size);

// After a crash: the size whose chunks authenticate in an object `object_length` bytes long, for
// a file whose last saved size is `saved`. Writes after that save may have rewritten the partial
// last chunk in place (longer) and appended more, or cut the file: from the chunk that held the
// saved size's last byte on, each chunk is tried as a full chunk, as the object's last, and as it
// was at the saved size, and the walk stops at the first that opens as none of them. The chunks
// before it are taken as they are (fsck checks them). The caller trims the object to the result.
Result<uint64_t> recoverable_size(const ChunkFile& f, uint64_t saved, uint64_t object_length);

}  // namespace cmkfs::fs
