// Each file's object is striped over a backend's objects of a fixed size (the store's object
// size): RADOS refuses objects over osd_max_object_size (128 MiB by default) and an S3 object is
// written whole, while a registry's layers are larger and written in pieces; stripes spread a
// large blob over many placement groups, so its reads and writes go to many OSDs at once. Stripe
// 0 is named <file id hex>, stripe k <file id hex>.<k>. Every stripe but the last is full: a
// write or extension past the last stripe first extends the stripes below it to the stripe size
// (holes read as zeros). So a short stripe is the last one, and a small file's length is known
// from the one stat that opens it. Removal goes from the last stripe down, one at a time, so a
// crash leaves a prefix; a large file's stripes are counted by probing (exponential, then binary
// search), bounded, so that stripes planted in the backend make errors, never a hang.
//
// Writes are acknowledged once the backend has them durably (RADOS: on the placement group's
// journals; S3: a completed PUT), so sync() has nothing left to do.
#include "fs/store/striped_object_store.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <map>
#include <vector>

#include "crypto/base/hex.h"

namespace cmkfs::fs {
namespace {

// No file has more stripes: the largest file (2^32 chunks of 1 MiB) in the smallest stripes
// (64 KiB) would need 2^36; the stripe counts cmkfs makes stay far below.
constexpr uint64_t kMaxStripes = uint64_t{1} << 36;

std::string stripe_name(const std::string& base, uint64_t k) { return k == 0 ? base : base + "." + std::to_string(k); }

// The stripes of one file's object: what both the open object and the store's removal need.
class Stripes {
 public:
  Stripes(StripeBackend& backend, std::string base, uint64_t size) : b_(backend), base_(std::move(base)), size_(size) {}

  const std::string& base() const { return base_; }
  uint64_t size() const { return size_; }
  std::string name(uint64_t k) const { return stripe_name(base_, k); }
  StripeBackend& backend() const { return b_; }

  // The stripe's length, or nullopt when missing; EIO for a stripe longer than a stripe can be.
  Result<std::optional<uint64_t>> length_of(uint64_t k) const {
    auto len = b_.stat(name(k));
    if (!len.ok() || !len->has_value()) return len;
    if (**len > size_) return Status::Corruption("object " + name(k) + " is longer than a stripe: not written by cmkfs");
    return len;
  }

  // How many stripes exist (they are contiguous from 0): probes 2^j - 1, then a binary search.
  // Stripes planted past a gap can fool it upwards, never past kMaxStripes; remove_from() then
  // finds the gap.
  // `first`: stripe 0's length if known (nullopt: missing).
  Result<uint64_t> count(std::optional<std::optional<uint64_t>> first = {}) const {
    auto exists = [&](uint64_t k) -> Result<bool> {
      auto len = length_of(k);
      if (!len.ok()) return len.status();
      return len->has_value();
    };
    if (!first) {
      auto len = length_of(0);
      if (!len.ok()) return len.status();
      first = *len;
    }
    if (!first->has_value()) return uint64_t{0};
    if (**first < size_) return uint64_t{1};  // a short stripe is the last
    uint64_t lo = 1, hi = 2;  // stripes [0, lo) exist; stripe hi - 1 is probed next
    for (;;) {
      auto e = exists(hi - 1);
      if (!e.ok()) return e.status();
      if (!*e) break;
      lo = hi;
      hi *= 2;
      if (hi > kMaxStripes) return Status::Corruption("object " + base_ + " has more stripes than any file");
    }
    while (lo + 1 < hi) {  // stripes [0, lo) exist, stripe hi - 1 does not
      uint64_t mid = lo + (hi - lo) / 2;
      auto e = exists(mid - 1);
      if (!e.ok()) return e.status();
      (*e ? lo : hi) = mid;
    }
    return lo;
  }

  Status resize(uint64_t k, uint64_t length, bool must_exist) const { return b_.resize(name(k), length, must_exist); }

  // Removes stripes [from, count), one at a time from the last down: a crash or a failure leaves
  // a prefix, never a gap. (Removed in parallel, a lower stripe could go before a higher one;
  // the higher one, left past the gap, would come back with its old chunks, which still
  // authenticate, when the file grows again.) A run of kMissingRun stripes already gone means
  // count() was fooled by planted stripes.
  Status remove_from(uint64_t from, uint64_t count) const {
    constexpr uint64_t kMissingRun = 64;
    uint64_t missing = 0;
    for (uint64_t k = count; k-- > from;) {
      auto removed = b_.remove(name(k));
      if (!removed.ok()) return removed.status();
      missing = *removed ? 0 : missing + 1;
      if (missing == kMissingRun) {
        return Status::Corruption("object " + base_ + " has stripes missing below others: not written by cmkfs");
      }
    }
    return Status::Ok();
  }

