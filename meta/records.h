// Internal to meta/: binary encoding of inode and directory-entry records, and record sealing.
#pragma once

#include <string>
#include <string_view>

#include "meta/meta.h"

namespace cmkfs::meta {

std::string encode_inode(const InodeRecord& rec);
Result<InodeRecord> decode_inode(uint64_t ino, std::string_view bytes);  // EIO when malformed

std::string encode_entry(const DirEntry& e);
Result<DirEntry> decode_entry(uint64_t slot, std::string_view bytes);

// nonce | AES-256-GCM(plain) | tag, with AAD = table | 0 | key: a record only opens in its place.
Result<std::string> seal_record(const crypto::GcmKey& key, std::string_view table, std::string_view rec_key,
                                std::string_view plain);
// EIO (naming table and record) when the value does not authenticate.
Result<std::string> open_record(const crypto::GcmKey& key, std::string_view table, std::string_view rec_key,
                                std::string_view sealed);
// The same under the store's current meta key, else (a data-key rotation in progress) under the
// older ones; *stale tells which.
Result<std::string> open_record(const crypto::StoreKeys& keys, std::string_view table, std::string_view rec_key,
                                std::string_view sealed, bool* stale = nullptr);

std::string be64_key(uint64_t v);
std::string entry_key(uint64_t parent, uint64_t slot);
// The first slot of the window where `name` may live in `parent`.
uint64_t entry_home_slot(const crypto::HmacKey& name_key, uint64_t parent, std::string_view name);

}  // namespace cmkfs::meta
