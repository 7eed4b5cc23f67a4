// An in-memory, sparse ObjectFile for tests, with fault injection. Thread-safe, as parallel
// reads and writes of one request touch it from several threads.
#pragma once

#include <algorithm>
#include <array>
#include <cstring>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "fs/store/store.h"

namespace cmkfs::testing {

class MemObjectFile : public fs::ObjectFile {
 public:
  static constexpr uint64_t kPage = 4096;
  uint64_t size = 0;
  uint64_t space_left = UINT64_MAX;  // writes growing the object by more than this fail: ENOSPC

  Result<size_t> read_at(uint64_t off, crypto::MutableBytes buf) override {
    std::lock_guard<std::mutex> g(mu_);
    if (off >= size) return size_t{0};
    size_t n = std::min<uint64_t>(buf.size(), size - off);
    for (size_t i = 0; i < n; ++i) buf[i] = byte(off + i);
    return n;
  }
  Status write_at(uint64_t off, crypto::Bytes data) override {
    std::lock_guard<std::mutex> g(mu_);
    uint64_t end = off + data.size();
    if (end > size && end - size > space_left) return Status::NoSpace("injected: disk full");
    if (end > size) {
      space_left -= end - size;
      size = end;
    }
    for (size_t i = 0; i < data.size(); ++i) byte(off + i) = data[i];
    return Status::Ok();
  }
  Status truncate(uint64_t len) override {
    std::lock_guard<std::mutex> g(mu_);
    return truncate_locked(len);
  }
  Status truncate_locked(uint64_t len) {
    // Drop whole pages past the end and zero the tail of the last one.
    pages_.erase(pages_.lower_bound((len + kPage - 1) / kPage), pages_.end());
    for (uint64_t p = len; p % kPage != 0 && p < size; ++p) byte_if_present(p, 0);
    size = len;
    return Status::Ok();
  }
  Result<uint64_t> length() override { return size; }
  Status sync() override { return Status::Ok(); }

  // Whole-object access for tampering in tests.
  std::vector<uint8_t> contents() {
    std::vector<uint8_t> v(size);
    for (uint64_t i = 0; i < size; ++i) v[i] = byte(i);
    return v;
  }
  void set_contents(const std::vector<uint8_t>& v) {
    (void)truncate(0);
    space_left = UINT64_MAX;
    (void)write_at(0, v);
  }
  uint8_t& byte(uint64_t pos) { return pages_[pos / kPage][pos % kPage]; }

 private:
  void byte_if_present(uint64_t pos, uint8_t v) {
    auto it = pages_.find(pos / kPage);
    if (it != pages_.end()) it->second[pos % kPage] = v;
  }
  std::mutex mu_;
  std::map<uint64_t, std::array<uint8_t, kPage>> pages_;  // value-initialised: zeros
};

// An in-memory ObjectStore of MemObjectFiles: objects outlive the handles open() returns, so a
// Filesystem can be shut down and started again on the same contents. Faults: fail_at(n, err)
// makes the n-th call from now (open, read, write, truncate, length, sync or remove, counted
// together) fail with `err`, as a disk would.
class MemObjectStore : public fs::ObjectStore {
 public:
  void fail_at(int64_t n, int err) {
    calls_ = 0;
    fail_at_ = n;
    err_ = err;
  }
  int64_t calls() const { return calls_; }
  bool failed() const { return fail_at_ > 0 && calls_ >= fail_at_; }

  Result<std::unique_ptr<fs::ObjectFile>> open(const Id128& id, bool create) override {
    CMKFS_RETURN_IF_ERROR(fault("open"));
    std::lock_guard<std::mutex> g(mu_);
    auto it = objects_.find(id);
    if (it == objects_.end()) {
      if (!create) return Status::NotFound("object is missing");
      it = objects_.emplace(id, std::make_shared<MemObjectFile>()).first;
    }
    return std::unique_ptr<fs::ObjectFile>(new Handle(it->second, this));
  }
  Status remove(const Id128& id) override {
    CMKFS_RETURN_IF_ERROR(fault("remove"));
    std::lock_guard<std::mutex> g(mu_);
    objects_.erase(id);
    return Status::Ok();
  }
  Result<struct statvfs> statfs() override {
    struct statvfs st{};
    st.f_bsize = st.f_frsize = 4096;
    st.f_blocks = st.f_bfree = st.f_bavail = 1 << 20;
    return st;
  }
  Status list(const std::function<void(const Id128&)>& fn, const std::function<void(const std::string&)>&) override {
    std::lock_guard<std::mutex> g(mu_);
    for (const auto& [id, obj] : objects_) fn(id);
    return Status::Ok();
  }
  void clear() {
    std::lock_guard<std::mutex> g(mu_);
    objects_.clear();
  }
  size_t count() {
    std::lock_guard<std::mutex> g(mu_);
    return objects_.size();
  }

 private:
  // What open() returns: forwards to an object the store keeps.
  class Handle : public fs::ObjectFile {
   public:
    Handle(std::shared_ptr<MemObjectFile> f, MemObjectStore* store) : f_(std::move(f)), store_(store) {}
    Result<size_t> read_at(uint64_t off, crypto::MutableBytes buf) override {
      CMKFS_RETURN_IF_ERROR(store_->fault("read"));
      return f_->read_at(off, buf);
    }
    Status write_at(uint64_t off, crypto::Bytes data) override {
      CMKFS_RETURN_IF_ERROR(store_->fault("write"));
      return f_->write_at(off, data);
    }
    Status truncate(uint64_t len) override {
      CMKFS_RETURN_IF_ERROR(store_->fault("truncate"));
      return f_->truncate(len);
    }
    Result<uint64_t> length() override {
      CMKFS_RETURN_IF_ERROR(store_->fault("length"));
      return f_->length();
    }
    Status sync() override {
      CMKFS_RETURN_IF_ERROR(store_->fault("sync"));
      return f_->sync();
    }

   private:
    std::shared_ptr<MemObjectFile> f_;
    MemObjectStore* store_;
  };
  Status fault(const char* what) {
    if (fail_at_ > 0 && ++calls_ == fail_at_) return Status::IOError(err_, std::string("injected: ") + what + " failed");
    if (fail_at_ == 0) ++calls_;
    return Status::Ok();
  }
  std::atomic<int64_t> calls_{0}, fail_at_{0};
  std::atomic<int> err_{EIO};
  std::mutex mu_;
  std::map<Id128, std::shared_ptr<MemObjectFile>> objects_;
};

}  // namespace cmkfs::testing