 private:
  StripeBackend& b_;
  std::string base_;
  uint64_t size_;  // bytes per stripe
};

class StripedObjectFile : public ObjectFile {
 public:
  // first_length: stripe 0's length when the open just read it.
  StripedObjectFile(Stripes stripes, std::optional<uint64_t> first_length)
      : stripes_(std::move(stripes)), first_length_(first_length) {}

  Result<size_t> read_at(uint64_t offset, crypto::MutableBytes buf) override {
    size_t at = 0;
    while (at < buf.size()) {
      uint64_t k = (offset + at) / stripes_.size(), off = (offset + at) % stripes_.size();
      size_t n = std::min<uint64_t>(buf.size() - at, stripes_.size() - off);
      auto r = stripes_.backend().read(stripes_.name(k), off, buf.subspan(at, n));
      if (!r.ok() && r.status().code() == ENOENT) break;  // past the last stripe
      if (!r.ok()) return r.status();
      size_t got = std::min(*r, n);  // a reply never grows the buffer
      at += got;
      if (got < n) break;  // a short stripe is the last
    }
    return at;
  }

  Status write_at(uint64_t offset, crypto::Bytes data) override {
    if (data.empty()) return Status::Ok();
    modified_.store(true);
    uint64_t first = offset / stripes_.size(), last = (offset + data.size() - 1) / stripes_.size();
    CMKFS_RETURN_IF_ERROR(fill_below(first));
    uint64_t known = known_.load();  // stripes below it exist
    for (size_t at = 0; at < data.size();) {
      uint64_t k = (offset + at) / stripes_.size(), off = (offset + at) % stripes_.size();
      size_t n = std::min<uint64_t>(data.size() - at, stripes_.size() - off);
      CMKFS_RETURN_IF_ERROR(stripes_.backend().write(stripes_.name(k), off, data.subspan(at, n), k < known));
      at += n;
    }
    raise_known(last + 1);
    raise(full_, (offset + data.size()) / stripes_.size());  // stripes below the end are full now
    return Status::Ok();
  }

  Status truncate(uint64_t length) override {
    modified_.store(true);
    auto n = stripes_.count();
    if (!n.ok()) return n.status();
    uint64_t k = length == 0 ? 0 : (length - 1) / stripes_.size();
    known_.store(std::min(*n, k + 1));  // before removing: it must never count a removed stripe
    full_.store(std::min(full_.load(), length / stripes_.size()));
    CMKFS_RETURN_IF_ERROR(stripes_.remove_from(k + 1, *n));
    CMKFS_RETURN_IF_ERROR(fill_below(k));
    CMKFS_RETURN_IF_ERROR(stripes_.resize(k, length - k * stripes_.size(), /*must_exist=*/k < *n));
    raise_known(k + 1);
    return Status::Ok();
  }

  Result<uint64_t> length() override {
    std::optional<std::optional<uint64_t>> first;
    if (!modified_.load() && first_length_) first = first_length_;
    auto n = stripes_.count(first);
    if (!n.ok()) return n.status();
    known_.store(*n);  // may lower it: length() never runs beside a write (open, recovery, fsck)
    full_.store(*n == 0 ? 0 : *n - 1);  // every stripe but the last
    if (*n == 0) return uint64_t{0};
    if (*n == 1 && first && first->has_value()) return **first;
    auto last = stripes_.length_of(*n - 1);
    if (!last.ok()) return last.status();
    if (!last->has_value()) return Status::IOError(EIO, "object " + stripes_.base() + " changed while measured");
    return (*n - 1) * stripes_.size() + **last;
  }

  Status sync() override { return Status::Ok(); }

  uint64_t write_unit() const override { return stripes_.backend().writes_whole() ? stripes_.size() : 0; }

