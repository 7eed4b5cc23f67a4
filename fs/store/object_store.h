// Object I/O: the byte ranges of each file's object. Everything fs does to object files goes
// through these two interfaces, so tests can inject faults and objects can live elsewhere.
//
// A local store keeps object `id` at STORE/objects/<first byte hex>/<id hex>; a RADOS or S3 store
// stripes it over objects <id hex>, <id hex>.1, ... in the store's pool and namespace, or bucket
// and prefix (striped_object_store.cc).
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
  // Writes of whole aligned runs of this many bytes cost least (an S3 stripe is put whole, so
  // part of one is read, changed and put back); 0: any write costs by its length.
  virtual uint64_t write_unit() const { return 0; }
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

// Where a store keeps its objects. The store's superblock records the public part (kind, pool or
// bucket, namespace or prefix: where its data is); the host's binding records the whole, with how
// to reach it (RADOS: the cluster's config file, naming the monitors and the keyring, and the
// client's name; S3: the endpoint, the region, the credentials file, a CA): a store never
// chooses where this host connects or which credentials it presents.
struct ObjectsConfig {
  std::string kind = "local";  // "local", "rados" or "s3"
  std::string pool, ns;        // rados: the pool and the namespace within it; s3: the bucket and
                               // the key prefix (both: the store id by default)
  uint64_t object_size = 0;    // the stripe size of a file's object (kRadosObjectSize; s3: s3_object_size())
  uint32_t layout = 0;         // how stripes are laid out (kStripeLayout); others are refused
  std::string conf, user;      // rados, host only: ceph.conf's path, the client name ("admin")
  std::string endpoint, region, credentials, ca;  // s3, host only: http(s)://HOST[:PORT], the
                                                  // region (us-east-1), the keys' file, a CA file

  bool local() const { return kind == "local"; }
  // rados://POOL[/NAMESPACE] or s3://BUCKET[/PREFIX]; EINVAL otherwise.
  static Result<ObjectsConfig> from_url(std::string_view url);
  std::string url() const;
  // JSON object of the public part ("" for local), or of everything (the host's copy).
  std::string public_json() const;
  std::string host_json() const;
  static Result<ObjectsConfig> from_json(std::string_view json);  // EIO when malformed
  // Whether `store` (a superblock's public part) names the same place as this host's copy.
  bool same_place(const ObjectsConfig& store) const {
    return kind == store.kind && pool == store.pool && ns == store.ns && object_size == store.object_size &&
           layout == store.layout;
  }
  // Where this host's part must be given (EINVAL naming the option otherwise).
  Status check_host_part() const;
  // The host's files (ceph.conf, S3 credentials and CA) named from /, as the binding keeps them.
  void make_paths_absolute();
  static constexpr uint64_t kRadosObjectSize = 4 << 20;
  static constexpr uint32_t kStripeLayout = 1;  // every stripe but a file's last full
  // An S3 stripe is written whole, so it holds whole sealed chunks: 1 MiB of plaintext
  // (max_chunk / chunk_size chunks with their nonces and tags), one chunk-aligned 1 MiB write.
  static uint64_t s3_object_size(uint32_t chunk_size);
};

// Opens the objects `config` names (a local store's under `store_dir`). ENOTSUP for a kind this
// build does not have; connection errors keep their code.
Result<std::unique_ptr<ObjectStore>> open_object_store(const ObjectsConfig& config, int store_dir);
// An object store whose every call fails with `why`: a store whose objects this host cannot reach
// still opens for what needs no object (showing its settings, binding it).
std::unique_ptr<ObjectStore> unreachable_object_store(Status why);

// The directory layout of a local store's objects: creates objects/00..ff under the store's
// directory `store_dir` (open), following no link; `shown` names objects/ in errors.
Status create_object_dirs(int store_dir, const std::string& shown);
// The objects of the store whose directory `store_dir` is open: objects/ and its 256
// subdirectories are opened once, without following links, and must be the caller's own.
Result<std::unique_ptr<ObjectStore>> open_local_object_store(int store_dir);

}  // namespace cmkfs::fs
