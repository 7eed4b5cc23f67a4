// What opening or sealing one file's chunks needs: its key, the AAD binding (store, file, data-key
// generation) and whether an all-zero chunk may read as a hole. Derived from the inode record, for
// the mount and the offline commands alike.
#pragma once

#include "crypto/chunk_layout.h"
#include "fs/core/chunk_file.h"
#include "fs/store/store.h"
#include "meta/format.h"
#include "meta/meta.h"

namespace cmkfs::fs {

struct FileCrypto {
  Keyring::FileKey key;
  crypto::ChunkBinding binding;
  bool may_be_sparse;

  // REQUIRES: this FileCrypto outlives the ChunkFile (it refers to the key and the binding).
  ChunkFile chunks(ObjectFile& object, const crypto::ChunkLayout& layout) const {
    return ChunkFile{object, layout, binding, key->bytes(), may_be_sparse};
  }
};

inline Result<FileCrypto> file_crypto(const Keyring::Access& a, const Id128& store_id,
                                      const meta::InodeRecord& rec) {
  auto key = a.file_key(rec.file_id, rec.dek_generation);
  if (!key.ok()) return key.status();
  return FileCrypto{std::move(*key), crypto::ChunkBinding{meta::kFormatVersion, store_id, rec.file_id, rec.dek_generation},
                    (rec.flags & meta::kInodeMayBeSparse) != 0};
}

}  // namespace cmkfs::fs
