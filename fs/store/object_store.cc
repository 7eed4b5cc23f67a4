#include "fs/store/object_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/base/hex.h"
#include "crypto/base/json_integer.h"
#include "crypto/chunk_layout.h"
#include "fs/store/private_fs.h"
#include "fs/store/rados_object_store.h"
#include "fs/store/s3_object_store.h"

namespace cmkfs::fs {
namespace {

Status errno_status(int err, const std::string& what) { return Status::IOError(err, what + ": " + std::strerror(err)); }

class LocalObjectFile : public ObjectFile {
 public:
  // `opened_length`: its length as the open measured it, which the first length() returns if
  // nothing was written before (every open asks it at once: one fstat less per file).
  LocalObjectFile(int fd, uint64_t opened_length) : fd_(fd), opened_length_(opened_length) {}
  ~LocalObjectFile() override { ::close(fd_); }

  Result<size_t> read_at(uint64_t offset, crypto::MutableBytes buf) override {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t n = ::pread(fd_, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status(errno, "reading object");
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }

  Status write_at(uint64_t offset, crypto::Bytes data) override {
    forget_opened_length();
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status(errno, "writing object");
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  Status truncate(uint64_t length) override {
    forget_opened_length();
    if (::ftruncate(fd_, static_cast<off_t>(length)) != 0) return errno_status(errno, "truncating object");
    return Status::Ok();
  }

  Result<uint64_t> length() override {
    // Used once: later, another process (a writer beside a follower) may have changed it.
    if (opened_length_fresh_.exchange(false)) return opened_length_;
    struct stat st;
    if (::fstat(fd_, &st) != 0) return errno_status(errno, "stat of object");
    return static_cast<uint64_t>(st.st_size);
  }

  Status sync() override {
    if (::fdatasync(fd_) != 0) return errno_status(errno, "syncing object");
    return Status::Ok();
  }

 private:
  // Writes come from several threads at once (parallel chunks): the flag is atomic, and read
  // first so that only the first write stores it.
  void forget_opened_length() {
    if (opened_length_fresh_.load(std::memory_order_relaxed)) opened_length_fresh_.store(false);
  }

  int fd_;
  const uint64_t opened_length_;
  std::atomic<bool> opened_length_fresh_{true};
};

// Every object is opened relative to its directory's descriptor, with O_NOFOLLOW: a link planted
// in the store (objects/xx -> /etc, or an object -> a file elsewhere) is refused, not followed.
class LocalObjectStore : public ObjectStore {
 public:
  LocalObjectStore(Fd objects, std::vector<Fd> subdirs) : objects_(std::move(objects)), subdirs_(std::move(subdirs)) {
    // O_NONBLOCK is left on an object (one fcntl less per open) unless the objects are on FUSE,
    // whose READs and WRITEs carry the file's flags to a server that may honour it. Everywhere
    // else a regular file's reads and writes ignore it.
    struct statfs fs;
    keep_nonblock_ = ::fstatfs(objects_.get(), &fs) == 0 && fs.f_type != FUSE_SUPER_MAGIC ? O_NONBLOCK : 0;
  }

  Result<std::unique_ptr<ObjectFile>> open(const Id128& id, bool create) override {
    std::string name = to_hex(id);
    struct stat st;
    auto fd = open_private_file(subdir(id), name, O_RDWR | (create ? O_CREAT : 0) | keep_nonblock_, "object " + name, &st);
    if (!fd.ok()) {
      if (fd.status().code() == ENOENT) return Status::NotFound("object " + name + " is missing");
      return fd.status();
    }
    return std::unique_ptr<ObjectFile>(new LocalObjectFile(fd->release(), static_cast<uint64_t>(st.st_size)));
  }

  Status remove(const Id128& id) override {
    if (::unlinkat(subdir(id), to_hex(id).c_str(), 0) != 0 && errno != ENOENT) return errno_status(errno, "removing object");
    return Status::Ok();
  }

  Status list(const std::function<void(const Id128&)>& fn,
              const std::function<void(const std::string&)>& stray) override {
    Status s;
    for_each_name(objects_.get(), [&](const std::string& prefix, unsigned char type) {
      auto b = from_hex(prefix);
      if (type != DT_DIR || !b || b->size() != 1) return stray("objects/" + prefix);
      for_each_name(subdirs_[(*b)[0]].get(), [&](const std::string& name, unsigned char t) {
        auto bytes = from_hex(name);
        Id128 id{};
        if (t != DT_REG || !bytes || bytes->size() != id.size() || name.compare(0, 2, prefix) != 0) {
          return stray("objects/" + prefix + "/" + name);
        }
        std::copy(bytes->begin(), bytes->end(), id.begin());
        fn(id);
      }, &s);
    }, &s);
    return s;
  }

  Result<struct statvfs> statfs() override {
    struct statvfs st;
    if (::fstatvfs(objects_.get(), &st) != 0) return errno_status(errno, "statfs of the store");
    return st;
  }

 private:
  int subdir(const Id128& id) const { return subdirs_[id[0]].get(); }

  // Calls fn(name, d_type) for each entry of directory `dir` but . and ..; the first error in *s.
  template <class Fn>
  static void for_each_name(int dir, Fn&& fn, Status* s) {
    int fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* d = fd >= 0 ? ::fdopendir(fd) : nullptr;
    if (d == nullptr) {
      if (fd >= 0) ::close(fd);
      if (s->ok()) *s = errno_status(errno, "listing objects");
      return;
    }
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      fn(name, e->d_type);
    }
    ::closedir(d);
  }

  Fd objects_;
  std::vector<Fd> subdirs_;  // objects/00 .. objects/ff
  int keep_nonblock_;        // O_NONBLOCK or 0, for every object's open
};

class UnreachableObjectStore : public ObjectStore {
 public:
  explicit UnreachableObjectStore(Status why) : why_(std::move(why)) {}
  Result<std::unique_ptr<ObjectFile>> open(const Id128&, bool) override { return why_; }
  Status remove(const Id128&) override { return why_; }
  Result<struct statvfs> statfs() override { return why_; }
  Status list(const std::function<void(const Id128&)>&, const std::function<void(const std::string&)>&) override {
    return why_;
  }

