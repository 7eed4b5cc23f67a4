#include "fs/oci/tar.h"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace cmkfs::oci {
namespace {

constexpr size_t kBlock = 512;

std::string field(const uint8_t* b, size_t off, size_t len) {
  const char* p = reinterpret_cast<const char*>(b + off);
  return std::string(p, strnlen(p, len));
}

// An octal field, or GNU's base-256 for large values. nullopt when malformed.
std::optional<uint64_t> number(const uint8_t* b, size_t off, size_t len) {
  if (b[off] & 0x80) {  // base-256, big-endian; negative values are not accepted
    if (b[off] & 0x40) return std::nullopt;
    uint64_t v = b[off] & 0x3f;
    for (size_t i = 1; i < len; ++i) {
      if (v >> 56) return std::nullopt;
      v = (v << 8) | b[off + i];
    }
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < len && (b[off + i] == ' ' || b[off + i] == 0)) ++i;
  bool any = false;
  for (; i < len && b[off + i] >= '0' && b[off + i] <= '7'; ++i) {
    if (v >> 60) return std::nullopt;
    v = v * 8 + (b[off + i] - '0');
    any = true;
  }
  for (; i < len; ++i) {
    if (b[off + i] != ' ' && b[off + i] != 0) return std::nullopt;
  }
  if (!any) return uint64_t{0};
  return v;
}

bool checksum_ok(const uint8_t* b) {
  auto want = number(b, 148, 8);
  if (!want) return false;
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += (i >= 148 && i < 156) ? ' ' : b[i];
  return sum == *want;
}

Status bad(const std::string& what, uint64_t pos) {
  return Status(EIO, "tar: " + what + " at offset " + std::to_string(pos));
}

}  // namespace

std::optional<std::string> normalise_tar_path(std::string_view name) {
  std::string out;
  while (!name.empty()) {
    size_t slash = name.find('/');
    std::string_view part = name.substr(0, slash);
    name = slash == std::string_view::npos ? std::string_view() : name.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") return std::nullopt;
    if (!out.empty()) out += '/';
    out += part;
  }
  if (out.empty()) return std::nullopt;
  return out;
}

Status TarReader::feed(const uint8_t* data, size_t n) {
  if (!error_.ok()) return error_;
  while (n > 0 && !done_) {
    if (skip_ > 0) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(skip_, n));
      skip_ -= k, pos_ += k, data += k, n -= k;
      continue;
    }
    if (collect_ > 0) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(collect_, n));
      ext_.append(reinterpret_cast<const char*>(data), k);
      collect_ -= k, pos_ += k, data += k, n -= k;
      if (collect_ == 0) {
        uint64_t pad = (kBlock - ext_.size() % kBlock) % kBlock;
        skip_ = pad;
        error_ = extended(ext_, collect_type_);
        ext_.clear();
        if (!error_.ok()) return error_;
      }
      continue;
    }
    size_t k = std::min(kBlock - block_.size(), n);
    block_.append(reinterpret_cast<const char*>(data), k);
    pos_ += k, data += k, n -= k;
    if (block_.size() < kBlock) break;
    std::string b;
    b.swap(block_);
    error_ = header(reinterpret_cast<const uint8_t*>(b.data()));
    if (!error_.ok()) return error_;
  }
  return Status::Ok();
}

Status TarReader::finish() {
  if (!error_.ok()) return error_;
  if (skip_ > 0 || collect_ > 0 || !block_.empty()) return bad("the archive ends inside an entry", pos_);
  done_ = true;
  return Status::Ok();
}

