// Reading whole files outside a mount, through the same chunk path the mount uses.
#include <vector>

#include "fs/core/file_crypto.h"
#include "fs/core/filesystem.h"

namespace cmkfs::fs {

Status read_plaintext(OpenStore& store, Keyring& keyring, ObjectFile& object, const meta::InodeRecord& rec,
                      const std::function<void(crypto::Bytes)>& fn) {
  auto fc = file_crypto(keyring.access(), store.super.store_id, rec);
  if (!fc.ok()) return fc.status();
  crypto::ChunkLayout layout(store.super.chunk_size);
  ChunkFile f = fc->chunks(object, layout);
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < rec.size; off += buf.size()) {
    auto n = read_chunks(f, rec.size, off, buf);
    if (!n.ok()) return n.status();
    fn({buf.data(), *n});
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