 private:
  Status why_;
};

// Pool, namespace and client names: what Ceph accepts, and nothing a shell or a path would read
// differently.
bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 100 || s[0] == '.' || s[0] == '-') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

// S3 bucket names as S3 allows them for path-style requests: lowercase letters, digits, '-'
// and '.', 3 to 63 characters, starting and ending with a letter or digit.
bool valid_bucket(std::string_view s) {
  if (s.size() < 3 || s.size() > 63 || s.front() == '-' || s.front() == '.' || s.back() == '-' || s.back() == '.') return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'; });
}

bool valid_region(std::string_view s) {
  return !s.empty() && s.size() <= 32 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

Status check(const ObjectsConfig& c) {
  if (c.kind == "local") return Status::Ok();
  bool s3 = c.kind == "s3";
  if (c.kind != "rados" && !s3) return Status::InvalidArgument("unknown object store kind '" + c.kind + "'");
  if (s3 ? !valid_bucket(c.pool) : !valid_name(c.pool)) {
    return Status::InvalidArgument(s3 ? "bad S3 bucket name '" + c.pool + "'" : "bad RADOS pool name '" + c.pool + "'");
  }
  if (!c.ns.empty() && !valid_name(c.ns)) return Status::InvalidArgument(std::string(s3 ? "bad S3 prefix '" : "bad RADOS namespace '") + c.ns + "'");
  if (!c.user.empty() && !valid_name(c.user)) return Status::InvalidArgument("bad Ceph client name '" + c.user + "'");
  if (!c.region.empty() && !valid_region(c.region)) return Status::InvalidArgument("bad S3 region '" + c.region + "'");
  bool size_ok = c.object_size >= (64 << 10) && c.object_size <= (64 << 20) &&
                 (s3 || (c.object_size & (c.object_size - 1)) == 0);
  if (!size_ok) return Status::InvalidArgument("bad object size " + std::to_string(c.object_size));
  if (c.layout != ObjectsConfig::kStripeLayout) {
    return Status(ENOTSUP, "object layout " + std::to_string(c.layout) + " is not one this cmkfs reads (" +
                               std::to_string(ObjectsConfig::kStripeLayout) + ")");
  }
  return Status::Ok();
}

}  // namespace

uint64_t ObjectsConfig::s3_object_size(uint32_t chunk_size) {
  crypto::ChunkLayout layout(chunk_size);
  return layout.phys_stride() * (crypto::kMaxChunkSize / chunk_size);
}

Result<ObjectsConfig> ObjectsConfig::from_url(std::string_view url) {
  ObjectsConfig c;
  std::string_view rest;
  if (url.starts_with("rados://")) {
    c.kind = "rados";
    c.object_size = kRadosObjectSize;
    c.conf = "/etc/ceph/ceph.conf";
    c.user = "admin";
    rest = url.substr(8);
  } else if (url.starts_with("s3://")) {
    c.kind = "s3";
    c.object_size = s3_object_size(crypto::kMaxChunkSize);  // init sets it for the store's chunk size
    c.region = "us-east-1";
    rest = url.substr(5);
  } else {
    return Status::InvalidArgument("--objects takes rados://POOL[/NAMESPACE] or s3://BUCKET[/PREFIX], not '" +
                                   std::string(url) + "'");
  }
  c.layout = kStripeLayout;
  size_t slash = rest.find('/');
  c.pool = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) c.ns = std::string(rest.substr(slash + 1));
  if (slash != std::string_view::npos && c.ns.empty()) return Status::InvalidArgument("empty namespace or prefix in " + std::string(url));
  CMKFS_RETURN_IF_ERROR(check(c));
  return c;
}

std::string ObjectsConfig::url() const {
  if (local()) return "local";
  return kind + "://" + pool + (ns.empty() ? "" : "/" + ns);
}

Status ObjectsConfig::check_host_part() const {
  if (kind == "rados" && conf.empty()) return Status::InvalidArgument("RADOS objects need --ceph-conf FILE");
  if (kind != "s3") return Status::Ok();
  if (endpoint.empty()) return Status::InvalidArgument("S3 objects need --s3-endpoint URL");
  if (credentials.empty()) return Status::InvalidArgument("S3 objects need --s3-credentials FILE");
  if (!valid_region(region)) return Status::InvalidArgument("bad S3 region '" + region + "'");
  return check_s3_endpoint(endpoint);
}

void ObjectsConfig::make_paths_absolute() {
  for (std::string* path : {&conf, &credentials, &ca}) {
    if (!path->empty()) *path = std::filesystem::absolute(*path).string();
  }
}

std::string ObjectsConfig::public_json() const {
  if (local()) return "";
  bool s3 = kind == "s3";
  return nlohmann::json{{"kind", kind}, {s3 ? "bucket" : "pool", pool}, {s3 ? "prefix" : "namespace", ns},
                        {"object_size", object_size}, {"layout", layout}}
      .dump();
}

std::string ObjectsConfig::host_json() const {
  auto j = nlohmann::json::parse(local() ? R"({"kind":"local"})" : public_json());
  if (kind == "rados") j.update({{"conf", conf}, {"user", user}});
  if (kind == "s3") j.update({{"endpoint", endpoint}, {"region", region}, {"credentials", credentials}, {"ca", ca}});
  return j.dump();
}

Result<ObjectsConfig> ObjectsConfig::from_json(std::string_view text) {
  ObjectsConfig c;
  try {
    auto j = nlohmann::json::parse(text);
    c.kind = j.at("kind").get<std::string>();
    bool s3 = c.kind == "s3";
    c.pool = j.value(s3 ? "bucket" : "pool", std::string());
    c.ns = j.value(s3 ? "prefix" : "namespace", std::string());
    c.conf = j.value("conf", std::string());
    c.user = j.value("user", std::string());
    c.endpoint = j.value("endpoint", std::string());
    c.region = j.value("region", std::string());
    c.credentials = j.value("credentials", std::string());
    c.ca = j.value("ca", std::string());
    c.object_size = json_integer_or(j, "object_size", uint64_t{0});
    c.layout = json_integer_or(j, "layout", uint32_t{0});
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(std::string("bad object store settings: ") + e.what());
  }
  Status s = check(c);
  if (!s.ok()) return s.code() == ENOTSUP ? s : Status::Corruption(s.message());
  return c;
}

std::unique_ptr<ObjectStore> unreachable_object_store(Status why) {
  return std::make_unique<UnreachableObjectStore>(std::move(why));
}

Result<std::unique_ptr<ObjectStore>> open_object_store(const ObjectsConfig& config, int store_dir) {
  if (config.local()) return open_local_object_store(store_dir);
  if (config.kind == "rados") return open_rados_object_store(config);
  if (config.kind == "s3") return open_s3_object_store(config);
  return Status(ENOTSUP, "object store kind '" + config.kind + "' is not supported");
}

Status create_object_dirs(int store_dir, const std::string& shown) {
  // Made in a store checked empty: a name already there was put there by someone else.
  if (::mkdirat(store_dir, "objects", 0700) != 0) return errno_status(errno, "mkdir " + shown);
  auto objects = open_private_dir(store_dir, "objects", shown);
  if (!objects.ok()) return objects.status();
  for (int i = 0; i < 256; ++i) {
    uint8_t b = static_cast<uint8_t>(i);
    std::string name = to_hex(std::span<const uint8_t>(&b, 1));
    if (::mkdirat(objects->get(), name.c_str(), 0700) != 0) {
      return errno_status(errno, "mkdir " + shown + "/" + name);
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<ObjectStore>> open_local_object_store(int store_dir) {
  auto objects = open_private_dir(store_dir, "objects", "objects/");
  if (!objects.ok()) return objects.status();
  std::vector<Fd> subdirs;
  subdirs.reserve(256);
  for (int i = 0; i < 256; ++i) {
    uint8_t b = static_cast<uint8_t>(i);
    std::string name = to_hex(std::span<const uint8_t>(&b, 1));
    auto sub = open_private_dir(objects->get(), name, "objects/" + name);
    if (!sub.ok()) return sub.status();
    subdirs.push_back(std::move(*sub));
  }
  return std::unique_ptr<ObjectStore>(new LocalObjectStore(std::move(*objects), std::move(subdirs)));
}

}  // namespace cmkfs::fs
