#include "meta/records.h"

#include <cstring>

#include "crypto/base/coding.h"

namespace cmkfs::meta {
namespace {

class Writer {
 public:
  void u8(uint8_t v) { s_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) {
    uint8_t b[4];
    put_be32(b, v);
    s_.append(reinterpret_cast<char*>(b), 4);
  }
  void u64(uint64_t v) {
    uint8_t b[8];
    put_be64(b, v);
    s_.append(reinterpret_cast<char*>(b), 8);
  }
  void time(const Timespec& t) {
    u64(static_cast<uint64_t>(t.sec));
    u32(t.nsec);
  }
  void raw(const void* p, size_t n) { s_.append(static_cast<const char*>(p), n); }
  void str(std::string_view v) {
    u32(static_cast<uint32_t>(v.size()));
    s_.append(v);
  }
  std::string take() { return std::move(s_); }

 private:
  std::string s_;
};

// Reads fields in order; any read past the end makes ok() false.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == s_.size(); }
  uint8_t u8() { return take(1) ? static_cast<uint8_t>(s_[pos_ - 1]) : 0; }
  uint32_t u32() { return take(4) ? get_be32(ptr(4)) : 0; }
  uint64_t u64() { return take(8) ? get_be64(ptr(8)) : 0; }
  Timespec time() {
    Timespec t;
    t.sec = static_cast<int64_t>(u64());
    t.nsec = u32();
    return t;
  }
  void raw(void* out, size_t n) {
    if (take(n)) std::memcpy(out, ptr(n), n);
  }
  std::string str() {
    uint32_t n = u32();
    return take(n) ? std::string(s_.substr(pos_ - n, n)) : std::string();
  }

 private:
  bool take(size_t n) {
    if (!ok_ || s_.size() - pos_ < n) return ok_ = false;
    pos_ += n;
    return true;
  }
  const uint8_t* ptr(size_t n) const { return reinterpret_cast<const uint8_t*>(s_.data() + pos_ - n); }

  std::string_view s_;
  size_t pos_ = 0;
  bool ok_ = true;
};

std::string aad_of(std::string_view table, std::string_view rec_key) {
  std::string aad(table);
  aad.push_back('\0');
  aad.append(rec_key);
  return aad;
}

}  // namespace

std::string encode_inode(const InodeRecord& r) {
  Writer w;
  w.u8(kInodeRecordVersion);
  w.u32(r.mode);
  w.u32(r.uid);
  w.u32(r.gid);
  w.u32(r.nlink);
  w.u32(r.flags);
  w.u64(r.size);
  w.u64(r.rdev);
  w.u64(r.parent);
  w.time(r.atime);
  w.time(r.mtime);
  w.time(r.ctime);
  w.u32(r.dek_generation);
  w.raw(r.file_id.data(), r.file_id.size());
  w.u64(r.chunk_writes);
  w.str(r.symlink);
  return w.take();
}

Result<InodeRecord> decode_inode(uint64_t ino, std::string_view bytes) {
  Reader rd(bytes);
  InodeRecord r;
  r.ino = ino;
  uint8_t version = rd.u8();
  r.mode = rd.u32();
  r.uid = rd.u32();
  r.gid = rd.u32();
  r.nlink = rd.u32();
  r.flags = rd.u32();
  r.size = rd.u64();
  r.rdev = rd.u64();
  r.parent = rd.u64();
  r.atime = rd.time();
  r.mtime = rd.time();
  r.ctime = rd.time();
  r.dek_generation = rd.u32();
  rd.raw(r.file_id.data(), r.file_id.size());
  r.chunk_writes = rd.u64();
  r.symlink = rd.str();
  if (!rd.ok() || !rd.at_end() || version != kInodeRecordVersion) {
    return Status::Corruption("inode " + std::to_string(ino) + ": malformed record");
  }
  return r;
}

std::string encode_entry(const DirEntry& e) {
  Writer w;
  w.u8(kDirentRecordVersion);
  w.u64(e.ino);
  w.u32(e.type);
  w.str(e.name);
  return w.take();
}

Result<DirEntry> decode_entry(uint64_t slot, std::string_view bytes) {
  Reader rd(bytes);
  DirEntry e;
  e.slot = slot;
  uint8_t version = rd.u8();
  e.ino = rd.u64();
  e.type = rd.u32();
  e.name = rd.str();
  if (!rd.ok() || !rd.at_end() || version != kDirentRecordVersion) {
    return Status::Corruption("directory entry: malformed record");
  }
  return e;
}

Result<std::string> seal_record(const crypto::GcmKey& key, std::string_view table, std::string_view rec_key,
                                std::string_view plain) {
  std::string out(crypto::kNonceSize + plain.size() + crypto::kTagSize, '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  crypto::MutableBytes nonce(p, crypto::kNonceSize);
  CMKFS_RETURN_IF_ERROR(crypto::random_bytes(nonce));
  std::string aad = aad_of(table, rec_key);
  CMKFS_RETURN_IF_ERROR(key.seal(nonce, crypto::as_bytes(aad), crypto::as_bytes(plain), {p + crypto::kNonceSize, plain.size()},
                                 {p + crypto::kNonceSize + plain.size(), crypto::kTagSize}));
  return out;
}

Result<std::string> open_record(const crypto::GcmKey& key, std::string_view table, std::string_view rec_key,
                                std::string_view sealed) {
  if (sealed.size() < crypto::kNonceSize + crypto::kTagSize) {
    return Status::Corruption(std::string(table) + " record too short");
  }
  size_t n = sealed.size() - crypto::kNonceSize - crypto::kTagSize;
  auto* p = reinterpret_cast<const uint8_t*>(sealed.data());
  std::string plain(n, '\0');
  std::string aad = aad_of(table, rec_key);
  Status s = key.open({p, crypto::kNonceSize}, crypto::as_bytes(aad), {p + crypto::kNonceSize, n},
                      {p + crypto::kNonceSize + n, crypto::kTagSize}, {reinterpret_cast<uint8_t*>(plain.data()), n});
  if (!s.ok()) return Status::Corruption(std::string(table) + " record does not authenticate (tampered or wrong key)");
  return plain;
}

Result<std::string> open_record(const crypto::StoreKeys& keys, std::string_view table, std::string_view rec_key,
                                std::string_view sealed, bool* stale) {
  auto plain = open_record(keys.meta, table, rec_key, sealed);
  if (stale != nullptr) *stale = false;
  if (plain.ok() || keys.older_meta.empty()) return plain;
  for (const auto& older : keys.older_meta) {
    auto p = open_record(older, table, rec_key, sealed);
    if (p.ok()) {
      if (stale != nullptr) *stale = true;
      return p;
    }
  }
  return plain;
}

std::string be64_key(uint64_t v) {
  std::string k(8, '\0');
  put_be64(reinterpret_cast<uint8_t*>(k.data()), v);
  return k;
}

std::string entry_key(uint64_t parent, uint64_t slot) { return be64_key(parent) + be64_key(slot); }

uint64_t entry_home_slot(const crypto::HmacKey& name_key, uint64_t parent, std::string_view name) {
  std::string msg = be64_key(parent);
  msg.append(name);
  crypto::Mac256 mac = name_key.mac(crypto::as_bytes(msg));
  // 62 bits leave room for the window above and the reserved slots below.
  uint64_t h = get_be64(mac.data()) >> 2;
  return h < kFirstSlot ? kFirstSlot : h;
}

}  // namespace cmkfs::meta