 private:
  // Makes stripes [0, k) exist and full before stripe k is written: those from the last one
  // known (which may be short) up are extended to the stripe size. Extending a full stripe, or
  // racing a write into the same stripe, changes no byte.
  // Stripes known full are skipped: on S3 each check is a request.
  Status fill_below(uint64_t k) {
    uint64_t known = known_.load();
    if (known > k) return Status::Ok();
    for (uint64_t j = std::max(known == 0 ? 0 : known - 1, full_.load()); j < k; ++j) {
      CMKFS_RETURN_IF_ERROR(stripes_.resize(j, stripes_.size(), /*must_exist=*/j < known));
    }
    raise_known(k);
    raise(full_, k);
    return Status::Ok();
  }
  void raise_known(uint64_t n) { raise(known_, n); }
  static void raise(std::atomic<uint64_t>& a, uint64_t n) {
    uint64_t cur = a.load();
    while (cur < n && !a.compare_exchange_weak(cur, n)) {
    }
  }

  Stripes stripes_;
  std::atomic<uint64_t> known_{0};  // stripes known to exist (a lower bound)
  std::atomic<uint64_t> full_{0};   // stripes known to be full (a lower bound, <= known_)
  std::optional<uint64_t> first_length_;
  std::atomic<bool> modified_{false};  // written or cut since the open: first_length_ is stale
};

class StripedObjectStore : public ObjectStore {
 public:
  StripedObjectStore(std::unique_ptr<StripeBackend> backend, uint64_t stripe) : b_(std::move(backend)), stripe_(stripe) {}

  Result<std::unique_ptr<ObjectFile>> open(const Id128& id, bool create) override {
    Stripes s(*b_, to_hex(id), stripe_);
    auto len = s.length_of(0);
    if (!len.ok()) return len.status();
    if (!len->has_value() && !create) return Status::NotFound("object " + s.base() + " is missing");
    if (!len->has_value()) CMKFS_RETURN_IF_ERROR(s.resize(0, 0, /*must_exist=*/false));
    return std::unique_ptr<ObjectFile>(new StripedObjectFile(std::move(s), len->value_or(0)));
  }

  Status remove(const Id128& id) override {
    Stripes s(*b_, to_hex(id), stripe_);
    auto n = s.count();
    if (!n.ok()) return n.status();
    return s.remove_from(0, *n);
  }

  // Each file once; names cmkfs does not make (not lowercase hex, a stripe past a gap or without
  // stripe 0) are strays.
  Status list(const std::function<void(const Id128&)>& fn,
              const std::function<void(const std::string&)>& stray) override {
    std::map<Id128, std::vector<uint64_t>> files;  // file -> the stripes seen
    CMKFS_RETURN_IF_ERROR(b_->list([&](const std::string& name) {
      Id128 id{};
      uint64_t k = 0;
      if (parse_name(name, &id, &k)) files[id].push_back(k);
      else stray(name);
    }));
    for (auto& [id, stripes] : files) {
      std::sort(stripes.begin(), stripes.end());
      stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());  // a listing may repeat
      size_t prefix = 0;
      while (prefix < stripes.size() && stripes[prefix] == prefix) ++prefix;
      if (prefix > 0) fn(id);
      for (size_t i = prefix; i < stripes.size(); ++i) stray(stripe_name(to_hex(id), stripes[i]));
    }
    return Status::Ok();
  }

  Result<struct statvfs> statfs() override { return b_->statfs(); }

 private:
  // <32 hex digits>[.<k>], k a decimal >= 1 without leading zeros.
  static bool parse_name(const std::string& oid, Id128* id, uint64_t* k) {
    size_t dot = oid.find('.');
    auto bytes = from_hex(oid.substr(0, dot));
    if (!bytes || bytes->size() != id->size()) return false;
    std::copy(bytes->begin(), bytes->end(), id->begin());
    if (oid.compare(0, dot, to_hex(*id)) != 0) return false;  // only the lowercase cmkfs writes
    *k = 0;
    if (dot == std::string::npos) return true;
    std::string_view digits(oid.data() + dot + 1, oid.size() - dot - 1);
    if (digits.empty() || digits[0] == '0') return false;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *k);
    return ec == std::errc() && p == digits.data() + digits.size() && *k < kMaxStripes;
  }

  std::unique_ptr<StripeBackend> b_;
  uint64_t stripe_;
};

}  // namespace

std::unique_ptr<ObjectStore> make_striped_object_store(std::unique_ptr<StripeBackend> backend, uint64_t stripe_size) {
  return std::make_unique<StripedObjectStore>(std::move(backend), stripe_size);
}

}  // namespace cmkfs::fs
