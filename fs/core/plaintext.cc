// Reading whole files outside a mount, through the same chunk path the mount uses.
#include <algorithm>
#include <memory>

#include "fs/core/file_crypto.h"
#include "fs/core/filesystem.h"

namespace cmkfs::fs {

Status read_plaintext(OpenStore& store, Keyring& keyring, ObjectFile& object, const meta::InodeRecord& rec,
                      const std::function<void(crypto::Bytes)>& fn) {
  auto fc = file_crypto(keyring.access(), store.super.store_id, rec);
  if (!fc.ok()) return fc.status();
  crypto::ChunkLayout layout(store.super.chunk_size);
  ChunkFile f = fc->chunks(object, layout);
  // Not zero-filled, and no larger than the file: for a store of small files, zeroing 1 MiB per
  // file was a quarter of fsck's time.
  size_t size = static_cast<size_t>(std::min<uint64_t>(rec.size, 1 << 20));
  auto buf = std::make_unique_for_overwrite<uint8_t[]>(size);
  for (uint64_t off = 0; off < rec.size; off += size) {
    auto n = read_chunks(f, rec.size, off, {buf.get(), size});
    if (!n.ok()) return n.status();
    fn({buf.get(), *n});
  }
  return Status::Ok();
}

Status read_plaintext(OpenStore& store, Keyring& keyring, const meta::InodeRecord& rec,
                      const std::function<void(crypto::Bytes)>& fn) {
  auto object = store.objects->open(rec.file_id, false);
  if (!object.ok()) return object.status();
  return read_plaintext(store, keyring, **object, rec, fn);
}

}  // namespace cmkfs::fs
