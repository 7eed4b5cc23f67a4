#include "fs/offline.h"

#include <ostream>
#include <vector>

#include "crypto/hex.h"
#include "fs/audit.h"
#include "fs/cli.h"
#include "fs/file_crypto.h"

namespace cmkfs::fs {

std::unique_ptr<OfflineStore> open_offline(const std::string& path, const char* reason, std::ostream& err,
                                           int* exit_code) {
  auto fail = [&](const Status& s, int code) {
    err << "cmkfs: " << s.message() << "\n";
    *exit_code = code;
    return nullptr;
  };
  auto st = open_store(path, /*exclusive=*/true, /*read_only=*/true);
  if (!st.ok()) return fail(st.status(), st.status().code() == EBUSY ? kExitBusy : kExitNotAStore);
  OpenStore& s = **st;
  AuditLog audit(default_audit_path(s.super.store_id), to_hex(s.super.store_id));
  auto provider = keyclient::make_provider(s.kek, s.super.store_id);
  if (!provider.ok()) return fail(provider.status(), kExitKey);
  auto dek = unlock(s, **provider);
  std::string key_id = s.kek.provider == "vault" ? s.kek.versioned_key_identifier : "local";
  audit.record("unwrap", key_id, dek.ok() ? "ok" : "failed", {{"reason", reason}});
  if (!dek.ok()) {
    return fail(Status(dek.status().code(), "cannot unlock the store's data key: " + dek.status().message()),
                dek.status().code() == EIO ? kExitNotAStore : kExitKey);
  }
  auto o = std::make_unique<OfflineStore>();
  o->store = std::move(*st);
  Status installed = o->keyring.install(o->store->super.dek_generation, std::move(*dek));
  if (!installed.ok()) return fail(installed, kExitKey);
  return o;
}

Status read_plaintext(OfflineStore& o, ObjectFile& object, const meta::InodeRecord& rec,
                      const std::function<void(crypto::Bytes)>& fn) {
  auto fc = file_crypto(o.keyring.access(), o.store->super.store_id, rec);
  if (!fc.ok()) return fc.status();
  crypto::ChunkLayout layout(o.store->super.chunk_size);
  ChunkFile f = fc->chunks(object, layout);
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < rec.size; off += buf.size()) {
    auto n = read_chunks(f, rec.size, off, buf);
    if (!n.ok()) return n.status();
    fn({buf.data(), *n});
  }
  return Status::Ok();
}

Status read_plaintext(OfflineStore& o, const meta::InodeRecord& rec, const std::function<void(crypto::Bytes)>& fn) {
  auto object = o.store->objects->open(rec.file_id, false);
  if (!object.ok()) return object.status();
  return read_plaintext(o, **object, rec, fn);
}

}  // namespace cmkfs::fs
