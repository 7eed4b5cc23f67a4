// Object I/O: the byte ranges of each file's object. Everything fs does to object files goes
// through these two interfaces, so tests can inject faults and a later backend can keep objects
// elsewhere (an object store, RADOS).
//
// A local store keeps object `id` at STORE/objects/<first byte hex>/<id hex>.
#pragma once

#include <sys/statvfs.h>

#include <functional>
#include <memory>
#include <string>

#include "crypto/chunk_codec.h"
#include "crypto/base/status.h"

namespace cmkfs::fs {

class ObjectFile {
 public:
  virtual ~ObjectFile() = default;
  // Reads up to buf.size() bytes at `offset`; fewer only at the end of the object.
  virtual Result<size_t> read_at(uint64_t offset, crypto::MutableBytes buf) = 0;
  // Writes all of `data` at `offset`, or fails (ENOSPC, EIO) having written an unknown prefix.
  virtual Status write_at(uint64_t offset, crypto::Bytes data) = 0;
  virtual Status truncate(uint64_t length) = 0;
  virtual Result<uint64_t> length() = 0;
  virtual Status sync() = 0;  // the object's data is durable
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  // ENOENT when the object is missing and !create.
  virtual Result<std::unique_ptr<ObjectFile>> open(const Id128& id, bool create) = 0;
  virtual Status remove(const Id128& id) = 0;  // missing objects are not an error
  virtual Result<struct statvfs> statfs() = 0;
  // Calls fn for every object; a name that is not an object id goes to `stray` (fsck reports
  // both). ENOTSUP where a backend cannot list.
  virtual Status list(const std::function<void(const Id128&)>& fn,
                      const std::function<void(const std::string&)>& stray) {
    (void)fn, (void)stray;
    return Status(ENOTSUP, "this object store cannot list its objects");
  }
};

// The directory layout of a local store's objects: creates DIR/objects/00..ff.
Status create_object_dirs(const std::string& objects_dir);
// The objects of the store whose directory `store_dir` is open: objects/ and its 256
// subdirectories are opened once, without following links, and must be the caller's own.
Result<std::unique_ptr<ObjectStore>> open_local_object_store(int store_dir);

}  // namespace cmkfs::fs
