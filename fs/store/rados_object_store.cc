// One RADOS object per file, as one object file per file in a local store: the chunk layout, the
// object names and the code above are the same. Why per file and not per chunk range: a read or
// write of a file's chunks is one RADOS operation at an offset either way, RADOS stripes nothing
// itself below the OSD's object size limit (the registry's blobs are far smaller), and one object
// per file keeps removal, fsck's listing and the creation log one name per file.
//
// Writes are acknowledged once the placement group's replicas have them on their journals, so
// sync() has nothing left to do. Operations time out (kOpTimeout) instead of hanging a FUSE
// request forever on an unreachable cluster.
#include "fs/store/rados_object_store.h"

#include <rados/librados.h>

#include <algorithm>
#include <cstring>

#include "crypto/base/hex.h"

namespace cmkfs::fs {
namespace {

constexpr const char* kOpTimeout = "20";  // seconds, for the monitors and the OSDs

Status rados_status(int r, const std::string& what) {
  int err = r < 0 ? -r : EIO;
  if (err == ETIMEDOUT) return Status::IOError(EIO, what + ": the Ceph cluster did not answer in time");
  return Status::IOError(err, what + ": " + std::strerror(err));
}

class RadosObjectFile : public ObjectFile {
 public:
  RadosObjectFile(rados_ioctx_t io, std::string oid) : io_(io), oid_(std::move(oid)) {}

  Result<size_t> read_at(uint64_t offset, crypto::MutableBytes buf) override {
    size_t done = 0;
    while (done < buf.size()) {
      int n = rados_read(io_, oid_.c_str(), reinterpret_cast<char*>(buf.data() + done), buf.size() - done, offset + done);
      if (n < 0) return rados_status(n, "reading object " + oid_);
      if (n == 0) break;
      done += std::min(static_cast<size_t>(n), buf.size() - done);  // a reply never grows the buffer
    }
    return done;
  }

  Status write_at(uint64_t offset, crypto::Bytes data) override {
    int r = rados_write(io_, oid_.c_str(), reinterpret_cast<const char*>(data.data()), data.size(), offset);
    if (r < 0) return rados_status(r, "writing object " + oid_);
    return Status::Ok();
  }

  Status truncate(uint64_t length) override {
    int r = rados_trunc(io_, oid_.c_str(), length);
    if (r < 0) return rados_status(r, "truncating object " + oid_);
    return Status::Ok();
  }

  Result<uint64_t> length() override {
    uint64_t size = 0;
    time_t mtime = 0;
    int r = rados_stat(io_, oid_.c_str(), &size, &mtime);
    if (r < 0) return rados_status(r, "stat of object " + oid_);
    return size;
  }

  Status sync() override { return Status::Ok(); }

 private:
  rados_ioctx_t io_;
  std::string oid_;
};

class RadosObjectStore : public ObjectStore {
 public:
  RadosObjectStore(rados_t cluster, rados_ioctx_t io) : cluster_(cluster), io_(io) {}
  ~RadosObjectStore() override {
    rados_ioctx_destroy(io_);
    rados_shutdown(cluster_);
  }

  Result<std::unique_ptr<ObjectFile>> open(const Id128& id, bool create) override {
    std::string oid = to_hex(id);
    if (create) {
      rados_write_op_t op = rados_create_write_op();
      rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, nullptr);
      int r = rados_write_op_operate(op, io_, oid.c_str(), nullptr, 0);
      rados_release_write_op(op);
      if (r < 0) return rados_status(r, "creating object " + oid);
    } else {
      uint64_t size = 0;
      time_t mtime = 0;
      int r = rados_stat(io_, oid.c_str(), &size, &mtime);
      if (r == -ENOENT) return Status::NotFound("object " + oid + " is missing");
      if (r < 0) return rados_status(r, "opening object " + oid);
    }
    return std::unique_ptr<ObjectFile>(new RadosObjectFile(io_, std::move(oid)));
  }

  Status remove(const Id128& id) override {
    int r = rados_remove(io_, to_hex(id).c_str());
    if (r < 0 && r != -ENOENT) return rados_status(r, "removing object " + to_hex(id));
    return Status::Ok();
  }

  Status list(const std::function<void(const Id128&)>& fn,
              const std::function<void(const std::string&)>& stray) override {
    rados_list_ctx_t ctx;
    int r = rados_nobjects_list_open(io_, &ctx);
    if (r < 0) return rados_status(r, "listing objects");
    const char* name = nullptr;
    size_t name_len = 0;
    while ((r = rados_nobjects_list_next2(ctx, &name, nullptr, nullptr, &name_len, nullptr, nullptr)) == 0) {
      std::string oid(name, name_len);
      auto bytes = from_hex(oid);
      Id128 id{};
      if (!bytes || bytes->size() != id.size()) {
        stray(oid);
        continue;
      }
      std::copy(bytes->begin(), bytes->end(), id.begin());
      fn(id);
    }
    rados_nobjects_list_close(ctx);
    if (r != -ENOENT) return rados_status(r, "listing objects");
    return Status::Ok();
  }

  Result<struct statvfs> statfs() override {
    rados_cluster_stat_t cs;
    int r = rados_cluster_stat(cluster_, &cs);
    if (r < 0) return rados_status(r, "statfs of the Ceph cluster");
    struct statvfs st {};
    st.f_bsize = st.f_frsize = 4096;
    st.f_blocks = cs.kb / 4;
    st.f_bfree = st.f_bavail = cs.kb_avail / 4;
    st.f_files = st.f_ffree = st.f_favail = 1ull << 32;  // RADOS has no inode table
    st.f_namemax = 255;
    return st;
  }

 private:
  rados_t cluster_;
  rados_ioctx_t io_;
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> open_rados_object_store(const ObjectsConfig& config) {
  rados_t cluster = nullptr;
  std::string user = "client." + (config.user.empty() ? std::string("admin") : config.user);
  int r = rados_create2(&cluster, "ceph", user.c_str(), 0);
  if (r < 0) return rados_status(r, "cannot create a Ceph client");
  auto fail = [&](int code, const std::string& what) {
    rados_shutdown(cluster);
    return rados_status(code, what);
  };
  if (config.conf.empty()) return fail(-EINVAL, "no Ceph config file for pool " + config.pool);
  if ((r = rados_conf_read_file(cluster, config.conf.c_str())) < 0) return fail(r, "cannot read " + config.conf);
  for (const char* opt : {"client_mount_timeout", "rados_mon_op_timeout", "rados_osd_op_timeout"}) {
    if ((r = rados_conf_set(cluster, opt, kOpTimeout)) < 0) return fail(r, std::string("cannot set ") + opt);
  }
  if ((r = rados_connect(cluster)) < 0) return fail(r, "cannot connect to the Ceph cluster of " + config.conf);
  rados_ioctx_t io = nullptr;
  if ((r = rados_ioctx_create(cluster, config.pool.c_str(), &io)) < 0) {
    return fail(r, "cannot open RADOS pool " + config.pool);
  }
  rados_ioctx_set_namespace(io, config.ns.c_str());
  return std::unique_ptr<ObjectStore>(new RadosObjectStore(cluster, io));
}

}  // namespace cmkfs::fs