Status TarReader::header(const uint8_t* b) {
  uint64_t at = pos_ - kBlock;
  if (std::all_of(b, b + kBlock, [](uint8_t c) { return c == 0; })) {
    if (++zero_blocks_ == 2) done_ = true;
    return Status::Ok();
  }
  zero_blocks_ = 0;
  if (!checksum_ok(b)) return bad("header checksum mismatch", at);
  char type = b[156] == 0 ? '0' : static_cast<char>(b[156]);
  auto size = number(b, 124, 12);
  // Base-256 reaches 2^64 - 1, where the data and its padding would wrap to nothing.
  if (!size || *size > (UINT64_MAX >> 1)) return bad("malformed size", at);
  if (type == 'L' || type == 'K' || type == 'x' || type == 'g') {
    if (*size > kMaxExtendedHeader) return bad("extended header too large", at);
    collect_ = *size;
    collect_type_ = type;
    if (collect_ == 0) error_ = extended("", type);
    return error_;
  }
  TarEntry e;
  std::string name = field(b, 0, 100);
  if (std::memcmp(b + 257, "ustar", 5) == 0) {
    std::string prefix = field(b, 345, 155);
    if (!prefix.empty()) name = prefix + "/" + name;
  }
  if (!long_name_.empty()) name = long_name_;
  if (!pax_path_.empty()) name = pax_path_;
  e.link = field(b, 157, 100);
  if (!long_link_.empty()) e.link = long_link_;
  if (!pax_link_.empty()) e.link = pax_link_;
  auto mode = number(b, 100, 8), uid = number(b, 108, 8), gid = number(b, 116, 8), mtime = number(b, 136, 12);
  auto major = number(b, 329, 8), minor = number(b, 337, 8);
  if (!mode || !uid || !gid || !mtime || !major || !minor) return bad("malformed header field", at);
  e.type = type == '7' ? '0' : type;  // contiguous files are regular files
  e.mode = static_cast<uint32_t>(*mode & 07777);
  e.uid = static_cast<uint32_t>(pax_uid_.value_or(static_cast<uint32_t>(*uid)));
  e.gid = static_cast<uint32_t>(pax_gid_.value_or(static_cast<uint32_t>(*gid)));
  e.mtime = static_cast<int64_t>(*mtime);
  if (pax_mtime_) e.mtime = pax_mtime_->first, e.mtime_nsec = pax_mtime_->second;
  e.size = pax_size_.value_or(*size);
  e.dev_major = static_cast<uint32_t>(*major), e.dev_minor = static_cast<uint32_t>(*minor);
  e.offset = pos_;
  long_name_.clear(), long_link_.clear(), pax_path_.clear(), pax_link_.clear();
  pax_size_.reset(), pax_uid_.reset(), pax_gid_.reset(), pax_mtime_.reset();
  // Only regular files carry data; the rest of the types are skipped over by their size anyway.
  uint64_t data = (e.type == '1' || e.type == '2' || e.type == '3' || e.type == '4' || e.type == '5' || e.type == '6') ? 0 : e.size;
  if (e.type != '0') e.size = 0;  // only regular files have content
  skip_ = data + (kBlock - data % kBlock) % kBlock;
  if (name.size() > kMaxPath || e.link.size() > kMaxPath) return bad("name too long", at);
  auto path = normalise_tar_path(name);
  if (!path && !(e.type == '5' && name.find("..") == std::string::npos)) {
    return bad("member name " + name.substr(0, 64) + " leaves the archive", at);
  }
  e.path = path ? std::move(*path) : "";  // "" is the root, as "./" names it
  if (e.type == '1') {
    auto target = normalise_tar_path(e.link);
    if (!target) return bad("hard link target leaves the archive", at);
    e.link = std::move(*target);
  }
  if (entries_.size() >= kMaxEntries) return bad("too many entries", at);
  name_bytes_ += e.path.size() + e.link.size();
  if (name_bytes_ > kMaxNameBytes) return bad("names too long in all", at);
  entries_.push_back(std::move(e));
  return Status::Ok();
}

// PAX records are "<len> <key>=<value>\n"; GNU long names are the name itself.
Status TarReader::extended(const std::string& body, char type) {
  if (type == 'L' || type == 'K') {
    std::string v(body.c_str(), strnlen(body.data(), body.size()));
    if (v.size() > kMaxPath) return bad("long name too long", pos_);
    (type == 'L' ? long_name_ : long_link_) = v;
    return Status::Ok();
  }
  if (type == 'g') return Status::Ok();  // global headers set nothing images use
  for (size_t i = 0; i < body.size();) {
    size_t space = body.find(' ', i);
    if (space == std::string::npos) return bad("malformed PAX record", pos_);
    uint64_t len = 0;
    for (size_t j = i; j < space; ++j) {
      if (body[j] < '0' || body[j] > '9' || len > body.size()) return bad("malformed PAX length", pos_);
      len = len * 10 + static_cast<uint64_t>(body[j] - '0');
    }
    if (len <= space - i + 1 || i + len > body.size() || body[i + len - 1] != '\n') return bad("malformed PAX record", pos_);
    std::string rec = body.substr(space + 1, i + len - space - 2);
    i += len;
    size_t eq = rec.find('=');
    if (eq == std::string::npos) return bad("malformed PAX record", pos_);
    std::string key = rec.substr(0, eq), value = rec.substr(eq + 1);
    if (value.find('\0') != std::string::npos) return bad("a NUL inside a PAX value", pos_);
    auto num = [&](uint64_t max) -> std::optional<uint64_t> {
      uint64_t v = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (value.empty() || ec != std::errc() || end != value.data() + value.size() || v > max) return std::nullopt;
      return v;
    };
    if (key == "path") pax_path_ = value;
    else if (key == "linkpath") pax_link_ = value;
    else if (key == "size") {
      auto v = num(UINT64_MAX >> 1);
      if (!v) return bad("malformed PAX size", pos_);
      pax_size_ = *v;
    } else if (key == "uid" || key == "gid") {
      auto v = num(UINT32_MAX);
      if (!v) return bad("malformed PAX " + key, pos_);
      (key == "uid" ? pax_uid_ : pax_gid_) = static_cast<uint32_t>(*v);
    } else if (key == "mtime") {
      size_t dot = value.find('.');
      std::string sec = value.substr(0, dot), frac = dot == std::string::npos ? "" : value.substr(dot + 1);
      if (sec.empty() || sec.size() > 18 || sec.find_first_not_of("0123456789") != std::string::npos ||
          frac.find_first_not_of("0123456789") != std::string::npos) {
        continue;  // negative or odd times: the header's own field stands
      }
      frac = (frac + "000000000").substr(0, 9);
      int64_t secs = 0;
      uint32_t nsec = 0;
      std::from_chars(sec.data(), sec.data() + sec.size(), secs);  // at most 18 digits: fits
      std::from_chars(frac.data(), frac.data() + frac.size(), nsec);
      pax_mtime_ = std::make_pair(secs, nsec);
    }
  }
  return Status::Ok();
}

}  // namespace cmkfs::oci
