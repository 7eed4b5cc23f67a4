// RADOS objects for striped_object_store.cc: a pool's namespace. Operations time out
// (kOpTimeout) instead of hanging a FUSE request forever on an unreachable cluster.
#include "fs/store/rados_object_store.h"

#include <rados/librados.h>

#include <cstring>

#include "fs/store/striped_object_store.h"

namespace cmkfs::fs {
namespace {

constexpr const char* kOpTimeout = "20";  // seconds, for the monitors and the OSDs

Status rados_status(int r, const std::string& what) {
  int err = r < 0 ? -r : EIO;
  if (err == ETIMEDOUT) return Status::IOError(EIO, what + ": the Ceph cluster did not answer in time");
  return Status::IOError(err, what + ": " + std::strerror(err));
}

class RadosBackend : public StripeBackend {
 public:
  RadosBackend(rados_t cluster, rados_ioctx_t io) : cluster_(cluster), io_(io) {}
  ~RadosBackend() override {
    rados_ioctx_destroy(io_);
    rados_shutdown(cluster_);
  }

  Result<std::optional<uint64_t>> stat(const std::string& name) override {
    uint64_t len = 0;
    time_t mtime = 0;
    int r = rados_stat(io_, name.c_str(), &len, &mtime);
    if (r == -ENOENT) return std::optional<uint64_t>();
    if (r < 0) return rados_status(r, "stat of object " + name);
    return std::optional<uint64_t>(len);
  }

  Result<size_t> read(const std::string& name, uint64_t offset, crypto::MutableBytes buf) override {
    int r = rados_read(io_, name.c_str(), reinterpret_cast<char*>(buf.data()), buf.size(), offset);
    if (r < 0) return rados_status(r, "reading object " + name);
    return static_cast<size_t>(r);
  }

  Status write(const std::string& name, uint64_t offset, crypto::Bytes data, bool must_exist) override {
    rados_write_op_t op = rados_create_write_op();
    if (must_exist) rados_write_op_assert_exists(op);
    rados_write_op_write(op, reinterpret_cast<const char*>(data.data()), data.size(), offset);
    int r = rados_write_op_operate(op, io_, name.c_str(), nullptr, 0);
    rados_release_write_op(op);
    if (r == -ENOENT) return Status::IOError(EIO, "object " + name + " is missing below the file's last");
    if (r < 0) return rados_status(r, "writing object " + name);
    return Status::Ok();
  }

  // One operation: a bare truncate does not create.
  Status resize(const std::string& name, uint64_t length, bool must_exist) override {
    rados_write_op_t op = rados_create_write_op();
    if (must_exist) rados_write_op_assert_exists(op);
    else rados_write_op_create(op, LIBRADOS_CREATE_IDEMPOTENT, nullptr);
    rados_write_op_truncate(op, length);
    int r = rados_write_op_operate(op, io_, name.c_str(), nullptr, 0);
    rados_release_write_op(op);
    if (r == -ENOENT) return Status::IOError(EIO, "object " + name + " is missing below the file's last");
    if (r < 0) return rados_status(r, "resizing object " + name);
    return Status::Ok();
  }

  Result<bool> remove(const std::string& name) override {
    int r = rados_remove(io_, name.c_str());
    if (r == -ENOENT) return false;
    if (r < 0) return rados_status(r, "removing object " + name);
    return true;
  }

  Status list(const std::function<void(const std::string&)>& fn) override {
    rados_list_ctx_t ctx;
    int r = rados_nobjects_list_open(io_, &ctx);
    if (r < 0) return rados_status(r, "listing objects");
    const char* name = nullptr;
    size_t name_len = 0;
    // As many as S3's listing takes: a namespace past it is not one cmkfs filled.
    constexpr uint64_t kMaxListed = 10'000'000;
    uint64_t listed = 0;
    while ((r = rados_nobjects_list_next2(ctx, &name, nullptr, nullptr, &name_len, nullptr, nullptr)) == 0) {
      if (++listed > kMaxListed) {
        rados_nobjects_list_close(ctx);
        return Status::IOError(EIO, "listing objects: more than " + std::to_string(kMaxListed));
      }
      fn(std::string(name, name_len));
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
  return make_striped_object_store(std::make_unique<RadosBackend>(cluster, io), config.object_size);
}

}  // namespace cmkfs::fs
