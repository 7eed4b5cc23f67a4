// Objects striped over a cluster's named objects: internal to fs/store. A RADOS pool's
// namespace and an S3 bucket's prefix both offer named byte objects; each file's object
// (object_store.h) is striped over them by one piece of code, striped_object_store.cc.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "fs/store/object_store.h"

namespace cmkfs::fs {

// Named objects read and written in ranges. Names are what striping makes: <32 hex>[.<k>].
class StripeBackend {
 public:
  virtual ~StripeBackend() = default;
  // The object's length; nullopt when it does not exist.
  virtual Result<std::optional<uint64_t>> stat(const std::string& name) = 0;
  // Up to buf.size() bytes at `offset`, fewer only at its end; ENOENT when it does not exist.
  virtual Result<size_t> read(const std::string& name, uint64_t offset, crypto::MutableBytes buf) = 0;
  // Writes `data` at `offset`, creating the object unless `must_exist` (then EIO if it is
  // missing: a stripe below the last gone is damage, not a new stripe); a hole reads as zeros.
  virtual Status write(const std::string& name, uint64_t offset, crypto::Bytes data, bool must_exist) = 0;
  // Cuts or extends it to `length`, creating it if missing unless `must_exist` (EIO then).
  virtual Status resize(const std::string& name, uint64_t length, bool must_exist) = 0;
  // Removes it; false when it was already missing.
  virtual Result<bool> remove(const std::string& name) = 0;
  // Every object's name (once each, any order).
  virtual Status list(const std::function<void(const std::string&)>& fn) = 0;
  virtual Result<struct statvfs> statfs() = 0;
  // Whether objects are written whole (S3): a write of part of one reads it first.
  virtual bool writes_whole() const { return false; }
};

// Each file's object is striped over objects of `stripe_size` bytes of `backend`.
std::unique_ptr<ObjectStore> make_striped_object_store(std::unique_ptr<StripeBackend> backend, uint64_t stripe_size);

}  // namespace cmkfs::fs
